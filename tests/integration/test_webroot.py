"""Static files from a listener's web root (issue 6, part 1): content types, HEAD,
conditional requests (304 both ways), 405, index.html, the directory redirect, listings on
and off with hostile names, every traversal trick including symlinks out of the root, a
50 MB file byte-exact with the gateway's memory bounded (plain and TLS), keep-alive and
pipelining, an upgrade after a GET on the same connection, and websockify's --web flag.

Real parts only: the gateway binary, real files and symlinks in a temporary directory,
raw sockets (and Python's ssl) as the HTTP client."""

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

import harness
import tlslib
from harness import SLOW

# Valgrind (3.19, Debian 12) does not implement openat2, and the gateway refuses a web root
# it cannot confine (a config error, exit 2), so nothing here can run under it.
pytestmark = pytest.mark.skipif("valgrind" in harness.GATEWAY_WRAPPER,
                                reason="valgrind does not implement openat2, which web_root requires")

MIB = 1 << 20
BIG_SIZE = 50 * MIB
RSS_BOUND_KB = 30 * 1024  # growth allowed while serving BIG_SIZE (the whole file would be 50 MiB)
SECRET = b"outside-the-root secret 7f3a\n"

FILES = {
    "index.html": b"<!DOCTYPE html><title>root</title>\n",
    "app.js": b"export const x = 1;\n",
    "rfb.mjs": b"export default 2;\n",
    "style.css": b"body { color: red }\n",
    "data.json": b'{"a": 1}\n',
    "logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>\n",
    "pixel.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "photo.JPG": b"\xff\xd8\xff\xe0jpeg",
    "mod.wasm": b"\x00asm\x01\x00\x00\x00",
    "font.woff2": b"wOF2....",
    "favicon.ico": b"\x00\x00\x01\x00",
    "notes.txt": "caf\u00e9\n".encode(),
    "app.js.map": b"{}",
    "blob.unknownext": b"\x00\x01\x02",
    "empty.txt": b"",
    "a b.txt": b"with a space\n",
    "sub/index.html": b"<title>sub</title>\n",
    "sub/page.html": b"<title>page</title>\n",
    "nolisting/a.txt": b"a\n",
    "listme/plain.txt": b"plain\n",
    "listme/<b onmouseover=\"x\">&'.txt": b"hostile name\n",
    "listme/caf\u00e9 space.txt": b"utf-8 name\n",
    "listme/inner/deep.txt": b"deep\n",
}

