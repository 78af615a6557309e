"""The log: exactly one open and one close line per session with the right byte counts,
close code and side, and peer-supplied text escaped so it can never add control
characters, unescaped spaces or quotes, or a forged line."""

import re
import socket

import harness
from harness import SLOW

LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) ")


class FixedBackend(harness.Backend):
    """Sends 'down' bytes on connect, then reads (and counts) until EOF."""

    def __init__(self, down, **kw):
        self.down = down
        self.received = []
        super().__init__(**kw)

    def handle(self, c):
        c.sendall(self.down)
        n = 0
        while True:
            d = c.recv(65536)
            if not d:
                break
            n += len(d)
        self.received.append(n)
        c.close()


def open_lines(log, sid):
    return re.findall(r"^.* session s=%d open .*$" % sid, log, re.M)


def close_lines(log, sid):
    return re.findall(r"^.* session s=%d close .*$" % sid, log, re.M)


def kv(line):
    """key=value fields of a log line (values without spaces)."""
    return dict(re.findall(r"(\w+)=(\S+)", line))


def check_log_is_clean(raw):
    """Every line of the log is a real log line, and no raw control or non-ASCII byte
    appears anywhere but the line ends."""
    for b in raw:
        assert b == 0x0A or 0x20 <= b < 0x7F, "raw byte 0x%02x in the log:\n%r" % (b, raw)
    for line in raw.decode("ascii").splitlines():
        assert LINE_START.match(line), "not a log line: %r" % line


