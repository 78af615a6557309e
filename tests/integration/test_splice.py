"""Zero-copy relay of backend data (splice_min_bytes): bulk backend data reaches a ws://
client through splice(2), behind a frame header the gateway writes first. What the client
socket cannot take at once is queued behind it, and control frames (pongs, closes) must
never land inside a spliced frame. Every case checks the bytes (sha256) and that the
frames parse, and reads the gateway's metrics (SIGUSR1) to see which path carried them."""

import hashlib
import socket
import struct
import threading
import time

import pytest

import harness
from harness import OP_BINARY, OP_CLOSE, OP_PONG
from wsplice_testlib import MIB, metrics, recv_hash, reset, sha256, start_gateway, wait_log_count


def wait_sessions_closed(gw, count):
    wait_log_count(gw, r" close client=", count)


def source_gateway(gw_factory, cleanup, size, seed, splice_min, **route_opts):
    """A source backend sending 'size' seeded bytes then closing, and a gateway routing
    to it; 'splice_min' (None: the default) sets splice_min_bytes."""
    src = harness.SourceBackend(size, seed=seed, end="close")
    cleanup.append(src)
    if splice_min is not None:
        route_opts["splice_min_bytes"] = splice_min
    return start_gateway(gw_factory, src.port, **route_opts)


def finish(c):
    assert c.expect_close(1000) is not None
    c.send_close(1000)
    assert c.wait_eof()
    c.close()


@pytest.mark.parametrize("splice_min", [None, "0", "1"], ids=["default_16k", "off", "every_read"])
def test_bulk_download_byte_exact_and_path_as_configured(gw_factory, cleanup, splice_min):
    size = 24 * MIB
    gw = source_gateway(gw_factory, cleanup, size, 301, splice_min)
    c = harness.connect(gw.port)
    assert recv_hash(c, size) == sha256(harness.seeded_bytes(size, 301))
    finish(c)
    wait_sessions_closed(gw, 1)
    m = metrics(gw)
    assert m["bytes_down"] == size
    if splice_min == "0":
        assert m["bytes_down_spliced"] == 0
    else:  # the backend writes up to 200 KB at a time: most of it waits in bulk
        assert m["bytes_down_spliced"] > size // 4, m
        assert m["bytes_down_spliced"] <= size


COPY_PATHS = [pytest.param(None, id="spliced"), pytest.param("0", id="copied")]


@pytest.mark.parametrize("splice_min", COPY_PATHS)
def test_pongs_and_close_never_land_inside_a_spliced_frame(gw_factory, cleanup, splice_min):
    """The client pings all through a bulk download; each pong must arrive whole between
    data frames, in order, and the final close after the last byte. Copied frames are
    written straight to the socket when nothing is queued, so the same holds for them."""
    size = 32 * MIB
    gw = source_gateway(gw_factory, cleanup, size, 302, splice_min, ping_interval_s=0)
    c = harness.connect(gw.port)
    expected = harness.seeded_bytes(size, 302)
    got = bytearray()
    sent_pings = 0
    pongs = []
    frames = 0
    while True:
        fin, op, payload = c.recv_frame()  # asserts a well-formed server frame
        if op == OP_CLOSE:
            assert struct.unpack("!H", payload[:2])[0] == 1000
            break
        if op == OP_PONG:
            pongs.append(bytes(payload))
            continue
        assert op == OP_BINARY and fin
        got += payload
        frames += 1
        if frames % 3 == 0:
            c.send(0x9, b"ping %d" % sent_pings)
            sent_pings += 1
    assert len(got) == size and sha256(bytes(got)) == sha256(expected)
    assert sent_pings > 10
    assert pongs == [b"ping %d" % i for i in range(len(pongs))]
    c.send_close(1000)
    assert c.wait_eof()
    c.close()
    wait_sessions_closed(gw, 1)
    assert (metrics(gw)["bytes_down_spliced"] > 0) == (splice_min is None)


