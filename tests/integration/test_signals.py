"""Signals: TERM/INT drain (close 1001, exit 0 once drained or at drain_timeout_s), a
second TERM exits at once, HUP reloads routes from -c FILE without touching open
sessions, USR1 logs the counters, and SIGPIPE never kills the process."""

import signal
import socket
import struct
import subprocess
import time

import pytest

import harness
from harness import SLOW
from test_routing import TagBackend
from wsplice_testlib import metrics


def gw_config(routes, gateway=None):
    return harness.config(routes=routes, gateway=gateway)


def echo_route(b, **extra):
    opts = {"path": "/*", "target": "127.0.0.1:%d" % b.port}
    opts.update(extra)
    return opts


def wait_exit(gw, timeout):
    """Wait for the process to exit; returns its exit code."""
    try:
        return gw.proc.wait(timeout * SLOW)
    except subprocess.TimeoutExpired:
        raise AssertionError("wsplice still running %ss later:\n%s" % (timeout, gw.log())) from None


def roundtrip(c, payload):
    c.send_binary(payload)
    assert c.recv_data(len(payload)) == payload


def answer_close(c, code):
    """Expect a close frame with 'code', answer it, and wait for the server's TCP close."""
    c.expect_close(code)
    c.send_close(code)
    assert c.wait_eof()
    c.close()


# --------------------------------------------------------------------------- TERM / INT


def test_sigterm_no_sessions_exits_0(gw_echo):
    assert gw_echo.stop(signal.SIGTERM) == 0
    assert "wsplice stopped" in gw_echo.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stop_signal_closes_sessions_with_1001_then_exits_0(gw_factory, echo, sig):
    gw = gw_factory(gw_config({"r": echo_route(echo)}))
    clients = [harness.connect(gw.port) for _ in range(3)]
    for i, c in enumerate(clients):
        roundtrip(c, b"before %d" % i)
    gw.send_signal(sig)
    for c in clients:
        c.expect_close(1001)
    # Every session is still waiting for its client's answer: nothing has forced an exit.
    assert gw.proc.poll() is None
    for c in clients:
        c.send_close(1001)
        assert c.wait_eof()
        c.close()
    assert wait_exit(gw, 10) == 0
    log = gw.log()
    assert "draining 3 sessions (at most" in log  # nothing else was connected
    for n in (1, 2, 3):
        assert "session s=%d close " % n in log


def test_stop_signal_counts_connections_not_upgraded_apart(gw_factory, echo):
    """The drain log line counts sessions, and apart from them connections still in their
    handshake: those get 503, not close 1001."""
    gw = gw_factory(gw_config({"r": echo_route(echo)}))
    clients = [harness.connect(gw.port) for _ in range(2)]
    for c in clients:
        roundtrip(c, b"before")
    waiting = socket.create_connection(("127.0.0.1", gw.port), timeout=10 * SLOW)  # sends nothing
    waiting.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request head, not yet complete
    deadline = time.monotonic() + 10 * SLOW
    while [metrics(gw)[k] for k in ("sessions_current", "sessions_open")] != [3, 2]:  # accepted, not upgraded
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)
    gw.send_signal(signal.SIGTERM)
    for c in clients:
        c.expect_close(1001)
        c.send_close(1001)
        assert c.wait_eof()
        c.close()
    head = waiting.recv(4096)
    assert head.startswith(b"HTTP/1.1 503"), head
    waiting.close()
    assert wait_exit(gw, 10) == 0
    assert "signal TERM: draining 2 sessions and 1 other connection (at most" in gw.log(), gw.log()


def test_sigterm_unanswered_close_exits_within_drain_timeout(gw_factory, echo):
    """A client that never answers the 1001 cannot hold the process beyond
    drain_timeout_s; close_timeout_s is far longer so only the drain timeout can end it."""
    gw = gw_factory(gw_config({"r": echo_route(echo, close_timeout_s="120")}, gateway={"drain_timeout_s": "1"}))
    c = harness.connect(gw.port)
    roundtrip(c, b"x")
    gw.send_signal(signal.SIGTERM)
    c.expect_close(1001)
    # Never answer; keep the socket open.
    assert wait_exit(gw, 1 + 5) == 0
    assert "drain timeout" in gw.log()
    assert c.wait_eof()
    c.close()


