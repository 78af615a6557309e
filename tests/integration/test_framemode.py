"""Per-route frame modes (issue 6, part 2): frame_mode = text sends backend bytes as text
messages of valid UTF-8 (invalid bytes replaced or the session closed with 1011, code
points split across backend writes held back, never replaced); frame_mode = lines sends
each backend line as one text message without its line end (CRLF or LF; max_line_bytes,
1009 above it) and writes each client message to the backend as a line, CRLF added when
missing. Subprotocols on such routes, streaming of large client messages, and an IRC-style
exchange through a real client library.

Real parts: the gateway binary, TCP backends in threads, python3-websockets and the raw
harness client (where exact frames matter)."""

import asyncio
import random
import socket
import struct
import threading
import time

import pytest
import websockets  # Debian python3-websockets: run under /usr/bin/python3

import harness
from harness import OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, SLOW

GAP = 0.05  # between backend writes, so they arrive as separate reads (never asserted)


class ScriptBackend(harness.Backend):
    """Per connection: sends 'chunks' one by one with a pause between them (so each is
    its own TCP segment), then 'end': "close", "reset", or "hold" (keep the connection
    open). Records everything it receives, per connection."""

    def __init__(self, chunks, end="close", **kw):
        self.chunks = chunks
        self.end = end
        self.received = []
        self.changed = threading.Condition()
        super().__init__(**kw)

    def handle(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.changed:
            self.received.append(b"")
            index = len(self.received) - 1
        threading.Thread(target=self._reader, args=(c, index), daemon=True).start()
        for i, chunk in enumerate(self.chunks):
            if i:
                time.sleep(GAP)
            c.sendall(chunk)
        if self.end == "close":
            time.sleep(GAP)
            c.shutdown(socket.SHUT_WR)
        elif self.end == "reset":
            time.sleep(GAP)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The reader's blocked recv() holds the socket open: wake it first, or close()
            # releases nothing and no RST is sent.
            c.shutdown(socket.SHUT_RD)
            c.close()

    def _reader(self, c, index):
        """Record what arrives; close at EOF, as a server does when its client leaves."""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                with self.changed:
                    self.received[index] += d
                    self.changed.notify_all()
        except OSError:
            pass
        c.close()

    def wait_received(self, want, index=0, timeout=10.0):
        """Wait until connection 'index' received at least len(want) bytes; return them."""
        deadline = time.time() + timeout * SLOW
        with self.changed:
            while len(self.received) <= index or len(self.received[index]) < len(want):
                left = deadline - time.time()
                assert left > 0, "backend got %r, waiting for %r" % (self.received, want)
                self.changed.wait(left)
            return self.received[index]


def mode_gateway(gw_factory, backend, mode, **opts):
    route = {"path": "/*", "target": "127.0.0.1:%d" % backend.port, "frame_mode": mode}
    route.update({k: str(v) for k, v in opts.items()})
    return gw_factory(harness.config(routes={"r": route}))


def collect(port, path="/", send=(), subprotocols=None):
    """With python3-websockets: connect, send 'send' (str or bytes), then receive until the
    close. Returns (messages, close code, close reason, chosen subprotocol). The library
    fails the connection itself on a text frame that is not UTF-8."""

    async def run():
        got = []
        async with websockets.connect("ws://127.0.0.1:%d%s" % (port, path), subprotocols=subprotocols,
                                      max_size=None) as ws:
            for m in send:
                await ws.send(m)
            try:
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 10 * SLOW))
            except websockets.ConnectionClosed as e:
                return got, e.code, e.reason, ws.subprotocol

    return asyncio.run(run())


def raw_session(port):
    """A raw client: upgrade, then read frames until the close (see raw_frames)."""
    c = harness.connect(port)
    try:
        return raw_frames(c)
    finally:
        c.close()


def raw_frames(client):
    """Read frames until close; returns ([(opcode, payload)], close code, close reason)."""
    frames = []
    while True:
        fin, op, payload = client.recv_frame()
        if op == OP_CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            return frames, code, payload[2:].decode()
        assert fin, "the gateway fragments nothing"
        frames.append((op, payload))


