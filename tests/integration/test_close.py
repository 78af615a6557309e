"""Close ordering (STYLE.md §4, RFC 6455 §7): whichever side ends the session, every byte
sent before the end arrives (checked by sha256), the close codes are the documented ones,
and the server closes TCP first. Also the gateway's own timers: close timeout, idle
timeout, keepalive pings and the ping timeout."""

import hashlib
import random
import socket
import struct
import time

import pytest

import harness
from harness import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, SLOW
from wsplice_testlib import (
    HalfCloseFirstSink,
    HalfCloseSource,
    MIB,
    backend_conn,
    random_frame_stream,
    reset,
    send_in_random_writes,
    sender_thread,
    sha256,
    start_gateway,
    wait_delivered,
    wait_sink_result,
)


@pytest.fixture
def sink(cleanup):
    b = harness.SinkBackend()
    cleanup.append(b)
    return b


def read_until_close(c):
    """All data frames up to the close frame: (code or None, sha256 of the data, its length)."""
    h = hashlib.sha256()
    n = 0
    while True:
        fin, op, payload = c.recv_frame()
        if op == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            return code, h.hexdigest(), n
        if op in (OP_BINARY, OP_CONT):
            h.update(payload)
            n += len(payload)


def assert_nothing_after_close(c):
    """After the close frame the server sends no byte, only EOF (§5.5.1)."""
    assert c.buf == b"", "bytes after the close frame: %r" % c.buf[:40]
    c.sock.settimeout(5 * SLOW)
    extra = b""
    try:
        while True:
            d = c.sock.recv(65536)
            if not d:
                break
            extra += d
    except ConnectionResetError:
        pass
    assert extra == b"", "%d bytes after the close frame" % len(extra)
    c.close()  # the server lingers until our EOF (so that its close sends no RST)


# --------------------------------------------------------------------------- backend ends


def test_backend_eof_delivers_every_byte_then_close_1000(gw_factory, cleanup):
    size = 8 * MIB
    src = harness.SourceBackend(size, seed=21, end="close")
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)
    c = harness.connect(gw.port)
    code, digest, n = read_until_close(c)
    assert code == 1000
    assert (n, digest) == (size, sha256(harness.seeded_bytes(size, 21)))
    c.send_close(1000)
    assert_nothing_after_close(c)
    gw.wait_log(r"close .*code=1000 by=backend")


def test_backend_half_close_delivers_every_byte_and_client_data_still_reaches_backend(gw_factory, cleanup):
    size = 8 * MIB
    src = HalfCloseSource(size, seed=22)
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)
    c = harness.connect(gw.port)
    code, digest, n = read_until_close(c)
    assert code == 1000
    assert (n, digest) == (size, sha256(harness.seeded_bytes(size, 22)))
    # The client may still send before it answers the close.
    late = harness.seeded_bytes(3 * MIB + 17, 23)
    rnd = random.Random(23)
    send_in_random_writes(c.sock, random_frame_stream(rnd, late, max_message=256 * 1024), rnd)
    c.send_close(1000)
    assert_nothing_after_close(c)
    src.wait_done()
    assert src.results == [(len(late), sha256(late))]


def test_backend_reset_after_its_data_arrived_gets_close_1014(gw_factory, cleanup):
    size = 2 * MIB
    src = harness.SourceBackend(size, seed=24, end="none")
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)
    c = harness.connect(gw.port)
    got = c.recv_data(size)  # everything passed the gateway before the reset
    assert sha256(got) == sha256(harness.seeded_bytes(size, 24))
    assert src.sent.wait(5 * SLOW)
    reset(backend_conn(src))
    code, _, n = read_until_close(c)
    assert (code, n) == (1014, 0)
    c.send_close(1000)
    assert c.wait_eof()
    c.close()
    gw.wait_log(r"close .*code=1014 by=backend")


# --------------------------------------------------------------------------- client ends


