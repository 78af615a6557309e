"""RFC 6455 §5 framing as the gateway enforces it on client frames: every protocol error
gets the right close code on the wire and then the server closes TCP; legal but unusual
framing (fragments, interleaved control frames, non-minimal lengths) is relayed intact;
close frames are validated and echoed; the base64 subprotocol decodes and encodes."""

import base64
import os
import struct

import pytest

import harness
from harness import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, encode_frame
from wsplice_testlib import sha256, start_gateway, wait_sink_result


def assert_failed_with(c, code):
    """The next frame of interest is a close with 'code', and then the server closes TCP."""
    c.expect_close(code)
    assert c.wait_eof(), "server kept TCP open after sending close %d" % code


def masked_key():
    return os.urandom(4)


@pytest.fixture
def sink(cleanup):
    b = harness.SinkBackend()
    cleanup.append(b)
    return b


@pytest.fixture
def gw_sink(gw_factory, sink):
    return start_gateway(gw_factory, sink.port)


# --------------------------------------------------------------------------- protocol errors


def frame_64bit_length_msb():
    # FIN|binary, MASK|127, 64-bit length with the most significant bit set, mask key.
    return struct.pack("!BBQ", 0x82, 0xFF, (1 << 63) | 5) + masked_key()


BAD_FRAMES = {
    "unmasked_frame": lambda: encode_frame(OP_BINARY, b"hello", mask=False),
    "unmasked_ping": lambda: encode_frame(OP_PING, b"hello", mask=False),
    "rsv1_set": lambda: encode_frame(OP_BINARY, b"x", rsv=4),
    "rsv2_set": lambda: encode_frame(OP_BINARY, b"x", rsv=2),
    "rsv3_set": lambda: encode_frame(OP_BINARY, b"x", rsv=1),
    "rsv1_on_text": lambda: encode_frame(OP_TEXT, b"x", rsv=4),
    "ping_126_bytes": lambda: encode_frame(OP_PING, b"p" * 126),
    "close_126_bytes": lambda: encode_frame(OP_CLOSE, struct.pack("!H", 1000) + b"r" * 124),
    "fragmented_ping": lambda: encode_frame(OP_PING, b"p", fin=False),
    "fragmented_close": lambda: encode_frame(OP_CLOSE, struct.pack("!H", 1000), fin=False),
    "continuation_without_message": lambda: encode_frame(OP_CONT, b"x"),
    "continuation_after_finished_message": lambda: encode_frame(OP_BINARY, b"ab")
    + encode_frame(OP_CONT, b"cd"),
    "text_inside_fragmented_message": lambda: encode_frame(OP_TEXT, b"ab", fin=False)
    + encode_frame(OP_TEXT, b"cd"),
    "binary_inside_fragmented_message": lambda: encode_frame(OP_TEXT, b"ab", fin=False)
    + encode_frame(OP_BINARY, b"cd"),
    "binary_inside_fragmented_binary": lambda: encode_frame(OP_BINARY, b"ab", fin=False)
    + encode_frame(OP_CONT, b"cd", fin=False)
    + encode_frame(OP_BINARY, b"ef"),
    "length_64bit_msb_set": frame_64bit_length_msb,
}
for _op in list(range(0x3, 0x8)) + list(range(0xB, 0x10)):
    BAD_FRAMES["reserved_opcode_0x%X" % _op] = (lambda op: lambda: encode_frame(op, b"x"))(_op)


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_protocol_error_gets_close_1002_then_tcp_close(gw_echo, case):
    c = harness.connect(gw_echo.port)
    c.send_raw(BAD_FRAMES[case]())
    assert_failed_with(c, 1002)


@pytest.mark.parametrize("case", ["unmasked_frame", "rsv1_set", "reserved_opcode_0x3", "length_64bit_msb_set"])
def test_protocol_error_after_valid_traffic_gets_close_1002(gw_echo, case):
    c = harness.connect(gw_echo.port)
    c.send_binary(b"before")
    assert c.recv_data(6) == b"before"
    c.send_raw(BAD_FRAMES[case]())
    assert_failed_with(c, 1002)


INVALID_UTF8 = {
    "overlong_c0_80": [b"ab\xc0\x80"],
    "surrogate_ed_a0_80": [b"\xed\xa0\x80"],
    "above_max_f4_90_80_80": [b"\xf4\x90\x80\x80"],
    "stray_continuation_80": [b"a\x80b"],
    "ends_mid_code_point": [b"abc\xe2\x82"],
    "ends_mid_code_point_fragmented": [b"abc\xe2", b"\x82"],
    "ends_mid_code_point_empty_last_fragment": [b"\xf0\x9d\x84", b""],
    "invalid_in_later_fragment": [b"fine so far", b"\xff"],
    "byte_ff": [b"\xff"],
    "overlong_3_byte_e0_80_80": [b"\xe0\x80\x80"],
}


