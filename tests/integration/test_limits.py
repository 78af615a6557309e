"""Admission and lifetime limits: per-client-IP sessions (429), the per-IP handshake token
bucket (429 with Retry-After), pending handshakes (503, or a bare close on a TLS listener),
and the session lifetime cap (close 1008 once every byte is through).

Clients bind to other loopback addresses (127.0.0.2, ...) to act as different IPs, and
::1 is the only IPv6 client there is. Nothing is mocked; no test asserts a duration."""

import os
import re
import socket
import subprocess
import time

import pytest

import harness
import tlslib
from harness import SLOW, WSClient
from wsplice_testlib import HalfCloseSource, sha256, wait_sink_result

MIB = 1 << 20


def gateway(gw_factory, backend_port, listeners=None, route=None, **gateway_opts):
    """A gateway with a route /* to 127.0.0.1:backend_port. 'listeners' is {name: {key:
    value}} (bind defaults to 127.0.0.1:0); [gateway] options come as keywords."""
    opts = {"path": "/*", "target": "127.0.0.1:%d" % backend_port}
    opts.update({k: str(v) for k, v in (route or {}).items()})
    text, _ = tlslib.config(listeners or {"main": {}}, {"r": opts}, {k: str(v) for k, v in gateway_opts.items()})
    return gw_factory(text)


def ws(port, source=None, host="127.0.0.1", expect=101):
    """A client that sent an upgrade request and got 'expect'."""
    c = WSClient(port, host=host, source=source)
    c.handshake(expect=expect)
    return c


def echo_ok(c, payload=b"still here"):
    c.send_binary(payload)
    assert c.recv_data(len(payload)) == payload


def close_cleanly(gw, c, count):
    """Close 'c' with 1000 and wait until the gateway has logged 'count' session closes."""
    c.send_close(1000)
    c.expect_close(1000)
    c.close()
    wait_closes(gw, count)


def wait_closes(gw, count):
    deadline = time.time() + 10 * SLOW
    while len(re.findall(r"info session s=\d+ close ", gw.log())) < count:
        assert time.time() < deadline, "the gateway never logged %d closes:\n%s" % (count, gw.log())
        time.sleep(0.02)


def retry_after(c):
    """The Retry-After of a refusal: delay-seconds, a positive integer (RFC 9110 §10.2.3)."""
    assert "retry-after" in c.headers, c.headers
    value = c.headers["retry-after"]
    assert value.isdigit() and int(value) >= 1, value
    return int(value)


def until_status(port, want, source=None, timeout=10.0):
    """Handshake again and again until the answer is 'want' (the gateway frees a slot when
    it sees a close, a moment after the client closed). Returns the client."""
    deadline = time.time() + timeout * SLOW
    while True:
        c = WSClient(port, source=source)
        status, _ = c.handshake(expect=None)
        if status == want:
            return c
        c.close()
        assert time.time() < deadline, "still %s instead of %s" % (status, want)
        time.sleep(0.05)


def idle_connection(port, host="127.0.0.1"):
    """A TCP connection that sends nothing: a pending handshake."""
    s = socket.create_connection((host, port), timeout=10 * SLOW)
    return s


# --------------------------------------------------------------------------- sessions per IP


def test_sessions_per_ip_429_with_retry_after_and_freed_on_close(gw_factory, echo):
    gw = gateway(gw_factory, echo.port, max_sessions_per_ip=2)
    a, b = ws(gw.port), ws(gw.port)
    c = ws(gw.port, expect=429)
    assert c.status_line == "HTTP/1.1 429 Too Many Requests"
    retry_after(c)
    assert c.body == b"too many sessions from this address\n"
    assert c.wait_eof()
    gw.wait_log(r"reject client=127\.0\.0\.1:\d+ status=429 reason=\"too many sessions from this address\"")

    # Another address is counted on its own; the two open sessions keep working.
    other = ws(gw.port, source="127.0.0.2")
    echo_ok(a)
    echo_ok(b)
    echo_ok(other)

    # A session that ends gives its slot back.
    close_cleanly(gw, a, 1)
    d = ws(gw.port)
    echo_ok(d)
    ws(gw.port, expect=429).close()
    for x in (b, d, other):
        x.close()