@pytest.mark.parametrize("splice_min", COPY_PATHS)
def test_slow_small_reader_gets_every_byte_in_order(gw_factory, cleanup, splice_min):
    """A client with a small receive buffer that reads in small bites: frames (spliced, or
    copied and written at once) are often cut short by a full socket, and the rest must
    follow from the queue in order."""
    size = 8 * MIB
    gw = source_gateway(gw_factory, cleanup, size, 303, splice_min, ping_interval_s=0)
    c = harness.WSClient(gw.port)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    c.handshake()
    h_expected = sha256(harness.seeded_bytes(size, 303))
    got = 0
    h = hashlib.sha256()
    reads = 0
    while got < size:
        if len(c.buf) < 4096:
            d = c.sock.recv(4096)
            assert d, "connection closed after %d bytes" % got
            c.buf += d
            reads += 1
            if reads % 64 == 0:
                time.sleep(0.001)
        # parse whole frames only when they are complete in the buffer
        while got < size:
            if len(c.buf) < 2:
                break
            n = c.buf[1] & 0x7F
            off = 2 + (2 if n == 126 else 8 if n == 127 else 0)
            if len(c.buf) < off:
                break
            if n == 126:
                n = struct.unpack("!H", c.buf[2:4])[0]
            elif n == 127:
                n = struct.unpack("!Q", c.buf[2:10])[0]
            if len(c.buf) < off + n:
                if len(c.buf) >= 4096:
                    d = c.sock.recv(65536)
                    assert d
                    c.buf += d
                    continue
                break
            assert c.buf[0] == 0x82, "frame byte 0x%02x after %d bytes: %r" % (c.buf[0], got, bytes(c.buf[:40]))
            h.update(c.buf[off : off + n])
            got += n
            c.buf = c.buf[off + n :]
    assert got == size and h.hexdigest() == h_expected
    finish(c)
    wait_sessions_closed(gw, 1)
    m = metrics(gw)
    assert m["bytes_down"] == size and (m["bytes_down_spliced"] > 0) == (splice_min is None)


def test_reset_mid_splice_leaves_the_pipe_clean_for_the_next_session(gw_factory, cleanup):
    """A client that resets during a spliced download must not leave bytes in the shared
    pipe: the next session on the same worker gets exactly its own stream."""
    big = harness.SourceBackend(64 * MIB, seed=304, end="close")
    cleanup.append(big)
    gw = start_gateway(gw_factory, big.port)
    fds_idle = gw.fd_count()
    for _ in range(3):
        c = harness.connect(gw.port)
        assert len(c.recv_data(3 * MIB)) >= 3 * MIB
        reset(c.sock)
    wait_sessions_closed(gw, 3)
    size = 8 * MIB
    c = harness.connect(gw.port)  # the backend serves every connection its stream from the start
    data = c.recv_data(size)  # frames parse from the first byte: nothing left over in front
    assert sha256(data[:size]) == sha256(harness.seeded_bytes(size, 304))
    reset(c.sock)
    wait_sessions_closed(gw, 4)
    deadline = time.time() + 5
    while gw.fd_count() != fds_idle and time.time() < deadline:
        time.sleep(0.05)
    assert gw.fd_count() == fds_idle
    assert gw.proc.poll() is None


def test_backend_eof_right_after_bulk_data_closes_after_the_last_byte(gw_factory, cleanup):
    """Many sessions at once, each backend sending bulk and closing: every client gets its
    whole stream, then close 1000 - never a close frame before the last spliced byte."""
    size = 4 * MIB
    gw = source_gateway(gw_factory, cleanup, size, 306, None)
    expected = sha256(harness.seeded_bytes(size, 306))
    errors = []

    def one():
        try:
            c = harness.connect(gw.port)
            code, _, data = c.recv_close()
            assert code == 1000, code
            assert len(data) == size and sha256(data) == expected
            c.send_close(1000)
            c.wait_eof()
            c.close()
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    wait_sessions_closed(gw, 8)
    m = metrics(gw)
    assert m["bytes_down"] == 8 * size and m["bytes_down_spliced"] > 0


def test_unix_socket_backend_is_spliced_too(gw_factory, cleanup):
    """splice(2) reads AF_UNIX stream sockets as well: an echo backend on a unix socket
    sends 4 MiB back in bulk, byte-exact."""
    from test_routing import UnixEchoBackend

    ux = UnixEchoBackend()
    cleanup.append(ux)
    gw = gw_factory(harness.config(routes={"ux": {"path": "/*", "target": "unix:%s" % ux.path}}))
    c = harness.connect(gw.port)
    size = 4 * MIB
    payload = harness.seeded_bytes(size, 307)
    sender = threading.Thread(target=lambda: [c.send_binary(payload[i : i + MIB]) for i in range(0, size, MIB)])
    sender.start()
    got = c.recv_data(size)
    sender.join(30)
    assert len(got) == size and sha256(got) == sha256(payload)
    c.send_close(1000)
    c.expect_close(1000)
    assert c.wait_eof()
    c.close()
    wait_sessions_closed(gw, 1)
    m = metrics(gw)
    assert m["bytes_down"] == size and m["bytes_down_spliced"] > 0, m