@pytest.mark.parametrize("case", sorted(INVALID_UTF8))
def test_invalid_utf8_in_text_message_gets_close_1007(gw_echo, case):
    c = harness.connect(gw_echo.port)
    pieces = INVALID_UTF8[case]
    for i, p in enumerate(pieces):
        c.send(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(pieces) - 1))
    assert_failed_with(c, 1007)


def test_invalid_utf8_in_binary_message_is_relayed(gw_echo):
    c = harness.connect(gw_echo.port)
    c.send(OP_BINARY, b"\xc0\x80\xed\xa0\x80\xff")
    assert c.recv_data(6) == b"\xc0\x80\xed\xa0\x80\xff"


@pytest.mark.parametrize("char", ["€", "𝄞", "é"])
def test_utf8_code_point_split_across_fragments_reaches_backend(gw_echo, char):
    raw = char.encode()
    c = harness.connect(gw_echo.port)
    # One message per fragment size: every byte its own fragment, then each 2-way split.
    expected = b""
    c.send(OP_TEXT, raw[:1], fin=False)
    for i in range(1, len(raw)):
        c.send(OP_CONT, raw[i : i + 1], fin=(i == len(raw) - 1))
    expected += raw
    for cut in range(1, len(raw)):
        c.send(OP_TEXT, b"<" + raw[:cut], fin=False)
        c.send(OP_CONT, raw[cut:] + b">", fin=True)
        expected += b"<" + raw + b">"
    assert c.recv_data(len(expected)) == expected
    c.send_close(1000)
    assert c.expect_close(1000) == b""


def test_frame_over_max_frame_bytes_gets_close_1009(gw_factory, echo):
    gw = start_gateway(gw_factory, echo.port, max_frame_bytes=1000)
    c = harness.connect(gw.port)
    c.send_binary(b"a" * 1000)  # exactly the limit is fine
    assert c.recv_data(1000) == b"a" * 1000
    c.send_binary(b"b" * 1001)
    assert_failed_with(c, 1009)


def test_fragment_over_max_frame_bytes_gets_close_1009(gw_factory, echo):
    gw = start_gateway(gw_factory, echo.port, max_frame_bytes=1000)
    c = harness.connect(gw.port)
    c.send(OP_BINARY, b"a" * 500, fin=False)
    c.send(OP_CONT, b"b" * 1001, fin=True)
    assert_failed_with(c, 1009)


def test_message_over_max_message_bytes_gets_close_1009(gw_factory, echo):
    gw = start_gateway(gw_factory, echo.port, max_message_bytes=3000)
    c = harness.connect(gw.port)
    # Two 1500-byte fragments are exactly the limit.
    c.send(OP_BINARY, b"a" * 1500, fin=False)
    c.send(OP_CONT, b"b" * 1500, fin=True)
    assert c.recv_data(3000) == b"a" * 1500 + b"b" * 1500
    # Three are one fragment too many.
    c.send(OP_BINARY, b"c" * 1500, fin=False)
    c.send(OP_CONT, b"d" * 1500, fin=False)
    c.send(OP_CONT, b"e" * 1500, fin=True)
    assert_failed_with(c, 1009)


def test_message_limit_counts_each_message_separately(gw_factory, echo):
    gw = start_gateway(gw_factory, echo.port, max_message_bytes=3000)
    c = harness.connect(gw.port)
    for _ in range(4):
        c.send(OP_BINARY, b"x" * 1500, fin=False)
        c.send(OP_CONT, b"y" * 1500, fin=True)
    assert c.recv_data(12000) == (b"x" * 1500 + b"y" * 1500) * 4


ERRORS_AFTER_DATA = {
    "rsv1": (encode_frame(OP_BINARY, b"zz", rsv=4), 1002),
    "unmasked": (encode_frame(OP_BINARY, b"zz", mask=False), 1002),
    "invalid_utf8_text": (encode_frame(OP_TEXT, b"\xc0\x80"), 1007),
    "bad_close_code": (encode_frame(OP_CLOSE, struct.pack("!H", 1005)), 1002),
    "reserved_opcode": (encode_frame(0xB, b""), 1002),
}


