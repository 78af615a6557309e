"""The opening handshake (RFC 6455 §4.2) as the real binary answers it: the 101 and its
headers, subprotocol choice, every rejection with its status, the backend connect that
happens before the 101, and the session limits. Requests are written byte by byte here so
the malformed ones are exactly what a broken or hostile client would send."""

import base64
import hashlib
import os
import re
import socket
import ssl
import threading

import pytest

import harness
from harness import SLOW

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --------------------------------------------------------------------------- helpers


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    """Sec-WebSocket-Accept computed here, independently of the gateway (§4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def request(
    path="/",
    method="GET",
    version="HTTP/1.1",
    host="127.0.0.1",
    key=None,
    drop=(),
    add=(),
    replace=None,
    eol="\r\n",
):
    """A request head as bytes. Headers are an ordered list so names may repeat.
    drop: names to leave out; replace: {name: value}; add: extra (name, value) pairs."""
    replace = {k.lower(): v for k, v in (replace or {}).items()}
    dropped = {d.lower() for d in drop}
    headers = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key or new_key()),
        ("Sec-WebSocket-Version", "13"),
    ]
    lines = ["%s %s %s" % (method, path, version)]
    for name, value in headers:
        if name.lower() in dropped:
            continue
        lines.append("%s: %s" % (name, replace.get(name.lower(), value)))
    for name, value in add:
        lines.append("%s: %s" % (name, value))
    return (eol.join(lines) + eol + eol).encode("latin-1")


def plain(*lines):
    """A request head from literal lines (CRLF-terminated, then the blank line)."""
    return ("".join(line + "\r\n" for line in lines) + "\r\n").encode("latin-1")


class Response:
    def __init__(self, data, closed):
        self.raw = data
        self.closed = closed
        self.status = None
        self.headers = []
        self.body = b""
        if b"\r\n\r\n" in data:
            head, self.body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            m = re.match(r"HTTP/1\.1 (\d{3}) ", lines[0])
            self.status = int(m.group(1)) if m else None
            for line in lines[1:]:
                k, v = line.split(":", 1)
                self.headers.append((k.strip().lower(), v.strip()))

    def values(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def header(self, name):
        vals = self.values(name)
        assert len(vals) == 1, "expected one %s header, got %r in %r" % (name, vals, self.raw)
        return vals[0]

    def __repr__(self):
        return "Response(closed=%s, %r)" % (self.closed, self.raw[:600])


def exchange(port, raw, timeout=5.0, host="127.0.0.1"):
    """Send 'raw' (from a thread, so a huge request cannot deadlock against the reply)
    and read until the server closes or 'timeout' passes."""
    s = socket.create_connection((host, port), timeout=timeout * SLOW)

    def send():
        try:
            s.sendall(raw)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data, closed = harness.read_until_close(s)
    sender.join(timeout * SLOW)
    s.close()
    return Response(data, closed)


def check_error(r, status, head=False):
    """Every rejection: the status, a text/plain body whose length Content-Length gives,
    Connection: close, and the server closing TCP after it. A reply to HEAD keeps the
    headers but has no body (RFC 9110 §9.3.2)."""
    assert r.status == status, "expected %d, got %r" % (status, r)
    assert r.header("content-type").startswith("text/plain"), r
    assert r.header("connection").lower() == "close", r
    if head:
        assert r.body == b"" and int(r.header("content-length")) > 0, r
        assert r.closed, r
        return
    assert int(r.header("content-length")) == len(r.body), r
    assert r.body.strip(), "error body is empty: %r" % r
    r.body.decode("utf-8")  # a text body
    assert r.closed, "server kept the connection open after %d: %r" % (status, r)
    assert not r.raw.startswith(b"HTTP/1.1 101"), r


def read_head(c):
    """Read the response head on a WSClient; returns (status, [(name, value)]), leaving
    anything after the head (early frames) in c.buf."""
    while b"\r\n\r\n" not in c.buf:
        c._fill()
    head, c.buf = c.buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers.append((k.strip().lower(), v.strip()))
    return status, headers


def upgrade_raw(port, raw):
    """Send a raw upgrade request on a fresh WSClient; returns (client, status, headers)."""
    c = harness.WSClient(port)
    c.send_raw(raw)
    status, headers = read_head(c)
    return c, status, headers


def values(headers, name):
    return [v for k, v in headers if k == name]


def echo_roundtrip(c, payload=b"ping-through"):
    c.send_binary(payload)
    assert c.recv_data(len(payload)) == payload


def close_cleanly(c):
    c.send_close(1000)
    c.expect_close(1000)
    assert c.wait_eof()
    c.close()


def route_gw(gw_factory, target, route_opts=None, gateway_opts=None, listener_opts=None):
    """A gateway with one listener and one route /* to 'target'."""
    opts = {"path": "/*", "target": target}
    opts.update(route_opts or {})
    text = harness.config(routes={"r": opts}, gateway=gateway_opts)
    if listener_opts:
        extra = "".join("%s = %s\n" % kv for kv in listener_opts.items())
        text = text.replace("bind = 127.0.0.1:0\n", "bind = 127.0.0.1:0\n" + extra)
    return gw_factory(text)


# --------------------------------------------------------------------------- 101


@pytest.mark.parametrize(
    "key",
    ["dGhlIHNhbXBsZSBub25jZQ==", None],  # RFC 6455 §1.3's example key, and a random one
    ids=["rfc_example_key", "random_key"],
)
def test_valid_upgrade_gets_101_with_accept_key(gw_echo, key):
    key = key or new_key()
    c, status, headers = upgrade_raw(gw_echo.port, request(key=key, host="127.0.0.1:%d" % gw_echo.port))
    assert status == 101
    assert [v.lower() for v in values(headers, "upgrade")] == ["websocket"]
    assert [v.lower() for v in values(headers, "connection")] == ["upgrade"]
    assert values(headers, "sec-websocket-accept") == [accept_for(key)]
    if key == "dGhlIHNhbXBsZSBub25jZQ==":
        assert accept_for(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert values(headers, "sec-websocket-protocol") == []
    echo_roundtrip(c)
    close_cleanly(c)


@pytest.mark.parametrize(
    "offers, chosen",
    [
        (["binary"], "binary"),
        (["base64, binary"], "binary"),
        (["binary, base64"], "binary"),
        (["base64", "binary"], "binary"),  # two Sec-WebSocket-Protocol headers
        (["base64"], "base64"),
        ([], None),
        (["chat, superchat"], None),
        (["chat", "v2.example"], None),
    ],
    ids=[
        "binary",
        "base64_then_binary",
        "binary_then_base64",
        "two_headers",
        "base64_only",
        "none_offered",
        "unknown_only",
        "unknown_two_headers",
    ],
)
def test_subprotocol_choice(gw_echo, offers, chosen):
    raw = request(add=[("Sec-WebSocket-Protocol", o) for o in offers])
    c, status, headers = upgrade_raw(gw_echo.port, raw)
    assert status == 101
    if chosen is None:
        assert values(headers, "sec-websocket-protocol") == []
    else:
        assert values(headers, "sec-websocket-protocol") == [chosen]
    if chosen == "base64":
        # base64 mode: text frames carrying base64 both ways.
        c.send_text(base64.b64encode(b"\x00\xffraw"))
        fin, op, payload = c.recv_frame()
        assert op == harness.OP_TEXT and base64.b64decode(payload) == b"\x00\xffraw"
    else:
        echo_roundtrip(c, b"\x00\xffraw")
    close_cleanly(c)


@pytest.mark.parametrize(
    "name, value",
    [
        ("Connection", "keep-alive, Upgrade"),
        ("Connection", "UPGRADE"),
        ("Connection", "upgrade"),
        ("Upgrade", "WebSocket"),
    ],
    ids=["connection_list", "connection_upper", "connection_lower", "upgrade_mixed_case"],
)
def test_upgrade_token_variants_accepted(gw_echo, name, value):
    c, status, _ = upgrade_raw(gw_echo.port, request(replace={name: value}))
    assert status == 101
    echo_roundtrip(c)
    close_cleanly(c)


def test_bare_lf_line_endings_accepted(gw_echo):
    key = new_key()
    raw = request(key=key, eol="\n")
    assert b"\r" not in raw
    c, status, headers = upgrade_raw(gw_echo.port, raw)
    assert status == 101
    assert values(headers, "sec-websocket-accept") == [accept_for(key)]
    echo_roundtrip(c)
    close_cleanly(c)


def test_frames_pipelined_with_upgrade_relayed_after_101(gw_echo):
    """A client may send frames right behind its request, in the same write."""
    c = harness.WSClient(gw_echo.port)
    early = harness.encode_frame(harness.OP_BINARY, b"early-1") + harness.encode_frame(harness.OP_BINARY, b"early-2")
    c.send_raw(request() + early)
    status, _ = read_head(c)
    assert status == 101
    assert c.recv_data(14) == b"early-1early-2"
    echo_roundtrip(c)
    close_cleanly(c)


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "get"])
def test_non_get_method_gets_405_allow_get(gw_echo, method):
    r = exchange(gw_echo.port, request(method=method))
    check_error(r, 405, head=method == "HEAD")
    assert r.header("allow") == "GET"


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/0.9", "HTTP/2.0"])
def test_http_version_other_than_1_1_gets_400(gw_echo, version):
    check_error(exchange(gw_echo.port, request(version=version)), 400)


def test_missing_host_gets_400(gw_echo):
    check_error(exchange(gw_echo.port, request(drop=["Host"])), 400)


def test_empty_host_gets_400(gw_echo):
    check_error(exchange(gw_echo.port, request(replace={"Host": ""})), 400)


def test_two_host_headers_gets_400(gw_echo):
    check_error(exchange(gw_echo.port, request(add=[("Host", "other.example")])), 400)


def test_plain_get_gets_426(gw_echo):
    """An ordinary GET (a browser opening the URL): 426 naming the upgrade, never a hang."""
    r = exchange(gw_echo.port, plain("GET / HTTP/1.1", "Host: 127.0.0.1", "Accept: text/html"))
    check_error(r, 426)
    assert r.header("upgrade").lower() == "websocket"
    assert r.header("sec-websocket-version") == "13"


def test_upgrade_h2c_gets_400(gw_echo):
    check_error(exchange(gw_echo.port, request(replace={"Upgrade": "h2c"})), 400)
    r = exchange(
        gw_echo.port,
        plain("GET / HTTP/1.1", "Host: 127.0.0.1", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
              "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA"),
    )
    check_error(r, 400)


def test_missing_upgrade_header_with_key_gets_400(gw_echo):
    check_error(exchange(gw_echo.port, request(drop=["Upgrade"])), 400)


@pytest.mark.parametrize("value", ["keep-alive", "close", "Upgrade-Insecure", None])
def test_connection_without_upgrade_token_gets_400(gw_echo, value):
    raw = request(drop=["Connection"]) if value is None else request(replace={"Connection": value})
    check_error(exchange(gw_echo.port, raw), 400)


@pytest.mark.parametrize(
    "case",
    ["missing", "15_bytes", "17_bytes", "bad_base64", "repeated", "unpadded", "empty"],
)
def test_bad_key_gets_400(gw_echo, case):
    if case == "missing":
        raw = request(drop=["Sec-WebSocket-Key"])
    elif case == "15_bytes":
        raw = request(key=base64.b64encode(os.urandom(15)).decode())
    elif case == "17_bytes":
        raw = request(key=base64.b64encode(os.urandom(17)).decode())
    elif case == "bad_base64":
        raw = request(key="!!!!####$$$$%%%%^^^^&&==")  # 24 characters, not base64
    elif case == "repeated":
        raw = request(add=[("Sec-WebSocket-Key", new_key())])
    elif case == "unpadded":
        raw = request(key=new_key().rstrip("="))
    else:
        raw = request(replace={"Sec-WebSocket-Key": ""})
    check_error(exchange(gw_echo.port, raw), 400)


@pytest.mark.parametrize("version", [None, "8", "7", "13, 8"], ids=["missing", "v8", "v7", "list"])
def test_bad_websocket_version_gets_426(gw_echo, version):
    if version is None:
        raw = request(drop=["Sec-WebSocket-Version"])
    else:
        raw = request(replace={"Sec-WebSocket-Version": version})
    r = exchange(gw_echo.port, raw)
    check_error(r, 426)
    assert r.header("sec-websocket-version") == "13"


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1/", "ws://127.0.0.1/vnc", "127.0.0.1:80", "*"],
    ids=["absolute_http", "absolute_ws", "authority_form", "asterisk_form"],
)
def test_non_path_target_gets_400(gw_echo, target):
    check_error(exchange(gw_echo.port, request(path=target)), 400)


@pytest.mark.parametrize(
    "line",
    [
        "GET /",
        "GET / HTTP/1.1 extra",
        "GET  / HTTP/1.1",
        "GET / HTTP/1.1 ",
        "GET / HTTPS/1.1",
        "GET / HTTP/11",
        " GET / HTTP/1.1",
        "GET\t/\tHTTP/1.1",
        "GET / http/1.1",
        "GET /a\rb HTTP/1.1",
    ],
)
def test_malformed_request_line_gets_400(gw_echo, line):
    raw = request()
    raw = line.encode("latin-1") + raw[raw.index(b"\r\n") :]
    check_error(exchange(gw_echo.port, raw), 400)


@pytest.mark.parametrize(
    "extra",
    [
        b"X-Spaced : value\r\n",
        b"X-Folded: first\r\n  continued\r\n",
        b"X-Folded: first\r\n\tcontinued\r\n",
        b"X-Ctl: a\x01b\r\n",
        b"X-Del: a\x7fb\r\n",
        b"X-Nul: a\x00b\r\n",
        b"X-Cr: a\rb\r\n",
        b"No colon here\r\n",
        b": empty-name\r\n",
        b"X(bad): name\r\n",
    ],
    ids=[
        "space_before_colon",
        "obs_fold_space",
        "obs_fold_tab",
        "control_char_in_value",
        "del_in_value",
        "nul_in_value",
        "bare_cr_in_value",
        "no_colon",
        "empty_name",
        "bad_name_char",
    ],
)
def test_malformed_header_line_gets_400(gw_echo, extra):
    raw = request()
    # Just after the request line, so everything else in the head is valid.
    i = raw.index(b"\r\n") + 2
    check_error(exchange(gw_echo.port, raw[:i] + extra + raw[i:]), 400)


def client_hello():
    """A real TLS ClientHello, as a browser would send to a wss:// URL on this plain port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="gateway.example")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


@pytest.mark.parametrize("kind", ["tls_client_hello", "binary_garbage", "method_then_binary", "long_token"])
def test_garbage_gets_400_without_complete_head(gw_factory, echo, kind):
    """Not HTTP at all: answered 400 at once, not after the handshake timeout (which would be
    a 408) and not by waiting for a blank line that never comes."""
    gw = route_gw(gw_factory, "127.0.0.1:%d" % echo.port, gateway_opts={"handshake_timeout_s": "30"})
    if kind == "tls_client_hello":
        data = client_hello()
        assert data[0] == 0x16  # a TLS handshake record
    elif kind == "binary_garbage":
        data = b"\x00\xff\xfe\x80" + harness.seeded_bytes(200, 7)
    elif kind == "method_then_binary":
        data = b"GET \x00\x01\x02\x03"
    else:
        data = b"A" * 100  # no method is that long
    assert b"\r\n\r\n" not in data and b"\n\n" not in data
    r = exchange(gw.port, data, timeout=10.0)
    check_error(r, 400)


@pytest.mark.parametrize("where", ["gateway", "listener"])
def test_request_head_over_max_request_bytes_gets_431(gw_factory, echo, where):
    opts = {"max_request_bytes": "1024"}
    gw = route_gw(
        gw_factory,
        "127.0.0.1:%d" % echo.port,
        gateway_opts=opts if where == "gateway" else None,
        listener_opts=opts if where == "listener" else None,
    )
    big = request(add=[("X-Pad", "a" * 1200)])
    check_error(exchange(gw.port, big), 431)
    # Just under the limit is still fine.
    small = request(add=[("X-Pad", "a" * 600)])
    assert len(small) < 1024
    c, status, _ = upgrade_raw(gw.port, small)
    assert status == 101
    echo_roundtrip(c)
    close_cleanly(c)


def test_one_mib_head_gets_431_and_gateway_stays_healthy(gw_echo):
    raw = request(add=[("X-Pad-%d" % i, "b" * 1000) for i in range(1048)])
    assert len(raw) > 1024 * 1024
    check_error(exchange(gw_echo.port, raw, timeout=10.0), 431)
    c = harness.connect(gw_echo.port)
    echo_roundtrip(c)
    close_cleanly(c)
    assert gw_echo.proc.poll() is None


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"],
    ids=["nothing_sent", "partial_request"],
)
def test_handshake_timeout_gets_408_and_close(gw_factory, echo, sent):
    gw = route_gw(gw_factory, "127.0.0.1:%d" % echo.port, gateway_opts={"handshake_timeout_s": "0.5"})
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10 * SLOW)
    if sent:
        s.sendall(sent)
    data, closed = harness.read_until_close(s)
    s.close()
    check_error(Response(data, closed), 408)


# --------------------------------------------------------------------------- the backend


def test_backend_down_502(gw_factory):
    """Refused backend: 502, and never a 101 first (the backend is connected before it)."""
    gw = route_gw(gw_factory, "127.0.0.1:%d" % harness.free_port())
    r = exchange(gw.port, request())
    check_error(r, 502)
    assert b"101" not in r.raw.split(b"\r\n", 1)[0]
    assert r.raw.count(b"HTTP/1.1 ") == 1


def test_backend_black_hole_504(gw_factory, cleanup):
    hole = harness.BlackHole()
    cleanup.append(hole)
    gw = route_gw(gw_factory, "127.0.0.1:%d" % hole.port, route_opts={"connect_timeout_s": "0.5"})
    r = exchange(gw.port, request(), timeout=10.0)
    check_error(r, 504)
    assert r.raw.count(b"HTTP/1.1 ") == 1


def test_backend_connected_before_101(gw_factory, cleanup):
    """A backend that talks first: its bytes are the first frame right behind the 101,
    which is only possible if the connect finished before the 101 went out."""
    src = harness.SourceBackend(3000, seed=5, end="none")
    cleanup.append(src)
    gw = route_gw(gw_factory, "127.0.0.1:%d" % src.port)
    c = harness.WSClient(gw.port)
    c.send_raw(request())
    status, _ = read_head(c)
    assert status == 101
    src.wait_accept()
    fin, op, payload = c.recv_frame()
    assert op == harness.OP_BINARY
    want = harness.seeded_bytes(3000, 5)
    assert payload and want.startswith(payload)
    assert payload + c.recv_data(3000 - len(payload)) == want
    c.close()
    src.close()  # the backend's EOF ends the session


def test_target_name_localhost_resolves_and_works(gw_factory, echo):
    """'localhost' may resolve to ::1 first while the backend listens on 127.0.0.1 only:
    the gateway must try each resolved address in turn."""
    gw = route_gw(gw_factory, "localhost:%d" % echo.port)
    c = harness.connect(gw.port)
    echo.wait_accept()
    echo_roundtrip(c, b"via a name")
    close_cleanly(c)


def test_target_name_that_does_not_resolve_502(gw_factory):
    gw = route_gw(gw_factory, "no-such-host.invalid:80", route_opts={"connect_timeout_s": "5"})
    r = exchange(gw.port, request(), timeout=15.0)
    check_error(r, 502)


# --------------------------------------------------------------------------- limits


def test_route_max_sessions_503_then_recovers(gw_factory, echo):
    gw = route_gw(gw_factory, "127.0.0.1:%d" % echo.port, route_opts={"max_sessions": "1"})
    first = harness.connect(gw.port)
    echo_roundtrip(first)
    check_error(exchange(gw.port, request()), 503)
    close_cleanly(first)
    gw.wait_log(r"session s=1 close ")
    again = harness.connect(gw.port)
    echo_roundtrip(again)
    close_cleanly(again)


def test_gateway_max_sessions_503(gw_factory, echo):
    gw = route_gw(gw_factory, "127.0.0.1:%d" % echo.port, gateway_opts={"max_sessions": "2"})
    a = harness.connect(gw.port)
    b = harness.connect(gw.port)
    check_error(exchange(gw.port, request()), 503)
    # The two sessions are untouched by the refusal.
    echo_roundtrip(a, b"a")
    echo_roundtrip(b, b"b")
    close_cleanly(a)
    gw.wait_log(r"session s=1 close ")
    c = harness.connect(gw.port)
    echo_roundtrip(c, b"c")
    close_cleanly(c)
    close_cleanly(b)
