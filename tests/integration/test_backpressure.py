"""Backpressure: a reader that stalls on either side makes the gateway stop reading from
the other side instead of buffering. With 64 MiB pending, the gateway's resident memory
stays within a fixed bound of its idle size, and once the reader resumes every byte
arrives (sha256). Each case runs over ws:// and over wss:// (a TLS client side is read
through the gateway's own OpenSSL feed, not the bufferevent)."""

import random
import time

import pytest

import harness
import tlslib
from harness import SLOW
from wsplice_testlib import (
    MIB,
    backend_conn,
    peak_rss_during,
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


@pytest.fixture(params=["ws", "wss"])
def pki_for_wss(request):
    """The test PKI when the client speaks wss://, None for ws://."""
    return request.getfixturevalue("pki") if request.param == "wss" else None


def gateway_for(gw_factory, port, buffer_bytes, pki=None):
    """A gateway routing /* to port; with 'pki' its listener serves TLS."""
    opts = {} if buffer_bytes is None else {"buffer_bytes": buffer_bytes}
    if pki is None:
        return start_gateway(gw_factory, port, **opts)
    route = dict(opts, path="/*", target="127.0.0.1:%d" % port)
    text, _ = tlslib.config({"main": tlslib.tls_listener(pki.ecdsa)}, {"r": route})
    return gw_factory(text)


def client_for(gw, pki=None):
    if pki is None:
        return harness.connect(gw.port)
    return tlslib.wss_connect(gw.port, pki)


@pytest.mark.parametrize("buffer_bytes", BUFFERS)
def test_slow_client_backpressure_bounds_memory_and_loses_nothing(gw_factory, cleanup, buffer_bytes, pki_for_wss):
    src = harness.SourceBackend(SIZE, seed=201, end="close", paused=True)
    cleanup.append(src)
    gw = gateway_for(gw_factory, src.port, buffer_bytes, pki_for_wss)
    c = client_for(gw, pki_for_wss)
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
def test_slow_backend_backpressure_bounds_memory_and_loses_nothing(gw_factory, cleanup, buffer_bytes, pki_for_wss):
    sink = harness.SinkBackend(paused=True)
    cleanup.append(sink)
    gw = gateway_for(gw_factory, sink.port, buffer_bytes, pki_for_wss)
    c = client_for(gw, pki_for_wss)
    sink.wait_accept()
    baseline = gw.rss_kb()
    data = harness.seeded_bytes(SIZE, 202)
    rnd = random.Random(202)
    # Only the sender thread uses the socket until it is done (an SSL socket is not
    # safe to use from two threads).
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
def test_slow_client_does_not_block_pongs_or_close(gw_factory, cleanup, buffer_bytes, pki_for_wss):
    """While the client does not read, control frames it sends are still handled: its
    close is answered after the queued data, and the backend connection is let go."""
    src = harness.SourceBackend(SIZE, seed=203, end="none", paused=True)
    cleanup.append(src)
    gw = gateway_for(gw_factory, src.port, buffer_bytes, pki_for_wss)
    c = client_for(gw, pki_for_wss)
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