# --------------------------------------------------------------------------- text


def test_text_mode_sends_text_frames(gw_factory):
    b = ScriptBackend(["h\u00e9llo ".encode(), "w\u00f6rld \U0001f600".encode()])
    gw = mode_gateway(gw_factory, b, "text")
    frames, code, _ = raw_session(gw.port)
    assert code == 1000
    assert all(op == OP_TEXT for op, _ in frames)
    assert b"".join(p for _, p in frames).decode() == "h\u00e9llo w\u00f6rld \U0001f600"
    b.close()


def test_text_split_utf8_held_back_not_replaced(gw_factory):
    """Every multi-byte sequence is cut between two backend writes."""
    text = "caf\u00e9 \u20ac \U0001f600 \u00fc\u00df end"
    data = text.encode()
    cuts = [4, 9, 12, 15, 16, 22]  # inside \u00e9, \u20ac, \U0001f600 (twice), \u00fc, \u00df
    chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    for policy in ("replace", "close"):
        b = ScriptBackend(chunks)
        gw = mode_gateway(gw_factory, b, "text", text_invalid=policy)
        msgs, code, _, _ = collect(gw.port)
        assert "".join(msgs) == text and "\ufffd" not in "".join(msgs)
        assert code == 1000
        b.close()


def test_text_replace_invalid_bytes(gw_factory):
    b = ScriptBackend([b"ok \xff\xfe caf\xe9 \xed\xa0\x80 \xc3\xa9 end"])
    gw = mode_gateway(gw_factory, b, "text")
    msgs, code, _, _ = collect(gw.port)
    assert "".join(msgs) == "ok \ufffd\ufffd caf\ufffd \ufffd\ufffd\ufffd \u00e9 end"
    assert code == 1000
    b.close()


def test_text_replace_matches_a_real_decoder(gw_factory):
    """1 MB of bytes that are mostly, but not always, valid UTF-8, in writes of random size:
    what arrives is exactly what Python's decoder makes of the whole stream with 'replace'
    (maximal subparts, Unicode §3.9), however the writes cut it."""
    rnd = random.Random(11)
    pieces = []
    while sum(map(len, pieces)) < 1 << 20:
        r = rnd.random()
        if r < 0.7:
            pieces.append("".join(rnd.choice("ab c\u00e9\u20ac\U0001f600\u4e16") for _ in range(50)).encode())
        else:
            pieces.append(bytes(rnd.choice([0x80, 0xbf, 0xc0, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xff, 0x41])
                                for _ in range(rnd.randint(1, 4))))
    data = b"".join(pieces)
    chunks, i = [], 0
    while i < len(data):
        n = rnd.randint(1, 40000)
        chunks.append(data[i:i + n])
        i += n

    class Burst(ScriptBackend):
        def handle(self, c):  # no pauses: reads cut the stream wherever TCP does
            for ch in self.chunks:
                c.sendall(ch)
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass

    b = Burst(chunks)
    gw = mode_gateway(gw_factory, b, "text")
    msgs, code, _, _ = collect(gw.port)
    assert code == 1000
    assert "".join(msgs) == data.decode("utf-8", "replace")
    b.close()


def test_text_close_invalid_sends_valid_part_then_1011(gw_factory):
    b = ScriptBackend([b"valid part ", b"still valid \xff never sent"], end="hold")
    gw = mode_gateway(gw_factory, b, "text", text_invalid="close")
    frames, code, reason = raw_session(gw.port)
    assert code == 1011 and reason == "backend sent invalid UTF-8"
    assert all(op == OP_TEXT for op, _ in frames)
    assert b"".join(p for _, p in frames) == b"valid part still valid "
    gw.wait_log(r"close .*code=1011 by=gateway reason=\"backend sent invalid UTF-8\"")
    b.close()


def test_text_incomplete_sequence_at_backend_eof(gw_factory):
    for policy, want_code, want_text in (("replace", 1000, "end \ufffd"), ("close", 1011, "end ")):
        b = ScriptBackend([b"end \xe2\x82"])  # then the backend closes
        gw = mode_gateway(gw_factory, b, "text", text_invalid=policy)
        msgs, code, _, _ = collect(gw.port)
        assert (code, "".join(msgs)) == (want_code, want_text)
        b.close()