@pytest.mark.parametrize("one_write", [False, True], ids=["separate_writes", "same_write"])
@pytest.mark.parametrize("case", sorted(ERRORS_AFTER_DATA))
def test_bytes_before_protocol_error_reach_backend(gw_sink, sink, case, one_write):
    bad, code = ERRORS_AFTER_DATA[case]
    data = harness.seeded_bytes(300000, 7)
    frames = [encode_frame(OP_BINARY, data[i : i + 30000]) for i in range(0, 90000, 30000)]
    frames.append(encode_frame(OP_BINARY, data[90000:100000], fin=False))  # a fragmented message
    frames.append(encode_frame(OP_CONT, data[100000:120000], fin=True))
    frames += [encode_frame(OP_BINARY, data[i : i + 30000]) for i in range(120000, len(data), 30000)]
    c = harness.connect(gw_sink.port)
    if one_write:
        c.send_raw(b"".join(frames) + bad)
    else:
        for f in frames:
            c.send_raw(f)
        c.send_raw(bad)
    assert_failed_with(c, code)
    n, digest = wait_sink_result(sink)
    assert (n, digest) == (len(data), sha256(data))


# --------------------------------------------------------------------------- control frames


@pytest.mark.parametrize("size", [0, 1, 125])
def test_ping_gets_pong_with_identical_payload(gw_echo, size):
    c = harness.connect(gw_echo.port)
    payload = os.urandom(size)
    c.send(OP_PING, payload)
    fin, op, got = c.recv_frame()
    assert (fin, op, got) == (True, OP_PONG, payload)
    c.send_binary(b"still open")
    assert c.recv_data(10) == b"still open"


def test_unsolicited_pong_is_ignored(gw_echo):
    c = harness.connect(gw_echo.port)
    c.send(OP_PONG, b"unasked")
    c.send(OP_PONG, b"")
    c.send_binary(b"hello")
    got = b""
    while len(got) < 5:
        fin, op, payload = c.recv_frame()
        assert op == OP_BINARY, "unexpected frame opcode %d %r" % (op, payload)
        got += payload
    assert got == b"hello"
    c.send_close(1000)
    assert c.expect_close(1000) == b""


def test_pings_between_fragments_are_answered_and_message_arrives_intact(gw_factory, sink):
    gw = start_gateway(gw_factory, sink.port)
    c = harness.connect(gw.port)
    parts = [b"first part ", b"second part ", b"third part"]
    c.send(OP_TEXT, parts[0], fin=False)
    c.send(OP_PING, b"ping-a")
    c.send(OP_CONT, parts[1], fin=False)
    c.send(OP_PING, b"ping-b")
    c.send(OP_PONG, b"unasked")
    c.send(OP_CONT, parts[2], fin=True)
    assert c.recv_frame() == (True, OP_PONG, b"ping-a")
    assert c.recv_frame() == (True, OP_PONG, b"ping-b")
    c.send_close(1000)
    assert c.expect_close(1000) == b""
    assert c.wait_eof()
    msg = b"".join(parts)
    assert wait_sink_result(sink) == (len(msg), sha256(msg))


@pytest.mark.parametrize(
    "size,form", [(5, 16), (5, 64), (200, 64), (0, 16), (125, 64), (126, 64), (65535, 64)]
)
def test_non_minimal_length_encoding_is_accepted(gw_echo, size, form):
    c = harness.connect(gw_echo.port)
    payload = harness.seeded_bytes(size, size)
    c.send(OP_BINARY, payload, length_form=form)
    c.send(OP_BINARY, b"|end")
    assert c.recv_data(size + 4) == payload + b"|end"


# --------------------------------------------------------------------------- close frames


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999])
def test_valid_close_code_is_echoed(gw_echo, code):
    c = harness.connect(gw_echo.port)
    c.send_close(code, b"bye \xe2\x82\xac")
    fin, op, payload = c.recv_frame()
    assert (fin, op) == (True, OP_CLOSE)
    assert struct.unpack("!H", payload[:2])[0] == code
    assert c.wait_eof()


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_code_gets_close_1002(gw_echo, code):
    c = harness.connect(gw_echo.port)
    c.send_close(code)
    assert_failed_with(c, 1002)


def test_one_byte_close_payload_gets_close_1002(gw_echo):
    c = harness.connect(gw_echo.port)
    c.send(OP_CLOSE, b"\x03")
    assert_failed_with(c, 1002)


def test_empty_close_gets_empty_close(gw_echo):
    c = harness.connect(gw_echo.port)
    c.send(OP_CLOSE, b"")
    assert c.recv_frame() == (True, OP_CLOSE, b"")
    assert c.wait_eof()


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc0\x80", b"\xed\xa0\x80", b"cut\xe2\x82"])
def test_close_reason_with_invalid_utf8_gets_close_1007(gw_echo, reason):
    c = harness.connect(gw_echo.port)
    c.send_close(1000, reason)
    assert_failed_with(c, 1007)


def test_close_reason_of_123_bytes_is_accepted(gw_echo):
    c = harness.connect(gw_echo.port)
    c.send_close(1000, b"r" * 123)
    assert c.expect_close(1000) is not None
    assert c.wait_eof()


# --------------------------------------------------------------------------- payloads


