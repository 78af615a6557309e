"""Helpers shared by test_frames, test_close, test_relay, test_backpressure,
test_tls_relay and test_interop: gateways with per-route limits, streaming senders and receivers that hash
instead of holding 64 MiB, and a few backends the harness does not have.

Everything here builds on harness.py; nothing is mocked.
"""

import fcntl
import hashlib
import random
import signal
import socket
import struct
import termios
import threading
import time

import harness
from harness import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, SLOW

MIB = 1 << 20


def start_gateway(gw_factory, target_port, gateway_opts=None, **route_opts):
    """A gateway (cleaned up by the fixture) with one route /* to 127.0.0.1:target_port;
    route_opts are route limits such as max_frame_bytes=1000 or close_timeout_s=0.5."""
    opts = {"path": "/*", "target": "127.0.0.1:%d" % target_port}
    opts.update({k: str(v) for k, v in route_opts.items()})
    return gw_factory(harness.config(routes={"r": opts}, gateway=gateway_opts))


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def metrics(gw):
    """The counters of a fresh SIGUSR1 snapshot, as ints by name."""
    before = gw.log().count(" metrics ")
    gw.send_signal(signal.SIGUSR1)
    deadline = time.time() + 5 * SLOW
    while gw.log().count(" metrics ") == before:
        assert time.time() < deadline, "no metrics line after SIGUSR1"
        time.sleep(0.02)
    line = [ln for ln in gw.log().splitlines() if " metrics " in ln][-1]
    return {k: int(v) for k, v in (kv.split("=", 1) for kv in line.split(" metrics ", 1)[1].split())}


def wait_log_count(gw, pattern, count, timeout=10.0):
    """Wait until the gateway log has at least 'count' matches of the regex 'pattern'."""
    import re

    deadline = time.time() + timeout * SLOW
    while True:
        found = len(re.findall(pattern, gw.log()))
        if found >= count:
            return found
        assert time.time() < deadline, "log has %d of %d %r lines" % (found, count, pattern)
        time.sleep(0.05)


# --------------------------------------------------------------------------- sockets


def unacked_bytes(sock):
    """Bytes the kernel still holds in 'sock's send queue (not yet acknowledged by the peer)."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


def wait_delivered(sock, timeout=10.0):
    """Wait until the peer's kernel has acknowledged everything sent on 'sock'."""
    deadline = time.time() + timeout * SLOW
    while unacked_bytes(sock) != 0:
        assert time.time() < deadline, "peer never acknowledged %d bytes" % unacked_bytes(sock)
        time.sleep(0.01)


def reset(sock):
    """Close with SO_LINGER 0: the peer gets RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def backend_conn(backend, index=0, timeout=5.0):
    """The index-th connection a harness backend accepted."""
    deadline = time.time() + timeout * SLOW
    while True:
        with backend.lock:
            if len(backend.conns) > index:
                return backend.conns[index]
        assert time.time() < deadline, "backend never got connection %d" % index
        time.sleep(0.01)


# --------------------------------------------------------------------------- streams


def log_uniform(rnd, lo, hi):
    """An int in [lo, hi], uniform in log scale: small sizes are as common as big ones."""
    import math

    return min(hi, max(lo, int(math.exp(rnd.uniform(math.log(lo), math.log(hi + 1))))))


def message_frames(rnd, payload, opcode=OP_BINARY, max_fragments=4):
    """Encode one message as 1..max_fragments frames split at random points (empty
    fragments included now and then)."""
    k = rnd.randint(1, max_fragments)
    cuts = sorted(rnd.randint(0, len(payload)) for _ in range(k - 1))
    bounds = [0] + cuts + [len(payload)]
    out = []
    for i in range(k):
        piece = payload[bounds[i] : bounds[i + 1]]
        out.append(
            harness.encode_frame(opcode if i == 0 else OP_CONT, piece, fin=(i == k - 1))
        )
    return out


def random_frame_stream(rnd, data, max_message=MIB, max_fragments=4):
    """Yield the wire bytes of 'data' as binary messages of random size (1 B..max_message,
    log-uniform), each randomly fragmented."""
    i = 0
    while i < len(data):
        n = log_uniform(rnd, 1, max_message)
        for f in message_frames(rnd, data[i : i + n], max_fragments=max_fragments):
            yield f
        i += n


def send_in_random_writes(sock, chunks, rnd, max_write=512 * 1024, batch=4 * MIB):
    """Send the concatenation of 'chunks' in TCP writes of random size (1 B..max_write,
    log-uniform) that ignore frame boundaries."""
    pending = bytearray()

    def flush(final):
        nonlocal pending
        view = memoryview(pending)
        off = 0
        while True:
            n = log_uniform(rnd, 1, max_write)
            if len(pending) - off < n:
                if final and off < len(pending):
                    sock.sendall(view[off:])
                    off = len(pending)
                break
            sock.sendall(view[off : off + n])
            off += n
        rest = bytes(view[off:])
        view.release()
        pending = bytearray(rest)

    for c in chunks:
        pending += c
        if len(pending) >= batch:
            flush(False)
    flush(True)


def send_upstream_and_close(c, size, seed, max_message=MIB):
    """Send 'size' seeded bytes from client 'c' as randomly framed messages in random
    writes, then a close (1000) answered by the gateway, and wait for its EOF. Returns
    the bytes sent, for the backend's side of the check."""
    data = harness.seeded_bytes(size, seed)
    rnd = random.Random(seed)
    send_in_random_writes(c.sock, random_frame_stream(rnd, data, max_message=max_message), rnd)
    c.send_close(1000)
    assert c.expect_close(1000) == b""
    assert c.wait_eof(timeout=30)
    c.close()
    return data