def test_text_client_messages_pass_unchanged(gw_factory):
    b = ScriptBackend([], end="hold")
    gw = mode_gateway(gw_factory, b, "text")
    c = harness.connect(gw.port)
    try:
        c.send_text("no line end added")
        c.send_binary(b"\x00\xffraw")
        assert b.wait_received(b"no line end added\x00\xffraw") == b"no line end added\x00\xffraw"
    finally:
        c.close()
    b.close()


# --------------------------------------------------------------------------- lines


def test_lines_crlf_and_lf_in_one_segment(gw_factory):
    b = ScriptBackend([b"first\r\nsecond\nthird\r\n\r\n\nlast\r\n"])
    gw = mode_gateway(gw_factory, b, "lines")
    frames, code, _ = raw_session(gw.port)
    assert code == 1000
    assert frames == [(OP_TEXT, b"first"), (OP_TEXT, b"second"), (OP_TEXT, b"third"), (OP_TEXT, b""),
                      (OP_TEXT, b""), (OP_TEXT, b"last")]
    b.close()


def test_lines_many_lines_in_one_segment(gw_factory):
    lines = ["line %05d %s" % (i, "x" * (i % 37)) for i in range(5000)]
    b = ScriptBackend([("\r\n".join(lines) + "\r\n").encode()])
    gw = mode_gateway(gw_factory, b, "lines")
    msgs, code, _, _ = collect(gw.port)
    assert msgs == lines and code == 1000
    b.close()


def test_lines_one_line_across_many_segments(gw_factory):
    line = "".join(chr(0x41 + i % 26) for i in range(3000)) + " caf\u00e9 \U0001f600"
    data = (line + "\r\n").encode()
    pieces = [data[i:i + 97] for i in range(0, len(data), 97)]  # cuts code points and the CRLF
    b = ScriptBackend(pieces[:10] + [b"".join(pieces[10:])])
    gw = mode_gateway(gw_factory, b, "lines")
    msgs, code, _, _ = collect(gw.port)
    assert msgs == [line] and code == 1000
    b.close()


def test_lines_cr_and_lf_in_separate_segments(gw_factory):
    b = ScriptBackend([b"a\r", b"\nb\rc\r", b"\n\r", b"\n"])
    gw = mode_gateway(gw_factory, b, "lines")
    msgs, code, _, _ = collect(gw.port)
    assert msgs == ["a", "b\rc", ""]  # only the CR of a line end goes
    b.close()


def test_lines_last_line_without_end_delivered_at_eof(gw_factory):
    b = ScriptBackend([b"one\r\ntwo\r\npartial"])
    gw = mode_gateway(gw_factory, b, "lines")
    msgs, code, _, _ = collect(gw.port)
    assert msgs == ["one", "two", "partial"] and code == 1000
    b.close()


def test_lines_partial_line_delivered_before_reset(gw_factory):
    b = ScriptBackend([b"one\r\npart"], end="reset")
    gw = mode_gateway(gw_factory, b, "lines")
    msgs, code, _, _ = collect(gw.port)
    assert msgs == ["one", "part"] and code == 1014
    b.close()


def test_lines_max_line_bytes(gw_factory):
    ok = b"x" * 100
    b = ScriptBackend([ok + b"\r\n" + ok + b"\n" + ok + b"y\r\nnever\r\n"], end="hold")
    gw = mode_gateway(gw_factory, b, "lines", max_line_bytes=100)
    frames, code, reason = raw_session(gw.port)
    assert frames == [(OP_TEXT, ok), (OP_TEXT, ok)]
    assert code == 1009 and reason == "backend line longer than max_line_bytes"
    b.close()