def test_refused_client_that_never_closes_is_not_kept_for_the_close_timeout(gw_factory, echo):
    # Refusals must not pile up: with a 10-minute close timeout, a refused client that
    # reads its 429 and then holds the connection open is still let go of soon (the
    # gateway lingers about a second for a refused one, so that the answer is not lost to
    # a reset). Seen from outside: the gateway's descriptor count comes back.
    gw = gateway(gw_factory, echo.port, max_sessions_per_ip=1, close_timeout_s=600)
    held = ws(gw.port)
    idle_fds = gw.fd_count()
    c = ws(gw.port, expect=429)
    assert c.wait_eof()  # the gateway's FIN after the answer; it still reads until ours
    deadline = time.time() + 30 * SLOW
    while gw.fd_count() > idle_fds:
        assert time.time() < deadline, "a refused connection was kept open"
        time.sleep(0.05)
    c.close()
    echo_ok(held)
    held.close()


def test_sessions_per_ip_counts_connections_still_in_handshake(gw_factory, echo):
    gw = gateway(gw_factory, echo.port, max_sessions_per_ip=1)
    idle = idle_connection(gw.port)
    ws(gw.port, expect=429).close()
    ws(gw.port, source="127.0.0.2").close()
    idle.close()  # the gateway sees EOF and frees the slot
    c = until_status(gw.port, 101)
    echo_ok(c)
    c.close()


def test_sessions_per_ip_is_counted_per_listener(gw_factory, echo):
    gw = gateway(gw_factory, echo.port, listeners={"public": {"max_sessions_per_ip": 1}, "internal": {}})
    public, internal = gw.ports["public"], gw.ports["internal"]
    p = ws(public)
    ws(public, expect=429).close()
    # The internal listener has no per-IP limit, and its sessions do not count on public.
    inside = [ws(internal) for _ in range(3)]
    for c in inside:
        echo_ok(c)
    echo_ok(p)
    for c in inside + [p]:
        c.close()


@pytest.mark.skipif(not harness.ipv6_loopback_available(), reason="no IPv6 loopback")
def test_dual_stack_groups_ipv6_by_prefix_and_ipv4_by_address(gw_factory, echo):
    # A listener on every address is one IPv6 socket: IPv4 clients arrive as ::ffff:a.b.c.d
    # and must each count alone, not as one ::ffff:0:0/64. ::1 is its own /64.
    gw = gateway(gw_factory, echo.port, listeners={"any": {"bind": "*:0"}}, max_sessions_per_ip=1)
    clients = [ws(gw.port), ws(gw.port, source="127.0.0.2"), ws(gw.port, host="::1")]
    ws(gw.port, host="::1", expect=429).close()
    ws(gw.port, expect=429).close()
    gw.wait_log(r"reject client=\[::1\]:\d+ status=429")
    for c in clients:
        echo_ok(c)
    # Freed per group: closing the ::1 session lets ::1 in again.
    close_cleanly(gw, clients[2], 1)
    v6 = ws(gw.port, host="::1")
    echo_ok(v6)
    for c in clients[:2] + [v6]:
        c.close()


# --------------------------------------------------------------------------- handshake rate


def test_handshake_rate_429_with_retry_after_then_the_bucket_refills(gw_factory, echo):
    # One new connection every 5 seconds after a burst of 2: slow enough that the burst
    # cannot refill while the test runs its first steps.
    gw = gateway(gw_factory, echo.port, handshake_rate_per_ip=0.2, handshake_burst_per_ip=2)
    first = [ws(gw.port), ws(gw.port)]
    refused = ws(gw.port, expect=429)
    wait_s = retry_after(refused)
    assert wait_s <= 5
    assert refused.body == b"too many new connections from this address\n"
    refused.close()
    gw.wait_log(
        r"reject client=127\.0\.0\.1:\d+ status=429 reason=\"too many new connections from this address\" "
        r"retry_after=%d" % wait_s
    )
    # The bucket is per address, and sessions already open are not touched.
    ws(gw.port, source="127.0.0.3").close()
    for c in first:
        echo_ok(c)
    # Retry-After is honest: after that long there is a token again.
    time.sleep(wait_s + 0.2)
    again = ws(gw.port)
    echo_ok(again)
    for c in first + [again]:
        c.close()