def recv_hash(client, n, allowed=(OP_BINARY,)):
    """Read data frames until n payload bytes arrived; return their sha256. Fails on a
    close frame, on more than n bytes, or on a data opcode outside 'allowed'."""
    h = hashlib.sha256()
    got = 0
    while got < n:
        fin, op, payload = client.recv_frame()
        if op == OP_CLOSE:
            raise AssertionError("close frame %r after %d of %d bytes" % (payload[:2], got, n))
        if op in (OP_BINARY, OP_TEXT, OP_CONT):
            assert op in allowed or op == OP_CONT, "unexpected data opcode %d" % op
            h.update(payload)
            got += len(payload)
    assert got == n, "received %d bytes, expected %d" % (got, n)
    return h.hexdigest()


def recv_frame_minimal(client):
    """recv_frame(), also asserting the server used the shortest length form (§5.2)."""
    client._need(2)
    n7 = client.buf[1] & 0x7F
    if n7 == 126:
        client._need(4)
        n = struct.unpack("!H", client.buf[2:4])[0]
        assert n >= 126, "16-bit length form for %d bytes" % n
    elif n7 == 127:
        client._need(10)
        n = struct.unpack("!Q", client.buf[2:10])[0]
        assert n >= 65536, "64-bit length form for %d bytes" % n
    return client.recv_frame()


def peak_rss_during(gw, seconds, still_pending):
    """Sample the gateway's RSS for 'seconds'; assert 'still_pending()' at the end."""
    peak = gw.rss_kb()
    deadline = time.time() + seconds * SLOW
    while time.time() < deadline:
        peak = max(peak, gw.rss_kb())
        time.sleep(0.05)
    peak = max(peak, gw.rss_kb())
    assert still_pending(), "the transfer finished while the reader was stalled: nothing was held back"
    return peak


def sender_thread(fn, *args):
    """Run fn(*args) in a daemon thread; .error holds its exception, if any."""
    t = threading.Thread(target=lambda: _capture(t, fn, args), daemon=True)
    t.error = None
    t.start()
    return t


def _capture(t, fn, args):
    try:
        fn(*args)
    except BaseException as e:  # noqa: B902 - reported by the test
        t.error = e


# --------------------------------------------------------------------------- backends


class HalfCloseSource(harness.SinkBackend):
    """Sends 'size' seeded bytes, shuts its write side, then hashes everything it still
    receives until EOF (what harness.SourceBackend(end='shutdown') reads but discards).
    With half_close=False it keeps its write side open: the gateway sees no EOF."""

    def __init__(self, size, seed=1, half_close=True, **kw):
        self.size = size
        self.seed = seed
        self.half_close = half_close
        super().__init__(**kw)

    def handle(self, c):
        c.sendall(harness.seeded_bytes(self.size, self.seed))
        if self.half_close:
            c.shutdown(socket.SHUT_WR)
        self.sink(c)


class HalfCloseFirstSink(harness.SinkBackend):
    """A paused sink that, once resumed, first shuts its own write side (the gateway sees
    EOF) and only then reads and hashes everything until EOF."""

    def handle(self, c):
        self.resume.wait()
        c.shutdown(socket.SHUT_WR)
        time.sleep(0.2 * SLOW)  # let the gateway see the EOF while its queue is still full
        return super().handle(c)


def wait_sink_result(sink, timeout=30.0):
    """The (bytes, sha256) of the sink's only finished connection."""
    sink.wait_done(1, timeout=timeout)
    with sink.lock:
        assert len(sink.results) == 1, sink.results
        return sink.results[0]


__all__ = [
    "MIB",
    "OP_PING",
    "start_gateway",
    "sha256",
    "unacked_bytes",
    "wait_delivered",
    "reset",
    "backend_conn",
    "log_uniform",
    "message_frames",
    "random_frame_stream",
    "send_in_random_writes",
    "send_upstream_and_close",
    "recv_hash",
    "peak_rss_during",
    "recv_frame_minimal",
    "sender_thread",
    "HalfCloseSource",
    "HalfCloseFirstSink",
    "wait_sink_result",
    "wait_log_count",
]