def raw_log(gw):
    with open(gw.log_path, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- session lines


def test_one_open_and_one_close_line_with_byte_counts(gw_factory, cleanup):
    down = harness.seeded_bytes(777, 4)
    backend = FixedBackend(down)
    cleanup.append(backend)
    gw = gw_factory(harness.config(routes={"fixed": {"path": "/f/*", "target": "127.0.0.1:%d" % backend.port}}))
    c = harness.connect(gw.port, path="/f/x", protocols=["binary"])
    local = "%s:%d" % c.sock.getsockname()
    assert c.recv_data(777) == down
    for n in (1000, 200, 34):  # 1234 bytes up in three frames
        c.send_binary(harness.seeded_bytes(n, n))
    c.send_text("")  # an empty frame adds nothing
    c.send_close(1000)
    c.expect_close(1000)
    assert c.wait_eof()
    c.close()
    gw.wait_log(r"session s=1 close ")
    backend.wait_accept()
    log = gw.log()
    opens, closes = open_lines(log, 1), close_lines(log, 1)
    assert len(opens) == 1 and len(closes) == 1, log
    o, cl = kv(opens[0]), kv(closes[0])
    target = "127.0.0.1:%d" % backend.port
    assert o["client"] == local and o["route"] == "fixed" and o["target"] == target and o["proto"] == "binary"
    assert cl["client"] == local and cl["route"] == "fixed" and cl["target"] == target
    assert cl["up"] == "1234" and cl["down"] == "777"
    assert re.fullmatch(r"\d+\.\d{3}s", cl["dur"])
    assert cl["code"] == "1000" and cl["by"] == "client"
    assert "reason=" in closes[0]
    assert log.index(opens[0]) < log.index(closes[0])


def test_lines_per_session_for_several_sessions(gw_echo):
    sizes = {1: 10, 2: 2000, 3: 70000}
    for sid, n in sizes.items():
        c = harness.connect(gw_echo.port)
        c.send_binary(b"z" * n)
        assert c.recv_data(n) == b"z" * n
        c.send_close(1000)
        c.expect_close(1000)
        assert c.wait_eof()
        c.close()
        gw_echo.wait_log(r"session s=%d close " % sid)
    log = gw_echo.log()
    for sid, n in sizes.items():
        assert len(open_lines(log, sid)) == 1, log
        closes = close_lines(log, sid)
        assert len(closes) == 1, log
        f = kv(closes[0])
        assert f["up"] == str(n) and f["down"] == str(n), closes[0]
        assert kv(open_lines(log, sid)[0])["proto"] == "none"
    assert len(re.findall(r" session s=\d+ open ", log)) == 3
    assert len(re.findall(r" session s=\d+ close ", log)) == 3


def test_client_drops_tcp_logs_1006_by_client(gw_echo):
    c = harness.connect(gw_echo.port)
    c.send_binary(b"abc")
    assert c.recv_data(3) == b"abc"
    c.sock.shutdown(socket.SHUT_WR)  # TCP FIN without a close frame
    c.wait_eof()
    c.close()
    m = gw_echo.wait_log(r"session s=1 close .*$")
    f = kv(m.group(0))
    assert f["code"] == "1006" and f["by"] == "client", m.group(0)
    assert f["up"] == "3" and f["down"] == "3"
    assert len(close_lines(gw_echo.log(), 1)) == 1


def test_backend_close_logs_by_backend(gw_factory, cleanup):
    src = harness.SourceBackend(5000, seed=8, end="close")
    cleanup.append(src)
    gw = gw_factory(harness.config(routes={"src": {"path": "/*", "target": "127.0.0.1:%d" % src.port}}))
    c = harness.connect(gw.port)
    code, _, data = c.recv_close()
    assert code == 1000 and len(data) == 5000
    c.send_close(1000)
    assert c.wait_eof()
    c.close()
    f = kv(gw.wait_log(r"session s=1 close .*$").group(0))
    assert f["by"] == "backend" and f["down"] == "5000" and f["up"] == "0"


def test_rejected_handshake_has_no_session_lines(gw_echo):
    c = harness.WSClient(gw_echo.port)
    c.handshake(headers={"Sec-WebSocket-Version": "8"}, expect=426)
    c.close()
    gw_echo.wait_log(r"session s=1 reject .*status=426")
    log = gw_echo.log()
    assert open_lines(log, 1) == [] and close_lines(log, 1) == []


# --------------------------------------------------------------------------- escaping


def value_between(line, start, end):
    i = line.index(start) + len(start)
    j = line.index(end, i)
    return line[i:j]


def check_escaped(value):
    assert value, "empty value"
    for ch in value:
        assert ch not in ' "' and 0x20 < ord(ch) < 0x7F, "unescaped %r in %r" % (ch, value)


def test_peer_strings_escaped_in_debug_log(gw_factory, echo):
    gw = gw_factory(
        harness.config(routes={"r": {"path": "/*", "target": "127.0.0.1:%d" % echo.port}}), args=["-v"]
    )
    path = '/p%0a%0d"quoted"\'\\x=1'
    origin = 'http://evil example.com "quoted" tab\there \x80\xff\xc3\xa9 end'
    c = harness.WSClient(gw.port)
    req = (
        "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: %s\r\n\r\n"
        % (path, origin)
    ).encode("latin-1")
    c.send_raw(req)
    c.read_response(body=False)
    assert c.status == 101
    c.send_close(1000)
    c.expect_close(1000)
    c.close()
    # Raw DEL and high bytes in the request target: refused, and not copied into the log.
    bad = harness.WSClient(gw.port)
    bad.send_raw(req.replace(b"GET /p", b"GET /\x7f\xff\xfe\x80p", 1))
    bad.read_response()
    assert bad.status == 400
    bad.close()
    m = gw.wait_log(r"session s=1 request [^\n]*")
    line = m.group(0)
    check_escaped(value_between(line, "path=", " host="))
    check_escaped(value_between(line, "origin=", " verdict="))
    assert "evil" in line and "quoted" in line  # the value is there, escaped, not dropped
    gw.wait_log(r"session s=2 reject ")
    check_log_is_clean(raw_log(gw))


def test_404_path_cannot_forge_a_log_line(gw_factory, echo):
    route = {"path": "/only", "host": "a.example", "target": "127.0.0.1:%d" % echo.port}
    gw = gw_factory(harness.config(routes={"r": route}))
    forged = "2099-01-01T00:00:00.000Z info session s=999 open client=6.6.6.6:6 route=x target=y proto=none"
    attempts = [
        # Percent-encoded line breaks in the path are not decoded into the log.
        ("/x%0d%0a" + forged.replace(" ", "%20"), "a.example"),
        # Spaces and quotes in a Host header that matches no route.
        ("/only", 'evil" ' + forged),
        ("/only", "evil\t" + forged + " \xff"),
    ]
    for path, host in attempts:
        c = harness.WSClient(gw.port)
        c.handshake(path=path, headers={"Host": host}, expect=404)
        c.close()
    # Raw line breaks cannot get through at all: a CR inside a header is a malformed request.
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5 * SLOW)
    s.sendall(b"GET /only HTTP/1.1\r\nHost: a\r" + forged.encode() + b"\r\nUpgrade: websocket\r\n\r\n")
    reply = s.recv(4096)
    s.close()
    assert reply.startswith(b"HTTP/1.1 400 ")
    gw.wait_log(r"(?s)(no route.*){3}")
    raw = raw_log(gw)
    check_log_is_clean(raw)
    log = raw.decode("ascii")
    assert not re.search(r"^2099-", log, re.M)
    assert not re.search(r"\bsession s=999\b", log)
    for line in re.findall(r"^.* no route .*$", log, re.M):
        check_escaped(value_between(line + "\n", "path=", " host="))
        check_escaped(value_between(line + "\n", "host=", "\n"))