# --------------------------------------------------------------------------- pending handshakes


def test_pending_handshakes_over_the_cap_get_503(gw_factory, echo):
    gw = gateway(gw_factory, echo.port, max_pending_handshakes=2)
    upgraded = [ws(gw.port) for _ in range(3)]  # an upgraded session is no longer pending
    idle = [idle_connection(gw.port), idle_connection(gw.port, "127.0.0.1")]
    c = ws(gw.port, source="127.0.0.2", expect=503)
    retry_after(c)
    assert c.body == b"too many pending handshakes\n"
    c.close()
    gw.wait_log(r"reject client=127\.0\.0\.2:\d+ status=503 reason=\"too many pending handshakes\"")
    for u in upgraded:
        echo_ok(u)
    idle[0].close()  # one pending handshake gives up: there is room again
    c = until_status(gw.port, 101)
    echo_ok(c)
    for x in upgraded + [c] + idle[1:]:
        x.close()


def test_pending_handshakes_over_the_cap_on_a_tls_listener_are_closed(gw_factory, echo, pki):
    listener = tlslib.tls_listener(pki.ecdsa, max_pending_handshakes=1)
    gw = gateway(gw_factory, echo.port, listeners={"tls": listener})
    idle = idle_connection(gw.port)
    # No TLS handshake is spent on a refusal, and nothing is waited for: closed at once.
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10 * SLOW)
    data, closed = harness.read_until_close(s)
    s.close()
    assert (data, closed) == (b"", True)
    gw.wait_log(r"reject client=127\.0\.0\.1:\d+ status=503 reason=\"too many pending handshakes\" answer=close")
    idle.close()
    ctx = tlslib.client_context(pki.ca.cert)
    deadline = time.time() + 10 * SLOW
    while True:
        try:
            c = tlslib.TLSWSClient(gw.port, ctx)
            c.handshake()
            break
        except (OSError, harness.Closed):
            assert time.time() < deadline, "the pending slot never came back"
            time.sleep(0.05)
    echo_ok(c)
    c.close()


# --------------------------------------------------------------------------- session lifetime


def test_max_session_s_closes_1008_after_every_byte(gw_factory, cleanup):
    down = 300000
    backend = HalfCloseSource(down, seed=5, half_close=False)
    cleanup.append(backend)
    gw = gateway(gw_factory, backend.port, route={"max_session_s": 1.5, "buffer_bytes": "1M"})
    c = ws(gw.port)
    up = harness.seeded_bytes(MIB, 6)
    for i in range(0, len(up), 65536):
        c.send_binary(up[i : i + 65536])
    # The client reads nothing until the limit: the backend's bytes wait in the gateway and
    # the client's socket, and all of them come before the close frame.
    code, reason, before = c.recv_close()
    assert (code, reason) == (1008, b"session time limit")
    assert sha256(before) == sha256(harness.seeded_bytes(down, 5))
    c.send_close(1008)
    assert c.wait_eof()
    c.close()
    # Every byte the client sent reached the backend, which then got EOF.
    assert wait_sink_result(backend) == (MIB, sha256(up))
    gw.wait_log(r"close client=127\.0\.0\.1:\d+ .*code=1008 by=gateway reason=\"session time limit\"")


# --------------------------------------------------------------------------- documentation


def test_readme_internet_facing_example_loads(pki, tmp_path):
    """The README's internet-facing example is a config that loads, with its certificate
    paths pointed at test files."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    m = re.search(r"\*\*An internet-facing setup\*\*.*?```ini\n(.*?)```", readme, re.S)
    assert m, "README has no internet-facing example"
    text = m.group(1).replace("/etc/wsplice/site.pem", pki.ecdsa.cert).replace("/etc/wsplice/site.key", pki.ecdsa.key)
    path = tmp_path / "internet.ini"
    path.write_text(text)
    p = subprocess.run([harness.WSPLICE_BIN, "-t", "-c", str(path)], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
