"""Backpressure: a reader that stalls on either side makes the gateway stop reading from
the other side instead of buffering. With 64 MiB pending, the gateway's resident memory
stays within a fixed bound of its idle size, and once the reader resumes every byte
arrives (sha256)."""

import random
import time

import pytest

import harness
from harness import SLOW
from wsplice_testlib import (
    MIB,
    backend_conn,
    random_frame_stream,
    recv_hash,
    send_in_random_writes,
    sender_thread,
    sha256,
    start_gateway,
    wait_sink_result,
)

SIZE = 64 * MIB
RSS_BOUND_KB = 20 * 1024  # above the baseline, while 64 MiB is pending
STALL_S = 1.5

BUFFERS = [pytest.param(None, id="buffer_default_256k"), pytest.param("16k", id="buffer_16k")]


def gateway_for(gw_factory, port, buffer_bytes):
    opts = {} if buffer_bytes is None else {"buffer_bytes": buffer_bytes}
    return start_gateway(gw_factory, port, **opts)


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


@pytest.mark.parametrize("buffer_bytes", BUFFERS)
def test_slow_client_backpressure_bounds_memory_and_loses_nothing(gw_factory, cleanup, buffer_bytes):
    src = harness.SourceBackend(SIZE, seed=201, end="close", paused=True)
    cleanup.append(src)
    gw = gateway_for(gw_factory, src.port, buffer_bytes)
    c = harness.connect(gw.port)
    src.wait_accept()
    baseline = gw.rss_kb()
    src.start.set()  # 64 MiB towards a client that reads nothing for a while
    peak = peak_rss_during(gw, STALL_S, lambda: not src.sent.is_set())
    assert peak - baseline < RSS_BOUND_KB, "RSS grew by %d KiB (baseline %d KiB)" % (peak - baseline, baseline)
    assert recv_hash(c, SIZE) == sha256(harness.seeded_bytes(SIZE, 201))
    assert c.expect_close(1000) is not None
    c.send_close(1000)
    assert c.wait_eof()
    c.close()


@pytest.mark.parametrize("buffer_bytes", BUFFERS)
def test_slow_backend_backpressure_bounds_memory_and_loses_nothing(gw_factory, cleanup, buffer_bytes):
    sink = harness.SinkBackend(paused=True)
    cleanup.append(sink)
    gw = gateway_for(gw_factory, sink.port, buffer_bytes)
    c = harness.connect(gw.port)
    sink.wait_accept()
    baseline = gw.rss_kb()
    data = harness.seeded_bytes(SIZE, 202)
    rnd = random.Random(202)
    t = sender_thread(send_in_random_writes, c.sock, random_frame_stream(rnd, data), rnd)
    peak = peak_rss_during(gw, STALL_S, t.is_alive)  # the client's sends block
    assert peak - baseline < RSS_BOUND_KB, "RSS grew by %d KiB (baseline %d KiB)" % (peak - baseline, baseline)
    sink.resume.set()
    t.join(60 * SLOW)
    assert not t.is_alive(), "sending never finished after the backend resumed"
    assert t.error is None, t.error
    c.send_close(1000)
    assert c.expect_close(1000) == b""
    assert c.wait_eof()
    c.close()
    assert wait_sink_result(sink, timeout=60) == (SIZE, sha256(data))


@pytest.mark.parametrize("buffer_bytes", BUFFERS)
def test_slow_client_does_not_block_pongs_or_close(gw_factory, cleanup, buffer_bytes):
    """While the client does not read, control frames it sends are still handled: its
    close is answered after the queued data, and the backend connection is let go."""
    src = harness.SourceBackend(SIZE, seed=203, end="none", paused=True)
    cleanup.append(src)
    gw = gateway_for(gw_factory, src.port, buffer_bytes)
    c = harness.connect(gw.port)
    src.wait_accept()
    src.start.set()
    time.sleep(0.5 * SLOW)  # let the queues fill
    c.send(harness.OP_PING, b"are you there")
    c.send_close(1000)
    pongs = []
    while True:
        fin, op, payload = c.recv_frame()
        if op == harness.OP_PONG:
            pongs.append(payload)
        if op == harness.OP_CLOSE:
            break
    assert payload[:2] == b"\x03\xe8"
    assert pongs == [b"are you there"]
    assert c.wait_eof(timeout=10)
    c.close()
    conn = backend_conn(src)
    conn.settimeout(10 * SLOW)
    assert conn.recv(1) == b"", "the backend never got EOF"
