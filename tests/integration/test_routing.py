"""Which route a request gets: exact and prefix paths, specificity, virtual hosts,
listener restrictions, several listeners (IPv4 and IPv6) and unix-socket targets. Each
backend announces itself with a tag on connect, so a test sees which route was taken."""

import os
import socket
import tempfile
import threading

import pytest

import harness
from harness import SLOW


class TagBackend(harness.Backend):
    """Sends its tag as soon as a connection arrives, then echoes."""

    def __init__(self, tag, **kw):
        self.tag = tag
        super().__init__(**kw)

    def handle(self, c):
        c.sendall(self.tag)
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.close()


class UnixEchoBackend:
    """An echo server on a unix stream socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wsplice-unix-")
        self.path = os.path.join(self.dir, "echo.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(16)
        self.conns = []
        self.accepted = threading.Semaphore(0)
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted.release()
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass




@pytest.fixture
def tags(cleanup):
    """tags(b'A', b'B', ...) -> list of started TagBackends."""

    def make(*names):
        out = []
        for n in names:
            b = TagBackend(n)
            cleanup.append(b)
            out.append(b)
        return out

    return make


def target(b):
    return "127.0.0.1:%d" % b.port


def reached(port, path, host=None, ip="127.0.0.1"):
    """Open a session on 'path' and return the tag of the backend it reached, or the HTTP
    status when the upgrade was refused."""
    c = harness.WSClient(port, host=ip)
    headers = {"Host": host} if host is not None else None
    status, _ = c.handshake(path=path, headers=headers, expect=None)
    if status != 101:
        c.close()
        return status
    tag = c.recv_data(1)
    c.send_binary(b"x")
    assert c.recv_data(1) == b"x"
    c.send_close(1000)
    c.expect_close(1000)
    c.wait_eof()
    c.close()
    return tag


def not_found(port, path, host=None, ip="127.0.0.1"):
    """The request gets a well-formed 404 and the connection is closed."""
    c = harness.WSClient(port, host=ip)
    headers = {"Host": host} if host is not None else None
    c.handshake(path=path, headers=headers, expect=404)
    assert c.headers["connection"].lower() == "close"
    assert c.body.strip()
    assert c.wait_eof()
    c.close()
    return True


# --------------------------------------------------------------------------- paths


def test_exact_path_matches_itself_and_ignores_query(gw_factory, tags):
    (a,) = tags(b"A")
    gw = gw_factory(harness.config(routes={"vnc": {"path": "/vnc", "target": target(a)}}))
    assert reached(gw.port, "/vnc") == b"A"
    assert reached(gw.port, "/vnc?token=x") == b"A"
    assert reached(gw.port, "/vnc?") == b"A"


@pytest.mark.parametrize("path", ["/vnc/x", "/vnc/", "/vncx", "/VNC", "/", "/other"])
def test_exact_path_does_not_match_others_404(gw_factory, tags, path):
    (a,) = tags(b"A")
    gw = gw_factory(harness.config(routes={"vnc": {"path": "/vnc", "target": target(a)}}))
    assert not_found(gw.port, path)


def test_prefix_path_matches_below(gw_factory, tags):
    (a,) = tags(b"A")
    gw = gw_factory(harness.config(routes={"vnc": {"path": "/vnc/*", "target": target(a)}}))
    assert reached(gw.port, "/vnc/a") == b"A"
    assert reached(gw.port, "/vnc/a/b?c=d") == b"A"
    assert reached(gw.port, "/vnc/") == b"A"
    assert not_found(gw.port, "/other/a")
    assert not_found(gw.port, "/vn")


def test_longest_prefix_wins(gw_factory, tags):
    a, b, c = tags(b"A", b"B", b"C")
    gw = gw_factory(
        harness.config(
            routes={
                # Declared shortest-last, so file order cannot be what decides.
                "deep": {"path": "/a/b/*", "target": target(b)},
                "all": {"path": "/*", "target": target(c)},
                "short": {"path": "/a/*", "target": target(a)},
            }
        )
    )
    assert reached(gw.port, "/a/b/c") == b"B"
    assert reached(gw.port, "/a/b/") == b"B"
    assert reached(gw.port, "/a/x") == b"A"
    assert reached(gw.port, "/a/bee") == b"A"
    assert reached(gw.port, "/zzz") == b"C"


def test_exact_beats_prefix(gw_factory, tags):
    a, b = tags(b"A", b"B")
    gw = gw_factory(
        harness.config(
            routes={
                "prefix": {"path": "/a/*", "target": target(a)},
                "exact": {"path": "/a/exact", "target": target(b)},
            }
        )
    )
    assert reached(gw.port, "/a/exact") == b"B"
    assert reached(gw.port, "/a/exact?q=1") == b"B"
    assert reached(gw.port, "/a/exact2") == b"A"
    assert reached(gw.port, "/a/exact/x") == b"A"


def test_no_route_404(gw_factory, tags):
    (a,) = tags(b"A")
    gw = gw_factory(harness.config(routes={"vnc": {"path": "/vnc/*", "target": target(a)}}))
    assert not_found(gw.port, "/nothing/here")
    # The gateway still serves routed paths afterwards.
    assert reached(gw.port, "/vnc/1") == b"A"
    assert "no route" in gw.log()


# --------------------------------------------------------------------------- hosts


def test_host_virtual_hosting(gw_factory, tags):
    a, b, w = tags(b"A", b"B", b"W")
    gw = gw_factory(
        harness.config(
            routes={
                "a": {"path": "/*", "host": "a.example", "target": target(a)},
                "b": {"path": "/*", "host": "b.example", "target": target(b)},
                "wild": {"path": "/*", "host": "*.example.com", "target": target(w)},
            }
        )
    )
    assert reached(gw.port, "/", host="a.example") == b"A"
    assert reached(gw.port, "/", host="b.example") == b"B"
    # Port and case do not matter.
    assert reached(gw.port, "/x", host="A.Example:8080") == b"A"
    assert reached(gw.port, "/x", host="B.EXAMPLE:443") == b"B"
    # Wildcards match any depth below the domain, but not the domain itself.
    assert reached(gw.port, "/", host="x.example.com") == b"W"
    assert reached(gw.port, "/", host="y.z.Example.COM:1") == b"W"
    assert not_found(gw.port, "/", host="example.com")
    assert not_found(gw.port, "/", host="c.example")
    assert not_found(gw.port, "/", host="127.0.0.1")


def test_host_route_beats_any_host_route(gw_factory, tags):
    a, any_ = tags(b"A", b"*")
    gw = gw_factory(
        harness.config(
            routes={
                "any": {"path": "/*", "target": target(any_)},
                "a": {"path": "/*", "host": "a.example", "target": target(a)},
            }
        )
    )
    assert reached(gw.port, "/", host="a.example") == b"A"
    assert reached(gw.port, "/", host="other.example") == b"*"


# --------------------------------------------------------------------------- listeners


def test_route_restricted_to_listener_404_on_other(gw_factory, tags):
    a, b = tags(b"A", b"B")
    gw = gw_factory(
        harness.config(
            listeners={"public": "127.0.0.1:0", "admin": "127.0.0.1:0"},
            routes={
                "admin": {"path": "/admin", "listener": "admin", "target": target(a)},
                "public": {"path": "/pub", "listener": "public", "target": target(b)},
            },
        )
    )
    assert set(gw.ports) == {"public", "admin"}
    assert reached(gw.ports["admin"], "/admin") == b"A"
    assert not_found(gw.ports["public"], "/admin")
    assert reached(gw.ports["public"], "/pub") == b"B"
    assert not_found(gw.ports["admin"], "/pub")


def test_two_listeners_ipv4_and_ipv6(gw_factory, tags):
    if not harness.ipv6_loopback_available():
        pytest.skip("IPv6 loopback unavailable: socket.has_ipv6 is false or ::1 cannot be bound")
    a, b = tags(b"A", b"B")
    gw = gw_factory(
        harness.config(
            listeners={"v4": "127.0.0.1:0", "v6": "[::1]:0"},
            routes={
                "all": {"path": "/*", "target": target(a)},
                "six": {"path": "/six", "listener": "v6", "target": target(b)},
            },
        )
    )
    assert set(gw.ports) == {"v4", "v6"}
    assert reached(gw.ports["v4"], "/") == b"A"
    assert reached(gw.ports["v6"], "/", ip="::1", host="[::1]:%d" % gw.ports["v6"]) == b"A"
    assert reached(gw.ports["v6"], "/six", ip="::1") == b"B"
    assert reached(gw.ports["v4"], "/six") == b"A"  # falls through to /* on the IPv4 side
    # The IPv6 listener is bound to ::1 only, not to IPv4.
    assert "addr=[::1]:%d listening" % gw.ports["v6"] in gw.log()
    assert "client=[::1]:" in gw.log()


# --------------------------------------------------------------------------- unix targets


def test_unix_socket_target(gw_factory, cleanup):
    ux = UnixEchoBackend()
    cleanup.append(ux)
    gw = gw_factory(harness.config(routes={"ux": {"path": "/*", "target": "unix:%s" % ux.path}}))
    c = harness.connect(gw.port, path="/unix")
    assert ux.accepted.acquire(timeout=5 * SLOW), "unix backend never got a connection"
    payload = harness.seeded_bytes(100000, 3)
    c.send_binary(payload)
    assert c.recv_data(len(payload)) == payload
    c.send_close(1000)
    c.expect_close(1000)
    assert c.wait_eof()
    c.close()
    gw.wait_log(r"session s=1 close .*target=unix:%s " % ux.path)


def test_unix_socket_target_missing_502(gw_factory):
    d = tempfile.mkdtemp(prefix="wsplice-unix-")
    gw = gw_factory(harness.config(routes={"ux": {"path": "/*", "target": "unix:%s/absent.sock" % d}}))
    c = harness.WSClient(gw.port)
    c.handshake(expect=502)
    assert c.wait_eof()
    c.close()
    os.rmdir(d)
