"""workers = N: N event-loop threads, each with its own SO_REUSEPORT socket on every
listener. One port (a kernel-chosen one included) serves them all, the kernel spreads new
connections over them, each session's bytes stay in order on its thread, and signals,
reloads and the global limits act on all of them."""

import re
import signal
import threading

import pytest

import harness
from harness import SLOW
from wsplice_testlib import sha256, wait_log_count

SESSIONS = 48


def workers_gateway(gw_factory, backend_port, workers=2, gateway=None, **route):
    opts = {"path": "/*", "target": "127.0.0.1:%d" % backend_port}
    opts.update(route)
    g = {"workers": str(workers)}
    g.update(gateway or {})
    return gw_factory(harness.config(gateway=g, routes={"r": opts}))


def echo_all_at_once(clients, payload, frame_size):
    """Each client, on its own thread, sends payload(i) in frames and checks the echo
    (sha256, so order counts), then closes with 1000."""
    errors = []

    def run(i, c):
        try:
            data = payload(i)
            for off in range(0, len(data), frame_size):
                c.send_binary(data[off:off + frame_size])
            assert sha256(c.recv_data(len(data))) == sha256(data), "session %d out of order or corrupted" % i
            c.send_close(1000)
            c.expect_close(1000)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * SLOW)
    assert not errors, errors[:3]


def open_workers(gw):
    return [int(w) for w in re.findall(r"session s=\d+ open .* worker=(\d+)", gw.log())]


def test_sessions_spread_over_workers_and_stay_byte_exact(gw_factory, echo):
    gw = workers_gateway(gw_factory, echo.port, workers=2)
    assert "workers=2" in gw.log()
    assert len(re.findall(r"listener name=main addr=\S+ listening", gw.log())) == 1
    clients = [harness.connect(gw.port) for _ in range(SESSIONS)]
    wait_log_count(gw, r"session s=\d+ open", SESSIONS)
    seen = open_workers(gw)
    assert sorted(set(seen)) == [0, 1], "every session landed on one worker: %r" % seen
    ids = [int(i) for i in re.findall(r"session s=(\d+) open", gw.log())]
    assert len(set(ids)) == SESSIONS, "session ids repeat across workers"

    # Every session moves data at once from its own thread; each stream stays in order.
    echo_all_at_once(clients, lambda i: harness.seeded_bytes(200_000 + i * 997, i), 16384)


def test_sigterm_drains_every_worker(gw_factory, echo):
    gw = workers_gateway(gw_factory, echo.port, workers=3)
    clients = [harness.connect(gw.port) for _ in range(SESSIONS)]
    wait_log_count(gw, r"session s=\d+ open", SESSIONS)
    assert len(set(open_workers(gw))) >= 2
    for c in clients:
        c.send_binary(b"before the drain")
        assert c.recv_data(16) == b"before the drain"
    gw.send_signal(signal.SIGTERM)
    gw.wait_log(r"signal TERM: draining %d sessions" % SESSIONS)
    for c in clients:
        c.expect_close(1001)
        c.send_close(1001)
        assert c.wait_eof()
    assert gw.proc.wait(10 * SLOW) == 0
    assert "wsplice stopped" in gw.log()
    assert gw.log().count("listener name=main addr=") == 2  # listening, stopped: once each


def test_second_sigterm_stops_every_worker_at_once(gw_factory, cleanup):
    sink = harness.SinkBackend(paused=True)  # never reads: sessions cannot finish draining
    cleanup.append(sink)
    gw = workers_gateway(gw_factory, sink.port, workers=2, gateway={"drain_timeout_s": "60"})
    clients = [harness.connect(gw.port) for _ in range(16)]
    wait_log_count(gw, r"session s=\d+ open", 16)
    gw.send_signal(signal.SIGTERM)
    gw.wait_log(r"signal TERM: draining 16 sessions")
    gw.send_signal(signal.SIGTERM)
    assert gw.proc.wait(10 * SLOW) == 0
    gw.wait_log(r"signal TERM again: exiting now")
    for c in clients:
        c.sock.close()