TYPES = [
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("rfb.mjs", "text/javascript; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("data.json", "application/json"),
    ("logo.svg", "image/svg+xml"),
    ("pixel.png", "image/png"),
    ("photo.JPG", "image/jpeg"),
    ("mod.wasm", "application/wasm"),
    ("font.woff2", "font/woff2"),
    ("favicon.ico", "image/vnd.microsoft.icon"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("app.js.map", "application/json"),
    ("blob.unknownext", "application/octet-stream"),
]


@pytest.fixture
def root(tmp_path):
    """A web root with FILES, symlinks in and out of it, a FIFO, and a secret outside."""
    top = tmp_path / "root"
    for name, data in FILES.items():
        p = top / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    os.symlink(str(outside / "secret.txt"), str(top / "link_out_file"))
    os.symlink(str(outside), str(top / "link_out_dir"))
    os.symlink("../outside/secret.txt", str(top / "link_dotdot"))
    os.symlink("/etc/passwd", str(top / "link_passwd"))
    os.symlink("sub/page.html", str(top / "link_in"))
    os.symlink("sub", str(top / "link_in_dir"))
    os.symlink(str(top / "index.html"), str(top / "link_in_absolute"))
    os.symlink("loop2", str(top / "loop1"))
    os.symlink("loop1", str(top / "loop2"))
    os.mkfifo(str(top / "fifo"))
    return top


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """BIG_SIZE seeded bytes in a root of their own; returns (root, sha256)."""
    top = tmp_path_factory.mktemp("bigroot")
    data = harness.seeded_bytes(BIG_SIZE, 6)
    (top / "big.bin").write_bytes(data)
    return top, hashlib.sha256(data).hexdigest()


def web_gateway(gw_factory, root, listener=None, routes=None, gateway=None):
    """A gateway whose listener 'main' serves 'root'; 'routes' default to none."""
    opts = {"bind": "127.0.0.1:0", "web_root": str(root)}
    opts.update(listener or {})
    lines = ["[gateway]"] + ["%s = %s" % kv for kv in (gateway or {}).items()]
    lines += ["[listener:main]"] + ["%s = %s" % kv for kv in opts.items()]
    for name, r in (routes or {}).items():
        lines += ["[route:%s]" % name] + ["%s = %s" % kv for kv in r.items()]
    return gw_factory("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- client


class Response:
    def __init__(self, status, headers, body, sha=None, length=0):
        self.status = status
        self.headers = headers
        self.body = body
        self.sha = sha
        self.length = length

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:80])


class HTTPConn:
    """A raw HTTP/1.x client connection (optionally TLS), reusable for keep-alive."""

    def __init__(self, port, ctx=None, timeout=10.0):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.sock = s
        self.buf = b""

    def send_request(self, path, method="GET", headers=None, version="1.1", host=True):
        h = {}
        if host:
            h["Host"] = "localhost"
        h.update(headers or {})
        raw = "%s %s HTTP/%s\r\n" % (method, path, version) + "".join("%s: %s\r\n" % kv for kv in h.items())
        self.sock.sendall((raw + "\r\n").encode("latin-1"))

    def _fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def read_response(self, method="GET", hash_body=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = 0 if method == "HEAD" or status == 304 else int(headers.get("content-length", "0"))
        if not hash_body:
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
            return Response(status, headers, body, length=n)
        h = hashlib.sha256()
        got = 0
        while got < n:
            if not self.buf:
                self._fill()
            take = self.buf[: n - got]
            self.buf = self.buf[len(take):]
            h.update(take)
            got += len(take)
        return Response(status, headers, b"", sha=h.hexdigest(), length=got)

    def request(self, path, method="GET", headers=None, version="1.1", **kw):
        self.send_request(path, method, headers, version)
        return self.read_response(method, **kw)

    def wait_closed(self, timeout=5.0):
        """True if the server closes the connection in time; what came first is in .buf."""
        self.sock.settimeout(timeout * SLOW)
        data, closed = harness.read_until_close(self.sock)
        self.buf += data
        return closed

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(port, path, method="GET", headers=None, **kw):
    with HTTPConn(port) as c:
        return c.request(path, method, headers, **kw)


def raw_status(port, raw):
    """Send raw request bytes on a new connection; return the status of the response."""
    status, data = harness.http_exchange(port, raw)
    return status, data


# --------------------------------------------------------------------------- files and types


@pytest.mark.parametrize("name,ctype", TYPES)
def test_content_types(gw_factory, root, name, ctype):
    gw = web_gateway(gw_factory, root)
    r = get(gw.port, "/" + name)
    assert r.status == 200
    assert r.headers["content-type"] == ctype
    assert r.body == FILES[name]
    assert int(r.headers["content-length"]) == len(FILES[name])
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["etag"].startswith('"')
    assert re.match(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$", r.headers["last-modified"])


def test_empty_file_and_encoded_name(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    r = get(gw.port, "/empty.txt")
    assert (r.status, r.headers["content-length"], r.body) == (200, "0", b"")
    r = get(gw.port, "/a%20b.txt")
    assert (r.status, r.body) == (200, FILES["a b.txt"])
    r = get(gw.port, "/listme/caf%C3%A9%20space.txt")
    assert (r.status, r.body) == (200, FILES["listme/caf\u00e9 space.txt"])
    r = get(gw.port, "/index.html?cache=bust&x=1")  # the query is not part of the file name
    assert (r.status, r.body) == (200, FILES["index.html"])


def test_head_same_headers_no_body(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        h = c.request("/app.js", "HEAD")
        g = c.request("/app.js")  # on the same connection: HEAD left no body behind
        assert h.status == g.status == 200
        assert h.body == b""
        for k in ("content-type", "content-length", "etag", "last-modified"):
            assert h.headers[k] == g.headers[k]
        assert g.body == FILES["app.js"]
        assert c.request("/missing", "HEAD").status == 404
        assert c.request("/index.html").body == FILES["index.html"]


def test_not_found(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    assert get(gw.port, "/missing.html").status == 404
    assert get(gw.port, "/sub/missing/deeper.js").status == 404
    assert get(gw.port, "/index.html/").status == 404  # a file named as a directory
    assert get(gw.port, "/index.html/x").status == 404


# --------------------------------------------------------------------------- conditional requests


def test_if_none_match_304_and_200(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        first = c.request("/style.css")
        etag = first.headers["etag"]
        r = c.request("/style.css", headers={"If-None-Match": etag})
        assert r.status == 304 and r.body == b""
        assert r.headers["etag"] == etag
        assert "content-length" not in r.headers
        assert c.request("/style.css", headers={"If-None-Match": "W/" + etag}).status == 304
        assert c.request("/style.css", headers={"If-None-Match": '"other", ' + etag}).status == 304
        assert c.request("/style.css", headers={"If-None-Match": "*"}).status == 304
        other = c.request("/style.css", headers={"If-None-Match": '"other"'})
        assert other.status == 200 and other.body == FILES["style.css"]
        assert c.request("/style.css", "HEAD", headers={"If-None-Match": etag}).status == 304
        # The connection is still good after the 304s (no stray body bytes).
        assert c.request("/index.html").body == FILES["index.html"]


def test_if_modified_since_304_and_200(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    os.utime(root / "data.json", (1500000000, 1500000000))  # Fri, 14 Jul 2017 02:40:00 GMT
    r = get(gw.port, "/data.json")
    assert r.headers["last-modified"] == "Fri, 14 Jul 2017 02:40:00 GMT"
    assert get(gw.port, "/data.json", headers={"If-Modified-Since": "Fri, 14 Jul 2017 02:40:00 GMT"}).status == 304
    assert get(gw.port, "/data.json", headers={"If-Modified-Since": "Sat, 15 Jul 2017 00:00:00 GMT"}).status == 304
    older = get(gw.port, "/data.json", headers={"If-Modified-Since": "Fri, 14 Jul 2017 02:39:59 GMT"})
    assert older.status == 200 and older.body == FILES["data.json"]
    # A date that does not parse is ignored: the whole file.
    assert get(gw.port, "/data.json", headers={"If-Modified-Since": "yesterday"}).status == 200
    # If-None-Match decides when both are sent (RFC 9110 §13.2.2).
    both = {"If-None-Match": '"stale"', "If-Modified-Since": "Sat, 15 Jul 2017 00:00:00 GMT"}
    assert get(gw.port, "/data.json", headers=both).status == 200


def test_changed_file_gets_new_etag(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    old = get(gw.port, "/notes.txt")
    (root / "notes.txt").write_bytes(b"rewritten, longer than before\n")
    new = get(gw.port, "/notes.txt", headers={"If-None-Match": old.headers["etag"]})
    assert new.status == 200 and new.body == b"rewritten, longer than before\n"
    assert new.headers["etag"] != old.headers["etag"]


# --------------------------------------------------------------------------- methods


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "TRACE"])
def test_other_methods_405(gw_factory, root, method):
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        c.send_request("/index.html", method, {"Content-Length": "0"})
        r = c.read_response()
        assert r.status == 405
        assert r.headers["allow"] == "GET, HEAD"
        assert r.headers["connection"] == "close"
        assert c.wait_closed()


def test_plain_get_without_web_root_is_still_426(gw_echo):
    status, data = harness.http_exchange(gw_echo.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 426


def test_http2_version_505_and_missing_host_400(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    assert raw_status(gw.port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")[0] == 505
    assert raw_status(gw.port, b"GET / HTTP/1.1\r\n\r\n")[0] == 400
    assert raw_status(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")[0] == 400
    status, data = raw_status(gw.port, b"GET / HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
    assert status == 200 and data.endswith(FILES["index.html"])
    assert raw_status(gw.port, b"GET http://localhost/ HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 400


# --------------------------------------------------------------------------- directories


def test_index_and_redirect(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    assert get(gw.port, "/").body == FILES["index.html"]
    assert get(gw.port, "/sub/").body == FILES["sub/index.html"]
    r = get(gw.port, "/sub")
    assert r.status == 301 and r.headers["location"] == "/sub/"
    r = get(gw.port, "/sub?a=1&b=2")
    assert r.status == 301 and r.headers["location"] == "/sub/?a=1&b=2"
    r = get(gw.port, "/link_in_dir")
    assert r.status == 301 and r.headers["location"] == "/link_in_dir/"
    assert get(gw.port, "/link_in_dir/page.html").body == FILES["sub/page.html"]


def test_listing_off_by_default(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    r = get(gw.port, "/nolisting/")
    assert r.status == 403
    assert b"a.txt" not in r.body
    assert get(gw.port, "/nolisting/a.txt").body == b"a\n"


def test_listing_on_escapes_names(gw_factory, root):
    gw = web_gateway(gw_factory, root, listener={"web_listing": "yes"})
    r = get(gw.port, "/listme/")
    assert r.status == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    body = r.body.decode("utf-8")
    assert "<b onmouseover" not in body  # the hostile name never appears as markup
    assert "&lt;b onmouseover=&quot;x&quot;&gt;&amp;&#39;.txt" in body
    assert 'href="%3Cb%20onmouseover%3D%22x%22%3E%26%27.txt"' in body
    assert 'href="caf%C3%A9%20space.txt">caf\u00e9 space.txt</a>' in body
    assert 'href="inner/">inner/</a>' in body
    assert 'href="../"' in body
    assert "Index of /listme/" in body
    import html

    names = [html.unescape(n) for n in re.findall(r'<li><a href="[^"]+">([^<]*)</a>', body)]
    assert names[0] == "../"
    assert names[1:] == sorted(names[1:], key=lambda n: n.encode())  # by name, bytewise
    # The listed links work.
    assert get(gw.port, "/listme/%3Cb%20onmouseover%3D%22x%22%3E%26%27.txt").body == b"hostile name\n"
    # Directories with an index.html still get it; the root listing has no "../".
    assert get(gw.port, "/sub/").body == FILES["sub/index.html"]
    (root / "index.html").unlink()
    top = get(gw.port, "/").body.decode()
    assert 'href="../"' not in top and 'href="listme/"' in top
    # HEAD of a listing: its length, no body.
    h = get(gw.port, "/listme/", "HEAD")
    assert h.status == 200 and int(h.headers["content-length"]) == len(r.body) and h.body == b""


# --------------------------------------------------------------------------- traversal

TRAVERSAL = [
    ("/../outside/secret.txt", 403),
    ("/../../../../etc/passwd", 403),
    ("/sub/../../outside/secret.txt", 403),
    ("/%2e%2e/outside/secret.txt", 403),
    ("/%2E%2E/%2e%2e/etc/passwd", 403),
    ("/.%2e/outside/secret.txt", 403),
    ("/sub/%2e%2e/%2e%2e/outside/secret.txt", 403),
    ("/..%2foutside%2fsecret.txt", 403),
    ("/sub%2f..%2f..%2foutside%2fsecret.txt", 403),
    ("/index.html%00.png", 403),
    ("/%00", 403),
    ("/..\\outside\\secret.txt", 403),
    ("/%5c..%5coutside%5csecret.txt", 403),
    ("/a%0d%0aSet-Cookie:%20x", 403),
    ("/link_out_file", 403),
    ("/link_out_dir/secret.txt", 403),
    ("/link_out_dir/", 403),
    ("/link_dotdot", 403),
    ("/link_passwd", 403),
    ("/link_in_absolute", 403),  # absolute symlinks are refused even when they point inside
    ("/loop1", 403),
    ("/fifo", 403),
    ("/%zz", 400),
    ("/%", 400),
    ("/%252e%252e/outside/secret.txt", 404),  # decoded once: a literal "%2e%2e" directory
]


@pytest.mark.parametrize("path,status", TRAVERSAL)
def test_traversal_refused(gw_factory, root, path, status):
    gw = web_gateway(gw_factory, root)
    r = get(gw.port, path)
    assert r.status == status, r
    assert SECRET not in r.body and b"root:" not in r.body
    assert "set-cookie" not in r.headers


def test_symlink_inside_root_is_followed(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    r = get(gw.port, "/link_in")
    assert r.status == 200 and r.body == FILES["sub/page.html"]
    assert r.headers["content-type"] == "application/octet-stream"  # the link's own name decides


def test_symlink_swapped_to_outside_after_start(gw_factory, root):
    """A link that pointed inside is replaced by one that points out: refused at once."""
    gw = web_gateway(gw_factory, root)
    assert get(gw.port, "/sub/page.html").status == 200
    os.rename(str(root / "sub"), str(root / "sub.old"))
    os.symlink(str(root.parent / "outside"), str(root / "sub"))
    r = get(gw.port, "/sub/secret.txt")
    assert r.status == 403 and SECRET not in r.body


def test_traversal_over_one_keepalive_connection(gw_factory, root):
    """Refusals keep the connection: a browser's next request on it still works."""
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        for path, status in TRAVERSAL:
            assert c.request(path).status == status, path
        assert c.request("/index.html").body == FILES["index.html"]


# --------------------------------------------------------------------------- keep-alive


def test_keepalive_many_requests(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        for _ in range(3):
            for name, _ in TYPES:
                r = c.request("/" + name)
                assert r.status == 200 and r.body == FILES[name]
                assert r.headers["connection"] == "keep-alive"
    # One connection carried all 42 requests: one session, 42 web lines.
    assert len(re.findall(r"web s=1 ", gw.log())) == 3 * len(TYPES)


def test_pipelined_requests_answered_in_order(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        names = ["index.html", "app.js", "missing", "style.css", "sub/page.html"] * 20
        raw = b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % n.encode() for n in names)
        c.sock.sendall(raw)
        for n in names:
            r = c.read_response()
            if n == "missing":
                assert r.status == 404
            else:
                assert r.status == 200 and r.body == FILES[n]


def test_connection_close_honoured(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        r = c.request("/index.html", headers={"Connection": "close"})
        assert r.status == 200 and r.headers["connection"] == "close"
        assert r.body == FILES["index.html"]
        assert c.wait_closed()


def test_http10_closes_unless_keepalive_asked(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        r = c.request("/app.js", version="1.0")
        assert r.headers["connection"] == "close" and r.body == FILES["app.js"]
        assert c.wait_closed()
    with HTTPConn(gw.port) as c:
        for _ in range(3):
            r = c.request("/app.js", version="1.0", headers={"Connection": "keep-alive"})
            assert r.headers["connection"] == "keep-alive" and r.body == FILES["app.js"]


def test_request_with_body_closes_after_answer(gw_factory, root):
    """The body is never read, so the next request could not be found: the answer ends the
    connection, and the body bytes are never taken for a request."""
    gw = web_gateway(gw_factory, root)
    with HTTPConn(gw.port) as c:
        c.send_request("/index.html", headers={"Content-Length": "31"})
        c.sock.sendall(b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n"[:31])
        r = c.read_response()
        assert r.status == 200 and r.headers["connection"] == "close"
        assert c.wait_closed()
        assert c.buf == b""  # no second response


def test_idle_keepalive_connection_closed_quietly(gw_factory, root):
    gw = web_gateway(gw_factory, root, gateway={"handshake_timeout_s": "0.3"})
    with HTTPConn(gw.port) as c:
        assert c.request("/index.html").status == 200
        assert c.wait_closed(timeout=5.0)
        assert c.buf == b""  # closed without a 408


def test_slow_request_head_after_keepalive_gets_408(gw_factory, root):
    gw = web_gateway(gw_factory, root, gateway={"handshake_timeout_s": "0.3"})
    with HTTPConn(gw.port) as c:
        assert c.request("/index.html").status == 200
        c.sock.sendall(b"GET /app.js HTTP/1.1\r\n")  # and nothing more
        assert c.read_response().status == 408


def test_each_head_on_a_kept_connection_bounded(gw_factory, root):
    gw = web_gateway(gw_factory, root, listener={"max_request_bytes": "1k"})
    with HTTPConn(gw.port) as c:
        assert c.request("/index.html", headers={"X-Pad": "a" * 500}).status == 200
        assert c.request("/app.js", headers={"X-Pad": "b" * 500}).status == 200
        r = c.request("/style.css", headers={"X-Pad": "c" * 2000})
        assert r.status == 431
        assert c.wait_closed()
    with HTTPConn(gw.port) as c:  # after a HEAD, an error reply still has its body
        assert c.request("/app.js", "HEAD").status == 200
        c.sock.sendall(b"GET /\x01 HTTP/1.1\r\n\r\n")
        r = c.read_response()
        assert r.status == 400 and r.body == b"malformed request line\n"


def test_upgrade_after_get_on_same_connection(gw_factory, root, echo):
    gw = web_gateway(gw_factory, root, routes={"ws": {"path": "/ws", "target": "127.0.0.1:%d" % echo.port}})
    c = harness.WSClient(gw.port)
    try:
        c.sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = c.read_response()
        assert status == 200 and body == FILES["index.html"]
        c.handshake(path="/ws")
        c.send_binary(b"after a page load")
        assert c.recv_data(17) == b"after a page load"
        c.send_close(1000)
        c.expect_close(1000)
    finally:
        c.close()
    assert re.search(r"session s=1 open .*route=ws", gw.log())


def test_upgrade_to_unrouted_path_on_web_listener_404(gw_factory, root):
    """No route: an upgrade gets 404 (the web root never answers upgrades)."""
    gw = web_gateway(gw_factory, root)
    c = harness.WSClient(gw.port)
    try:
        c.handshake(path="/index.html", expect=404)
    finally:
        c.close()


# --------------------------------------------------------------------------- large files


def vm_kb(gw, key):
    with open("/proc/%d/status" % gw.proc.pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no " + key)


def download_big(gw, ctx=None, stall_s=0.0):
    """GET /big.bin (optionally not reading for stall_s first); returns (response, peak RSS growth KiB)."""
    base = gw.rss_kb()
    with HTTPConn(gw.port, ctx=ctx, timeout=60.0) as c:
        c.send_request("/big.bin")
        deadline = time.time() + stall_s
        peak = base
        while time.time() < deadline:
            peak = max(peak, gw.rss_kb())
            time.sleep(0.05)
        r = c.read_response(hash_body=True)
        peak = max(peak, gw.rss_kb(), vm_kb(gw, "VmHWM") if stall_s == 0 else 0)
        # The connection stays usable after 50 MB.
        assert c.request("/big.bin", "HEAD").status == 200
    return r, peak - base


def test_big_file_byte_exact_memory_bounded(gw_factory, big_file):
    top, sha = big_file
    gw = web_gateway(gw_factory, top)
    r, grown = download_big(gw)
    assert r.status == 200 and r.length == BIG_SIZE and r.sha == sha
    assert grown < RSS_BOUND_KB, "RSS grew by %d KiB serving 50 MiB" % grown
    assert re.search(r"web s=1 .*path=/big.bin status=200 bytes=%d" % BIG_SIZE, gw.log())


def test_big_file_slow_reader_memory_bounded(gw_factory, big_file):
    top, sha = big_file
    gw = web_gateway(gw_factory, top)
    r, grown = download_big(gw, stall_s=1.0)
    assert r.status == 200 and r.length == BIG_SIZE and r.sha == sha
    assert grown < RSS_BOUND_KB, "RSS grew by %d KiB while the reader stalled" % grown


def test_stalled_reader_dropped_after_timeout(gw_factory, big_file):
    top, _ = big_file
    gw = web_gateway(gw_factory, top, gateway={"handshake_timeout_s": "0.5"})
    with HTTPConn(gw.port) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send_request("/big.bin")
        gw.wait_log(r"web s=1 client=\S+ stopped reading the response", timeout=10.0)


def test_no_descriptor_left_behind(gw_factory, root, big_file):
    """Files, listings, refusals, and downloads the client abandons halfway: once the
    connections are gone, the gateway holds exactly the descriptors it started with."""
    top, _ = big_file
    os.symlink(str(top / "big.bin"), str(root / "big_outside"))
    shutil.copyfile(str(top / "big.bin"), str(root / "big.bin"))
    gw = web_gateway(gw_factory, root, listener={"web_listing": "yes"})
    time.sleep(0.2 * SLOW)
    base = gw.fd_count()
    for path in ["/", "/listme/", "/nolisting/", "/missing", "/fifo", "/link_passwd", "/big_outside", "/sub",
                 "/%00"]:
        get(gw.port, path)
        get(gw.port, path, "HEAD")
    etag = get(gw.port, "/app.js").headers["etag"]
    assert get(gw.port, "/app.js", headers={"If-None-Match": etag}).status == 304
    for _ in range(5):  # abandoned halfway: reset while segments are queued
        c = HTTPConn(gw.port)
        c.send_request("/big.bin")
        c.sock.recv(300000)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    deadline = time.time() + 10 * SLOW
    while gw.fd_count() != base and time.time() < deadline:
        time.sleep(0.05)
    assert gw.fd_count() == base, os.listdir("/proc/%d/fd" % gw.proc.pid)


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def small_pki(tmp_path_factory):
    p = tlslib.PKI(str(tmp_path_factory.mktemp("webpki")))
    ca = p.ca("ca", "wsplice web test CA")
    leaf = p.leaf("server", ca, "localhost", ("DNS:localhost", "IP:127.0.0.1"))
    return ca, leaf


def tls_ctx(ca):
    return ssl.create_default_context(cafile=ca.cert)


def test_tls_listener_serves_files(gw_factory, root, small_pki, echo):
    ca, leaf = small_pki
    gw = web_gateway(gw_factory, root, listener={"tls_cert": leaf.cert, "tls_key": leaf.key},
                     routes={"ws": {"path": "/ws", "target": "127.0.0.1:%d" % echo.port}})
    with HTTPConn(gw.port, ctx=tls_ctx(ca)) as c:
        for name, ctype in TYPES[:5]:
            r = c.request("/" + name)
            assert r.status == 200 and r.body == FILES[name] and r.headers["content-type"] == ctype
        assert c.request("/../outside/secret.txt").status == 403
    assert get(gw.port, "/app.js").body == FILES["app.js"]  # plain HTTP on the same port
    # wss:// on the same TLS port after a page load on the same connection.
    c = tlslib.TLSWSClient(gw.port, tls_ctx(ca))
    try:
        c.sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert c.read_response()[2] == FILES["index.html"]
        c.handshake(path="/ws")
        c.send_binary(b"tls")
        assert c.recv_data(3) == b"tls"
    finally:
        c.close()


def test_tls_big_file_byte_exact_memory_bounded(gw_factory, big_file, small_pki):
    top, sha = big_file
    ca, leaf = small_pki
    gw = web_gateway(gw_factory, top, listener={"tls_cert": leaf.cert, "tls_key": leaf.key})
    r, grown = download_big(gw, ctx=tls_ctx(ca))
    assert r.status == 200 and r.length == BIG_SIZE and r.sha == sha
    assert grown < RSS_BOUND_KB, "RSS grew by %d KiB serving 50 MiB over TLS" % grown
    r, grown = download_big(gw, ctx=tls_ctx(ca), stall_s=1.0)
    assert r.sha == sha
    assert grown < RSS_BOUND_KB, "RSS grew by %d KiB while a TLS reader stalled" % grown


# --------------------------------------------------------------------------- command line, config, log


def test_websockify_web_flag(gw_factory, root, echo):
    gw = gw_factory(args=["--web", str(root), "127.0.0.1:0", "127.0.0.1:%d" % echo.port])
    assert get(gw.port, "/").body == FILES["index.html"]
    assert get(gw.port, "/nolisting/").status == 403
    c = harness.connect(gw.port, "/websockify")  # every path upgrades to the target
    try:
        c.send_binary(b"x")
        assert c.recv_data(1) == b"x"
    finally:
        c.close()


def test_web_flag_needs_command_line_form(tmp_path):
    p = subprocess.run([harness.WSPLICE_BIN, "--web", str(tmp_path), "-c", "/dev/null"], capture_output=True)
    assert p.returncode == 2 and b"websockify-style flags" in p.stderr


def check_config(tmp_path, text):
    path = tmp_path / "w.ini"
    path.write_text(text)
    p = subprocess.run([harness.WSPLICE_BIN, "-t", "-c", str(path)], capture_output=True, text=True)
    return p.returncode, p.stderr


def test_config_errors(tmp_path, root):
    rc, err = check_config(tmp_path, "[listener:a]\nbind = 127.0.0.1:0\nweb_root = %s/nope\n" % tmp_path)
    assert rc == 2 and "w.ini:3: [listener:a] web_root: %s/nope: No such file or directory" % tmp_path in err
    rc, err = check_config(tmp_path, "[listener:a]\nbind = 127.0.0.1:0\nweb_root = %s/index.html\n" % root)
    assert rc == 2 and "web_root: %s/index.html: not a directory" % root in err
    rc, err = check_config(tmp_path, "[listener:a]\nbind = 127.0.0.1:0\nweb_listing = yes\n")
    assert rc == 2 and "w.ini:3: [listener:a] web_listing: needs web_root in this section" in err
    # A listener with a web root needs no routes.
    rc, err = check_config(tmp_path, "[listener:a]\nbind = 127.0.0.1:0\nweb_root = %s\n" % root)
    assert rc == 0, err


def test_log_line_per_request_escaped(gw_factory, root):
    gw = web_gateway(gw_factory, root)
    get(gw.port, '/a"b=c?password=hunter2')
    get(gw.port, "/app.js", "HEAD")
    get(gw.port, "/sub/page.html")
    log = gw.wait_log(r"path=/sub/page.html status=200").string
    assert re.search(r'web s=\d+ client=127\.0\.0\.1:\d+ method=GET path=/a\\x22b\\x3dc status=404 bytes=10\n', log)
    assert re.search(r"method=HEAD path=/app.js status=200 bytes=0\n", log)
    assert "hunter2" not in log  # query strings are never logged
    gw.send_signal(signal.SIGUSR1)
    gw.wait_log(r"metrics .*web_requests=3 web_bytes=%d" % (10 + len(FILES["sub/page.html"])))