def test_lines_overlong_partial_line_closes_before_its_end(gw_factory):
    """A line that is already too long ends the session without waiting for its '\\n',
    so a backend cannot make the gateway hold an unbounded line."""
    b = ScriptBackend([b"ok\r\n", b"y" * 5000], end="hold")
    gw = mode_gateway(gw_factory, b, "lines", max_line_bytes=1000)
    frames, code, _ = raw_session(gw.port)
    assert frames == [(OP_TEXT, b"ok")] and code == 1009
    b.close()


def test_lines_exactly_max_with_cr_split_from_lf(gw_factory):
    """max_line_bytes counts the line without its end: a CR waiting for its LF is allowed."""
    ok = b"z" * 50
    b = ScriptBackend([ok + b"\r", b"\n"])
    gw = mode_gateway(gw_factory, b, "lines", max_line_bytes=50)
    msgs, code, _, _ = collect(gw.port)
    assert msgs == ["z" * 50] and code == 1000
    b.close()


def test_lines_invalid_utf8_replaced_per_line(gw_factory):
    b = ScriptBackend([b":nick PRIVMSG #c :caf\xe9\r\n", b":nick PRIVMSG #c :ok \xc3\xa9\r\n"])
    gw = mode_gateway(gw_factory, b, "lines")
    msgs, code, _, _ = collect(gw.port)
    assert msgs == [":nick PRIVMSG #c :caf\ufffd", ":nick PRIVMSG #c :ok \u00e9"]
    b.close()


def test_lines_invalid_utf8_close_after_good_lines(gw_factory):
    b = ScriptBackend([b"good\r\n", b"bad \xe9 line\r\nafter\r\n"], end="hold")
    gw = mode_gateway(gw_factory, b, "lines", text_invalid="close")
    frames, code, _ = raw_session(gw.port)
    assert frames == [(OP_TEXT, b"good")] and code == 1011  # the bad line is not cut short and sent
    b.close()


def test_lines_incomplete_sequence_at_line_end_is_invalid(gw_factory):
    b = ScriptBackend([b"cut \xe2\x82\r\n"])
    gw = mode_gateway(gw_factory, b, "lines")
    msgs, _, _, _ = collect(gw.port)
    assert msgs == ["cut \ufffd"]
    b.close()


CLIENT_LINES = [
    ("NICK alice", b"NICK alice\r\n"),
    ("USER a 0 * :Alice\r\n", b"USER a 0 * :Alice\r\n"),  # already ends in CRLF: not doubled
    ("JOIN #c\n", b"JOIN #c\n"),  # ends in LF: sent as it is
    ("PART #c\r", b"PART #c\r\n"),  # a CR alone is completed
    ("", b"\r\n"),
    ("PRIVMSG #c :caf\u00e9", "PRIVMSG #c :caf\u00e9\r\n".encode()),
    ("a\r\nb", b"a\r\nb\r\n"),
    (b"BINARY too", b"BINARY too\r\n"),
]


def test_lines_client_messages_become_lines(gw_factory):
    b = ScriptBackend([], end="hold")
    gw = mode_gateway(gw_factory, b, "lines")
    want = b"".join(w for _, w in CLIENT_LINES)

    async def run():
        async with websockets.connect("ws://127.0.0.1:%d/" % gw.port) as ws:
            for m, _ in CLIENT_LINES:
                await ws.send(m)
            await asyncio.get_running_loop().run_in_executor(None, b.wait_received, want)

    asyncio.run(run())
    assert b.received[0] == want
    b.close()


def test_lines_fragmented_client_message_one_line(gw_factory):
    b = ScriptBackend([], end="hold")
    gw = mode_gateway(gw_factory, b, "lines")
    c = harness.connect(gw.port)
    try:
        c.send(OP_TEXT, b"PRIVMSG #c ", fin=False)
        c.send(OP_CONT, b"", fin=False)
        c.send(OP_CONT, b":split \xc3", fin=False)  # a code point across fragments
        c.send(OP_CONT, b"\xa9 message", fin=True)
        c.send(OP_TEXT, b"PING :x")
        want = b"PRIVMSG #c :split \xc3\xa9 message\r\nPING :x\r\n"
        assert b.wait_received(want) == want
    finally:
        c.close()
    b.close()