def test_new_connections_refused_after_sigterm(gw_factory, echo):
    gw = gw_factory(gw_config({"r": echo_route(echo, close_timeout_s="120")}, gateway={"drain_timeout_s": "30"}))
    held = harness.connect(gw.port)
    gw.send_signal(signal.SIGTERM)
    held.expect_close(1001)  # the signal has been handled; the process is still draining
    assert gw.proc.poll() is None
    try:
        late = harness.WSClient(gw.port)
    except ConnectionRefusedError:
        pass  # the listener is closed
    else:
        status, _ = late.handshake(expect=None)
        assert status == 503
        late.close()
    held.send_close(1001)
    assert held.wait_eof()
    held.close()
    assert wait_exit(gw, 10) == 0


def test_sigterm_answers_pending_handshake_503(gw_factory, echo):
    """A connection still sending its request when TERM arrives gets a 503, not a 101."""
    gw = gw_factory(gw_config({"r": echo_route(echo)}))
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10 * SLOW)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    # A full session after it: the partial connection has been accepted by then.
    probe = harness.connect(gw.port)
    roundtrip(probe, b"p")
    probe.send_close(1000)
    probe.expect_close(1000)
    assert probe.wait_eof()
    probe.close()
    gw.send_signal(signal.SIGTERM)
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    assert data.startswith(b"HTTP/1.1 503 "), data
    assert wait_exit(gw, 10) == 0


def test_second_sigterm_exits_at_once(gw_factory, echo):
    gw = gw_factory(gw_config({"r": echo_route(echo, close_timeout_s="120")}, gateway={"drain_timeout_s": "120"}))
    c = harness.connect(gw.port)
    gw.send_signal(signal.SIGTERM)
    c.expect_close(1001)
    assert gw.proc.poll() is None
    gw.send_signal(signal.SIGTERM)
    rc = wait_exit(gw, 5)
    assert rc >= 0, "killed by signal %d" % -rc
    assert "exiting now" in gw.log()
    assert c.wait_eof()
    c.close()


# --------------------------------------------------------------------------- HUP


def test_sighup_reload_new_sessions_use_new_target_old_keep_flowing(gw_factory, cleanup):
    old, new = TagBackend(b"O"), TagBackend(b"N")
    cleanup.extend([old, new])
    gw = gw_factory(gw_config({"r": echo_route(old)}))
    before = harness.connect(gw.port)
    assert before.recv_data(1) == b"O"
    with open(gw.config_path, "w") as f:
        f.write(gw_config({"r": echo_route(new)}))
    gw.send_signal(signal.SIGHUP)
    gw.wait_log(r"reload of \S+ done")
    after = harness.connect(gw.port)
    assert after.recv_data(1) == b"N"
    # The session opened before the reload still reaches the old backend, byte-exact.
    data = harness.seeded_bytes(512 * 1024, 11)
    for i in range(0, len(data), 65536):
        roundtrip(before, data[i : i + 65536])
    roundtrip(after, b"new backend")
    for c in (before, after):
        c.send_close(1000)
        c.expect_close(1000)
        assert c.wait_eof()
        c.close()
    assert len(old.conns) == 1 and len(new.conns) == 1
    gw.wait_log(r"session s=1 close .*target=127\.0\.0\.1:%d up=%d down=%d " % (old.port, len(data), len(data) + 1))


def test_sighup_broken_file_keeps_old_config(gw_factory, echo):
    gw = gw_factory(gw_config({"r": echo_route(echo)}))
    open_before = harness.connect(gw.port)
    with open(gw.config_path, "w") as f:
        f.write("[gateway]\nmax_sessions = many\n[listener:main]\nbind = 127.0.0.1:0\n[route:r]\npath = nope\n")
    gw.send_signal(signal.SIGHUP)
    gw.wait_log(r"reload of \S+ refused")
    log = gw.log()
    assert "max_sessions" in log and "path" in log  # the errors are listed
    assert gw.proc.poll() is None
    roundtrip(open_before, b"still here")
    c = harness.connect(gw.port, path="/any")  # the old route /* still applies
    roundtrip(c, b"old config")
    for x in (open_before, c):
        x.send_close(1000)
        x.expect_close(1000)
        x.close()