@pytest.mark.parametrize("size", [0, 1, 8 * MIB + 3])
def test_client_close_after_data_delivers_exactly_that_data_then_eof(gw_factory, sink, size):
    gw = start_gateway(gw_factory, sink.port)
    c = harness.connect(gw.port)
    data = harness.seeded_bytes(size, 31)
    rnd = random.Random(31)
    send_in_random_writes(c.sock, random_frame_stream(rnd, data), rnd)
    c.send_close(1000, b"done")
    assert c.expect_close(1000) == b""
    assert_nothing_after_close(c)
    assert wait_sink_result(sink) == (size, sha256(data))
    gw.wait_log(r"close .*up=%d .*code=1000 by=client" % size)


def test_client_close_while_backend_is_slow_delivers_everything(gw_factory, cleanup):
    sink = harness.SinkBackend(paused=True)
    cleanup.append(sink)
    gw = start_gateway(gw_factory, sink.port)
    c = harness.connect(gw.port)
    data = harness.seeded_bytes(32 * MIB, 32)  # far more than the socket buffers hold
    rnd = random.Random(32)

    def send_all():
        send_in_random_writes(c.sock, random_frame_stream(rnd, data), rnd)
        c.send_close(1001)

    t = sender_thread(send_all)
    t.join(1.0 * SLOW)
    assert t.is_alive(), "32 MiB went out while the backend read nothing: no backpressure?"
    sink.resume.set()
    t.join(60 * SLOW)
    assert not t.is_alive() and t.error is None, t.error
    assert c.expect_close(1001) == b""
    assert_nothing_after_close(c)
    assert wait_sink_result(sink) == (len(data), sha256(data))


def test_no_data_frame_follows_the_close_echo(gw_factory, cleanup):
    src = harness.SourceBackend(32 * MIB, seed=33, end="none")
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)
    c = harness.connect(gw.port)
    fin, op, payload = c.recv_frame()  # the backend is sending
    assert op == OP_BINARY
    c.send_close(1000)
    code, _, _ = read_until_close(c)
    assert code == 1000
    assert_nothing_after_close(c)


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_vanishing_mid_stream_still_delivers_what_it_sent(gw_factory, sink, how):
    gw = start_gateway(gw_factory, sink.port)
    c = harness.connect(gw.port)
    data = harness.seeded_bytes(6 * MIB + 5, 34)
    rnd = random.Random(34)
    send_in_random_writes(c.sock, random_frame_stream(rnd, data), rnd)
    tail = harness.seeded_bytes(1000, 35)
    c.send(OP_BINARY, tail, fin=False)  # a message left unfinished
    wait_delivered(c.sock)
    if how == "rst":
        reset(c.sock)
    else:
        c.sock.close()
    sent = data + tail
    assert wait_sink_result(sink) == (len(sent), sha256(sent))
    gw.wait_log(r"close .*up=%d .*code=1006 by=client" % len(sent))


# With buffer_bytes = 64M the gateway itself holds most of 16 MiB (the kernel's socket
# buffers hold only a few MiB), so these also catch queued data dropped at the end.
SLOW_BACKEND_CASES = [
    pytest.param(None, 512 * 1024, id="default_buffer"),
    pytest.param("64M", 16 * MIB, id="queued_in_gateway"),
]


@pytest.mark.parametrize("buffer_bytes,size", SLOW_BACKEND_CASES)
@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_vanishing_while_backend_is_slow_still_delivers_what_it_sent(
    gw_factory, cleanup, how, buffer_bytes, size
):
    sink = harness.SinkBackend(paused=True)
    cleanup.append(sink)
    gw = start_gateway(gw_factory, sink.port, **({"buffer_bytes": buffer_bytes} if buffer_bytes else {}))
    c = harness.connect(gw.port)
    sink.wait_accept()
    data = harness.seeded_bytes(size, 36)
    rnd = random.Random(36)
    send_in_random_writes(c.sock, random_frame_stream(rnd, data, max_message=64 * 1024), rnd)
    wait_delivered(c.sock)  # in the gateway's hands (its socket buffer or beyond)
    if how == "rst":
        reset(c.sock)
    else:
        c.sock.close()
    sink.resume.set()
    assert wait_sink_result(sink) == (len(data), sha256(data))
    gw.wait_log(r"close .*up=%d .*code=1006 by=client" % len(data))