@pytest.mark.parametrize("mode", ["text", "lines"])
def test_large_client_message_streams_to_backend(gw_factory, mode):
    """A 32 MiB message reaches the backend while it is still arriving: no mode buffers
    a client message whole."""
    b = ScriptBackend([], end="hold")
    gw = mode_gateway(gw_factory, b, mode, max_message_bytes="64M", max_frame_bytes="64M")
    c = harness.connect(gw.port)
    try:
        size = 32 << 20
        key = b"\x01\x02\x03\x04"
        head = harness.encode_frame(OP_BINARY, b"", mask=False)[:1] + bytes([0xFF]) + struct.pack("!Q", size) + key
        first = b"a" * (1 << 20)
        c.send_raw(head + harness.mask_bytes(first, key))
        assert b.wait_received(first)[: len(first)] == first  # the other 31 MiB are not sent yet
    finally:
        c.close()
    b.close()


# --------------------------------------------------------------------------- subprotocols, chat


@pytest.mark.parametrize("mode", ["text", "lines"])
def test_text_routes_choose_no_subprotocol(gw_factory, mode):
    b = ScriptBackend([b"hello\n"])
    gw = mode_gateway(gw_factory, b, mode)
    for offer in (["binary", "base64"], ["base64"], ["binary"]):
        msgs, code, _, proto = collect(gw.port, subprotocols=offer)
        assert proto is None
        assert msgs == (["hello"] if mode == "lines" else ["hello\n"])  # text, never base64
    b.close()


def test_binary_route_still_binary(gw_factory):
    b = ScriptBackend([b"bytes\n"])
    gw = mode_gateway(gw_factory, b, "binary")
    msgs, _, _, proto = collect(gw.port, subprotocols=["binary"])
    assert proto == "binary" and msgs == [b"bytes\n"]
    b.close()


class MiniIRC(harness.Backend):
    """Enough of an IRC server for a chat client: welcome, PING/PONG, JOIN echo, and
    PRIVMSG relayed to every other connection in the channel."""

    def __init__(self):
        self.clients = []
        super().__init__()

    def handle(self, c):
        with self.lock:
            self.clients.append(c)
        f = c.makefile("rb")
        c.sendall(b":irc.test 001 you :Welcome\r\nPING :12345\r\n")
        nick = b"?"
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"NICK "):
                nick = line[5:]
            elif line == b"PONG :12345":
                c.sendall(b":irc.test NOTICE %s :pong ok\r\n" % nick)
            elif line.startswith(b"JOIN "):
                c.sendall(b":%s JOIN %s\r\n" % (nick, line[5:]))
            elif line.startswith(b"PRIVMSG "):
                with self.lock:
                    others = [o for o in self.clients if o is not c]
                for o in others:
                    o.sendall(b":%s %s\r\n" % (nick, line))


def test_irc_style_chat_two_clients(gw_factory):
    irc = MiniIRC()
    gw = mode_gateway(gw_factory, irc, "lines")
    url = "ws://127.0.0.1:%d/" % gw.port

    async def until(ws, pred):
        while True:
            m = await asyncio.wait_for(ws.recv(), 10 * SLOW)
            if pred(m):
                return m

    async def run():
        async with websockets.connect(url) as a, websockets.connect(url) as b:
            for ws, nick in ((a, "alice"), (b, "bob")):
                assert await until(ws, lambda m: m.startswith("PING")) == "PING :12345"
                await ws.send("NICK " + nick)
                await ws.send("PONG :12345")
                assert await until(ws, lambda m: "pong ok" in m) == ":irc.test NOTICE %s :pong ok" % nick
                await ws.send("JOIN #wsplice")
                assert await until(ws, lambda m: "JOIN" in m) == ":%s JOIN #wsplice" % nick
            burst = ["PRIVMSG #wsplice :message %d \u00e9\u00e8 \U0001f600" % i for i in range(500)]
            for m in burst:
                await a.send(m)
            got = [await until(b, lambda m: "PRIVMSG" in m) for _ in burst]
            assert got == [":alice " + m for m in burst]

    asyncio.run(run())
    irc.close()