def test_sighup_listener_change_refused(gw_factory, echo, cleanup):
    gw = gw_factory(gw_config({"r": echo_route(echo)}))
    other = TagBackend(b"N")
    cleanup.append(other)
    with open(gw.config_path, "w") as f:
        f.write(
            harness.config(
                listeners={"main": "127.0.0.1:0", "extra": "127.0.0.1:0"}, routes={"r": echo_route(other)}
            )
        )
    gw.send_signal(signal.SIGHUP)
    gw.wait_log(r"reload of \S+ refused: listener")
    c = harness.connect(gw.port)
    roundtrip(c, b"old target")  # an echo, not the new tag backend
    assert other.conns == []
    c.close()


def test_sighup_without_config_file_keeps_running(gw_factory, echo):
    gw = gw_factory(args=["127.0.0.1:0", "127.0.0.1:%d" % echo.port])
    gw.send_signal(signal.SIGHUP)
    gw.wait_log(r"HUP: nothing to reload")
    c = harness.connect(gw.port)
    roundtrip(c, b"ok")
    c.close()
    assert gw.proc.poll() is None


# --------------------------------------------------------------------------- USR1


def test_sigusr1_logs_metrics(gw_echo):
    c = harness.connect(gw_echo.port)
    roundtrip(c, b"12345")
    c.send_close(1000)
    c.expect_close(1000)
    assert c.wait_eof()
    c.close()
    gw_echo.wait_log(r"session s=1 close ")
    r = harness.WSClient(gw_echo.port)
    r.handshake(headers={"Sec-WebSocket-Version": "8"}, expect=426)
    r.close()
    gw_echo.send_signal(signal.SIGUSR1)
    m = gw_echo.wait_log(r"metrics (.*)")
    fields = dict(kv.split("=", 1) for kv in m.group(1).split())
    assert int(fields["sessions_total"]) == 2
    assert int(fields["upgrades_total"]) == 1
    assert int(fields["handshakes_rejected"]) == 1
    assert int(fields["bytes_up"]) == 5 and int(fields["bytes_down"]) == 5
    assert "sessions_current" in fields
    assert gw_echo.proc.poll() is None


# --------------------------------------------------------------------------- PIPE


def reset(sock):
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def upgrade_request(port):
    return (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % port
    ).encode()


def test_sigpipe_does_not_kill_gateway(gw_factory, echo, cleanup):
    """Clients that reset while the gateway writes to them: the writes fail with
    EPIPE/ECONNRESET, never a SIGPIPE that ends the process. Three ways: a stream being
    written when the client resets, and a 101 or a 502 written to a client that sent its
    request and reset at once."""
    src = harness.SourceBackend(16 * 1024 * 1024, seed=2, end="close")
    cleanup.append(src)
    gw = gw_factory(
        gw_config(
            {
                "src": {"path": "/src", "target": "127.0.0.1:%d" % src.port},
                "down": {"path": "/down", "target": "127.0.0.1:%d" % harness.free_port()},
                "echo": echo_route(echo),
            }
        )
    )
    for n in range(1, 4):
        c = harness.connect(gw.port, path="/src")
        c.recv_frame()  # the stream is flowing
        reset(c.sock)
        gw.wait_log(r"session s=%d close .*code=1006 by=client" % n)
        assert gw.proc.poll() is None
    for path in ("/echo", "/down"):
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=5 * SLOW)
            s.sendall(upgrade_request(gw.port).replace(b"GET / ", b"GET %s " % path.encode()))
            reset(s)
    # Wait until the gateway has answered (and written to) all twenty.
    gw.wait_log(r"(?s)(session s=\d+ close [^\n]*route=echo.*){10}")
    gw.wait_log(r"(?s)(status=502.*){10}")
    c = harness.connect(gw.port, path="/echo")
    roundtrip(c, b"alive")
    c.close()
    assert gw.proc.poll() is None


def test_burst_of_terms_during_shutdown_still_exits_zero(gw_factory, echo):
    # Regression: libevent restored SIGTERM's default action when it freed its signal
    # events at exit, so a TERM arriving during the final cleanup killed the process.
    for _ in range(5):
        gw = gw_factory(harness.config(routes={"r": {"path": "/*", "target": "127.0.0.1:%d" % echo.port}}))
        clients = [harness.connect(gw.port) for _ in range(20)]
        # Keep signalling until it is gone, so some TERMs land during the final cleanup.
        deadline = time.time() + 10 * SLOW
        while gw.proc.poll() is None and time.time() < deadline:
            try:
                gw.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.0002)
        gw.proc.wait(10 * SLOW)
        assert gw.proc.returncode == 0, gw.log()[-2000:]
        for c in clients:
            c.close()