def test_reload_reaches_every_worker(gw_factory, echo, cleanup):
    other = harness.EchoBackend()
    cleanup.append(other)
    gw = workers_gateway(gw_factory, echo.port, workers=2)
    with open(gw.config_path, "w") as f:
        f.write(harness.config(gateway={"workers": "2"},
                               routes={"r": {"path": "/*", "target": "127.0.0.1:%d" % other.port}}))
    gw.send_signal(signal.SIGHUP)
    gw.wait_log(r"reload of .* done")
    # New sessions on both workers now go to the new target.
    clients = [harness.connect(gw.port) for _ in range(SESSIONS)]
    wait_log_count(gw, r"session s=\d+ open", SESSIONS)
    assert sorted(set(open_workers(gw))) == [0, 1]
    assert len(re.findall(r"open .*target=127\.0\.0\.1:%d" % other.port, gw.log())) == SESSIONS
    for c in clients:
        c.send_close(1000)
        c.expect_close(1000)
    # A reload that changes the number of workers is refused: it needs a restart.
    with open(gw.config_path, "w") as f:
        f.write(harness.config(gateway={"workers": "3"},
                               routes={"r": {"path": "/*", "target": "127.0.0.1:%d" % other.port}}))
    gw.send_signal(signal.SIGHUP)
    gw.wait_log(r"reload of .* refused: listener and workers changes need a restart")


def test_max_sessions_is_one_limit_across_workers(gw_factory, echo):
    gw = workers_gateway(gw_factory, echo.port, workers=2, gateway={"max_sessions": "10"})
    held = [harness.connect(gw.port) for _ in range(10)]
    wait_log_count(gw, r"session s=\d+ open", 10)
    assert len(set(open_workers(gw))) == 2
    # Whichever worker gets them, sessions past the global limit are refused.
    refused = 0
    for _ in range(6):
        c = harness.WSClient(gw.port)
        status, _ = c.handshake(expect=None)
        refused += status == 503
        c.sock.close()
    assert refused == 6
    for c in held[:5]:
        c.send_close(1000)
        c.expect_close(1000)
    wait_log_count(gw, r"session s=\d+ close", 5)
    more = [harness.connect(gw.port) for _ in range(5)]
    for c in held[5:] + more:
        c.send_binary(b"x")
        assert c.recv_data(1) == b"x"


def test_per_ip_limit_is_shared_by_workers(gw_factory, echo):
    gw = workers_gateway(gw_factory, echo.port, workers=2, gateway={"max_sessions_per_ip": "4"})
    held = [harness.connect(gw.port) for _ in range(4)]
    wait_log_count(gw, r"session s=\d+ open", 4)
    for _ in range(6):  # spread over both workers by the kernel; all over the limit
        c = harness.WSClient(gw.port)
        status, headers = c.handshake(expect=None)
        assert status == 429
        c.sock.close()
    for c in held:
        c.send_binary(b"ok")
        assert c.recv_data(2) == b"ok"


@pytest.mark.parametrize("value, expected", [("0", None), ("1", 1), ("4", 4)])
def test_workers_option(gw_factory, echo, value, expected):
    import os

    gw = workers_gateway(gw_factory, echo.port, workers=value)
    want = expected if expected is not None else len(os.sched_getaffinity(0))
    gw.wait_log(r"started: .* workers=%d" % want)
    echo_c = harness.connect(gw.port)
    echo_c.send_binary(b"hi")
    assert echo_c.recv_data(2) == b"hi"


def test_wss_sessions_on_every_worker_stay_byte_exact(gw_factory, echo, pki):
    # TLS relaying sets up its BIOs on whichever thread runs the session.
    import tlslib
    from tlslib import tls_listener

    text, _ = tlslib.config({"main": tls_listener(pki.ecdsa)},
                            {"r": {"path": "/*", "target": "127.0.0.1:%d" % echo.port}}, {"workers": "2"})
    gw = gw_factory(text)
    clients = [tlslib.wss_connect(gw.port, pki) for _ in range(24)]
    wait_log_count(gw, r"session s=\d+ open .*tls=TLSv1\.3", 24)
    assert sorted(set(open_workers(gw))) == [0, 1]
    echo_all_at_once(clients, lambda i: harness.seeded_bytes(300_000 + i * 1013, 100 + i), 65536)