@pytest.mark.parametrize("buffer_bytes,size", SLOW_BACKEND_CASES)
def test_client_close_with_data_queued_for_slow_backend_delivers_everything(
    gw_factory, cleanup, buffer_bytes, size
):
    sink = harness.SinkBackend(paused=True)
    cleanup.append(sink)
    gw = start_gateway(gw_factory, sink.port, **({"buffer_bytes": buffer_bytes} if buffer_bytes else {}))
    c = harness.connect(gw.port)
    sink.wait_accept()
    data = harness.seeded_bytes(size, 37)
    rnd = random.Random(37)
    send_in_random_writes(c.sock, random_frame_stream(rnd, data), rnd)
    c.send_close(1000)
    # The close is answered at once, while the backend still has not read a byte.
    assert c.expect_close(1000) == b""
    sink.resume.set()
    assert_nothing_after_close(c)
    assert wait_sink_result(sink) == (len(data), sha256(data))


def test_backend_half_close_while_gateway_flushes_to_it_still_receives_everything(gw_factory, cleanup):
    sink = HalfCloseFirstSink(paused=True)
    cleanup.append(sink)
    gw = start_gateway(gw_factory, sink.port, buffer_bytes="64M")
    c = harness.connect(gw.port)
    sink.wait_accept()
    data = harness.seeded_bytes(16 * MIB, 38)
    rnd = random.Random(38)
    send_in_random_writes(c.sock, random_frame_stream(rnd, data), rnd)
    c.send_close(1000)
    assert c.expect_close(1000) == b""
    sink.resume.set()  # EOF from the backend while most of the 16 MiB is still queued
    assert_nothing_after_close(c)
    assert wait_sink_result(sink) == (len(data), sha256(data))


# --------------------------------------------------------------------------- timers


def test_client_that_never_answers_close_is_disconnected_after_close_timeout(gw_factory, cleanup):
    src = harness.SourceBackend(1000, seed=41, end="close")
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port, close_timeout_s=0.5)
    c = harness.connect(gw.port)
    code, digest, n = read_until_close(c)
    assert (code, n) == (1000, 1000)
    # No answer: the server must close TCP by itself.
    assert c.wait_eof(timeout=10.0)
    gw.wait_log(r"close .*code=1000 by=backend")


def test_idle_session_gets_close_1001(gw_factory, echo):
    gw = start_gateway(gw_factory, echo.port, idle_timeout_s=0.5)
    c = harness.connect(gw.port)
    c.send_binary(b"some traffic first")
    assert c.recv_data(18) == b"some traffic first"
    code, _, n = read_until_close(c)
    assert (code, n) == (1001, 0)
    c.send_close(1001)
    assert_nothing_after_close(c)
    gw.wait_log(r'close .*code=1001 by=gateway reason="idle timeout"')


def test_keepalive_ping_is_sent_and_pongs_keep_session_alive(gw_factory, echo):
    # Without pongs the session would end 0.3 + 1.0 s after the last client frame; six
    # answered pings take at least 1.8 s, so only the pongs can keep it open.
    gw = start_gateway(gw_factory, echo.port, ping_interval_s=0.3, ping_timeout_s=round(1.0 * SLOW, 3))
    c = harness.connect(gw.port)
    for i in range(6):
        fin, op, payload = c.recv_frame()
        assert (fin, op) == (True, OP_PING), "expected ping %d, got opcode %d %r" % (i, op, payload)
        c.send(OP_PONG, payload)
    c.send_binary(b"alive")
    got = b""
    while len(got) < 5:
        fin, op, payload = c.recv_frame()
        assert op != OP_CLOSE, "session closed despite pongs: %r" % payload
        if op == OP_PING:
            c.send(OP_PONG, payload)
        else:
            got += payload
    assert got == b"alive"
    c.send_close(1000)
    assert c.expect_close(1000) == b""


def test_unanswered_ping_gets_close_1001_and_tcp_close(gw_factory, echo):
    gw = start_gateway(gw_factory, echo.port, ping_interval_s=0.3, ping_timeout_s=0.3)
    c = harness.connect(gw.port)
    pings = 0
    while True:
        fin, op, payload = c.recv_frame()
        if op == OP_PING:
            pings += 1
            continue
        assert op == OP_CLOSE, "unexpected opcode %d" % op
        break
    assert pings >= 1
    assert struct.unpack("!H", payload[:2])[0] == 1001
    assert c.wait_eof()
