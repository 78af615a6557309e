"""wsplice --healthcheck URL: one real WebSocket handshake against a running gateway, as
the container image's HEALTHCHECK runs it. Healthy (0) is any well-formed HTTP answer,
101 included; --healthcheck-strict wants 101. Everything else is 1 with a one-line reason."""

import socket
import subprocess
import threading

import harness


def healthcheck(url, strict=False):
    flag = "--healthcheck-strict" if strict else "--healthcheck"
    r = subprocess.run([harness.WSPLICE_BIN, flag, url], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def test_healthcheck_101_closes_cleanly(gw_echo):
    rc, out = healthcheck("ws://127.0.0.1:%d/websockify" % gw_echo.port)
    assert rc == 0, out
    assert "healthy" in out and "101 Switching Protocols" in out and out.count("\n") == 1, out
    gw_echo.wait_log(r"session s=1 close .* code=1000 by=client")


def test_healthcheck_backend_down_is_healthy_unless_strict(gw_factory):
    port = harness.free_port()  # nothing listens there
    gw = gw_factory(harness.config(routes={"r": {"path": "/*", "target": "127.0.0.1:%d" % port}}))
    rc, out = healthcheck("ws://127.0.0.1:%d/" % gw.port)
    assert rc == 0 and "502 Bad Gateway" in out and "healthy" in out, out
    rc, out = healthcheck("ws://127.0.0.1:%d/" % gw.port, strict=True)
    assert rc == 1 and "502 Bad Gateway" in out and "unhealthy" in out, out


def test_healthcheck_no_route_is_404(gw_factory, echo):
    gw = gw_factory(harness.config(routes={"r": {"path": "/only", "target": "127.0.0.1:%d" % echo.port}}))
    rc, out = healthcheck("ws://127.0.0.1:%d/other" % gw.port)
    assert rc == 0 and "404" in out, out


def test_healthcheck_nothing_listening():
    rc, out = healthcheck("ws://127.0.0.1:%d/" % harness.free_port())
    assert rc == 1 and "cannot connect" in out and out.count("\n") == 1, out


def serve_once(answer):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)

    def run():
        c, _ = s.accept()
        c.recv(4096)
        c.sendall(answer)
        c.close()
        s.close()

    threading.Thread(target=run, daemon=True).start()
    return s.getsockname()[1]


def test_healthcheck_rejects_garbage_and_a_wrong_accept_key():
    port = serve_once(b"SSH-2.0-OpenSSH\r\n\x01\r\n\r\n")
    rc, out = healthcheck("ws://127.0.0.1:%d/" % port)
    assert rc == 1 and "not HTTP" in out and out.count("\n") == 1, out
    port = serve_once(b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: bogus\r\n\r\n")
    rc, out = healthcheck("ws://127.0.0.1:%d/" % port)
    assert rc == 1 and "Sec-WebSocket-Accept" in out, out
    port = serve_once(b"HTTP/1.1 200 OK\r\n")  # then EOF: no complete head
    rc, out = healthcheck("ws://127.0.0.1:%d/" % port)
    assert rc == 1 and "closed" in out, out


def test_healthcheck_bad_urls():
    for url in ("http://127.0.0.1/", "wss://127.0.0.1/", "ws://", "ws://h:99999999/", "ws://h:x/", "ws://[::1/"):
        rc, out = healthcheck(url)
        assert rc == 1 and "bad URL" in out, (url, out)