def test_text_and_binary_payloads_reach_backend_as_raw_bytes(gw_sink, sink):
    text = "héllo wörld € 𝄞".encode()
    binary = bytes(range(256))
    c = harness.connect(gw_sink.port)
    c.send(OP_TEXT, text)
    c.send(OP_BINARY, binary)
    c.send(OP_TEXT, text[:3], fin=False)  # 'h' + first byte of 'é'
    c.send(OP_CONT, text[3:], fin=True)
    c.send_close(1000)
    c.expect_close(1000)
    assert c.wait_eof()
    expected = text + binary + text
    assert wait_sink_result(sink) == (len(expected), sha256(expected))


def test_backend_bytes_arrive_as_binary_frames_without_subprotocol(gw_factory, cleanup):
    src = harness.SourceBackend(100000, seed=5)
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)
    c = harness.connect(gw.port)
    data = bytearray()
    while True:
        fin, op, payload = c.recv_frame()
        if op == OP_CLOSE:
            break
        assert op in (OP_BINARY, OP_CONT), "data frame opcode %d" % op
        data += payload
    assert bytes(data) == harness.seeded_bytes(100000, 5)


# --------------------------------------------------------------------------- base64 subprotocol


def test_base64_subprotocol_is_chosen_when_offered_alone(gw_echo):
    c = harness.connect(gw_echo.port, protocols=["base64"])
    assert c.headers.get("sec-websocket-protocol") == "base64"


def test_base64_text_frames_reach_backend_decoded(gw_sink, sink):
    c = harness.connect(gw_sink.port, protocols=["base64"])
    expected = b""
    for size in [1, 2, 3, 4, 5, 100, 4097, 65536, 100001]:
        raw = harness.seeded_bytes(size, size)
        c.send(OP_TEXT, base64.b64encode(raw))
        expected += raw
    c.send_close(1000)
    assert c.expect_close(1000) == b""
    assert c.wait_eof()
    assert wait_sink_result(sink) == (len(expected), sha256(expected))


def test_base64_backend_bytes_arrive_as_base64_text_frames(gw_factory, cleanup):
    size = 1000003
    src = harness.SourceBackend(size, seed=11)
    cleanup.append(src)
    gw = start_gateway(gw_factory, src.port)
    c = harness.connect(gw.port, protocols=["base64"])
    decoded = bytearray()
    message = b""
    while True:
        fin, op, payload = c.recv_frame()
        if op == OP_CLOSE:
            assert struct.unpack("!H", payload[:2])[0] == 1000
            break
        assert op in (OP_TEXT, OP_CONT), "base64 data must come as text, got opcode %d" % op
        message += payload
        if fin:
            decoded += base64.b64decode(message, validate=True)
            message = b""
    assert message == b""
    assert len(decoded) == size
    assert bytes(decoded) == harness.seeded_bytes(size, 11)


@pytest.mark.parametrize(
    "text",
    [b"abc!", b"ab=c", b"abc", b"YQ==YQ==", b"Y===", b"=AAA", b"aGVs bG8=", b"aGVsbG8=\n", b"\xc3\xa9AAA"],
    ids=["bad_char", "data_after_pad", "truncated", "after_padded_quantum", "three_pads", "leading_pad",
         "space", "newline", "non_ascii"],
)
def test_invalid_base64_gets_close_1007(gw_sink, sink, text):
    c = harness.connect(gw_sink.port, protocols=["base64"])
    c.send(OP_TEXT, base64.b64encode(b"good"))
    c.send(OP_TEXT, text)
    assert_failed_with(c, 1007)
    n, _ = wait_sink_result(sink)
    assert n >= 4  # the valid message before still arrived (and possibly a decoded prefix)


def test_base64_message_split_at_odd_positions_decodes(gw_sink, sink):
    c = harness.connect(gw_sink.port, protocols=["base64"])
    expected = b""
    # Every 2-way split of a short padded message.
    enc = base64.b64encode(b"hello")  # aGVsbG8=
    for cut in range(0, len(enc) + 1):
        c.send(OP_TEXT, enc[:cut], fin=False)
        c.send(OP_CONT, enc[cut:], fin=True)
        expected += b"hello"
    # A long message cut at odd offsets, one fragment per cut.
    raw = harness.seeded_bytes(20000, 3)
    enc = base64.b64encode(raw)
    cuts = [0, 1, 4, 7, 8, 13, 333, 1001, 4095, 9999, 17777, len(enc) - 1, len(enc)]
    for i in range(len(cuts) - 1):
        c.send(OP_TEXT if i == 0 else OP_CONT, enc[cuts[i] : cuts[i + 1]], fin=(i == len(cuts) - 2))
    expected += raw
    c.send_close(1000)
    assert c.expect_close(1000) == b""
    assert c.wait_eof()
    assert wait_sink_result(sink) == (len(expected), sha256(expected))
