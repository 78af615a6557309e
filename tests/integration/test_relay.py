"""Byte-exact relaying: 64 MiB each way with random framing and random TCP write sizes,
echo round trips of random sizes, every length-encoding boundary, and 200 concurrent
sessions that each check their own data."""

import random
import socket
import threading

import pytest

import harness
from harness import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, SLOW
from wsplice_testlib import (
    MIB,
    log_uniform,
    message_frames,
    random_frame_stream,
    recv_frame_minimal,
    recv_hash,
    send_in_random_writes,
    send_upstream_and_close,
    sender_thread,
    sha256,
    start_gateway,
    wait_log_count,
    wait_sink_result,
)


@pytest.fixture
def sink(cleanup):
    b = harness.SinkBackend()
    cleanup.append(b)
    return b


def test_upstream_64mib_random_framing_arrives_byte_exact(gw_factory, sink):
    gw = start_gateway(gw_factory, sink.port)
    size = 64 * MIB + 12345
    data = send_upstream_and_close(harness.connect(gw.port), size, 101)
    assert wait_sink_result(sink, timeout=60) == (size, sha256(data))
    gw.wait_log(r"close .*up=%d down=0 .*code=1000 by=client" % size)


def test_downstream_64mib_arrives_byte_exact(gw_factory, cleanup):
    size = 64 * MIB + 54321
    src = harness.SourceBackend(size, seed=102, end="close")
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)
    c = harness.connect(gw.port)
    assert recv_hash(c, size) == sha256(harness.seeded_bytes(size, 102))
    assert c.expect_close(1000) is not None
    c.send_close(1000)
    assert c.wait_eof()
    c.close()
    gw.wait_log(r"close .*up=0 down=%d .*code=1000 by=backend" % size)


def test_full_duplex_echo_of_16mib_with_random_framing(gw_echo):
    c = harness.connect(gw_echo.port)
    size = 16 * MIB + 7
    data = harness.seeded_bytes(size, 103)
    rnd = random.Random(103)
    t = sender_thread(
        send_in_random_writes, c.sock, random_frame_stream(rnd, data, max_message=256 * 1024), rnd
    )
    assert recv_hash(c, size) == sha256(data)
    t.join(30 * SLOW)
    assert t.error is None, t.error
    c.send_close(1000)
    assert c.expect_close(1000) == b""


def test_echo_round_trips_of_random_sizes(gw_echo):
    c = harness.connect(gw_echo.port)
    rnd = random.Random(104)
    for i in range(300):
        n = log_uniform(rnd, 1, 300000)
        payload = rnd.randbytes(n)
        for f in message_frames(rnd, payload, max_fragments=3):
            c.send_raw(f)
        assert c.recv_data(n) == payload, "round trip %d of %d bytes differs" % (i, n)
    c.send_close(1000)
    assert c.expect_close(1000) == b""


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 65537])
def test_payload_at_length_encoding_boundary_round_trips(gw_echo, size):
    c = harness.connect(gw_echo.port)
    payload = harness.seeded_bytes(size, size + 1)
    c.send(OP_BINARY, payload)
    c.send(OP_BINARY, b"<end>")
    got = bytearray()
    while len(got) < size + 5:
        fin, op, p = recv_frame_minimal(c)
        assert op in (OP_BINARY, OP_CONT), "unexpected opcode %d" % op
        got += p
    assert bytes(got) == payload + b"<end>"
    # The same size as a fragment of a larger message, and as a ping.
    c.send(OP_BINARY, b"[", fin=False)
    c.send(OP_CONT, payload, fin=False)
    c.send(OP_CONT, b"]", fin=True)
    assert c.recv_data(size + 2) == b"[" + payload + b"]"
    if size <= 125:
        c.send(OP_PING, payload)
        assert c.recv_frame() == (True, OP_PONG, payload)


class SizedSource(harness.Backend):
    """Sends one write of 'size' bytes per connection, then closes once the gateway does."""

    def __init__(self, payload, **kw):
        self.payload = payload
        super().__init__(**kw)

    def handle(self, c):
        c.sendall(self.payload)
        while c.recv(65536):
            pass
        c.close()


@pytest.mark.parametrize("size", [1, 125, 126, 127, 65535, 65536, 65537])
def test_backend_write_at_length_encoding_boundary_arrives_with_minimal_headers(gw_factory, cleanup, size):
    payload = harness.seeded_bytes(size, size + 2)
    src = SizedSource(payload)
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)
    c = harness.connect(gw.port)
    got = bytearray()
    while len(got) < size:
        fin, op, p = recv_frame_minimal(c)
        assert op == OP_BINARY and fin, "opcode %d fin %s" % (op, fin)
        got += p
    assert bytes(got) == payload


def one_concurrent_session(port, index, barrier, results):
    rnd = random.Random(1000 + index)
    data = rnd.randbytes(rnd.randint(1, 64 * 1024)) + b"#%d#" % index
    c = harness.connect(port)
    try:
        barrier.wait()  # every session is open before any sends
        for f in message_frames(rnd, data):
            c.send_raw(f)
        got = c.recv_data(len(data))
        c.send_close(1000)
        code = c.expect_close(1000)
        results[index] = (got == data, code == b"", c.wait_eof())
    finally:
        c.close()


def test_200_concurrent_sessions_each_get_their_own_echo(gw_factory, cleanup):
    echo = harness.EchoBackend(backlog=512)
    cleanup.append(echo)
    gw = start_gateway(gw_factory, echo.port)
    count = 200
    barrier = threading.Barrier(count, timeout=60 * SLOW)
    results = [None] * count
    threads = [
        sender_thread(one_concurrent_session, gw.port, i, barrier, results) for i in range(count)
    ]
    for t in threads:
        t.join(120 * SLOW)
    errors = [(i, t.error) for i, t in enumerate(threads) if t.error is not None]
    assert not errors, "%d sessions failed, first: %r" % (len(errors), errors[:3])
    assert all(r == (True, True, True) for r in results), [
        (i, r) for i, r in enumerate(results) if r != (True, True, True)
    ][:5]
    assert wait_log_count(gw, r"session s=\d+ close .* code=1000 by=client", count) == count
