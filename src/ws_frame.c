/* ws_frame.c - RFC 6455 §5 framing. Parses client headers, encodes server headers and
 * close frames, unmasks payload in place. It never sees more than one frame at a time. */
#include "ws_frame.h"

#include <string.h>

#include "utf8.h"

#define WS_FIN         0x80
#define WS_RSV_MASK    0x70
#define WS_OPCODE_MASK 0x0f
#define WS_MASK_BIT    0x80
#define WS_LEN_MASK    0x7f
#define WS_LEN16       126
#define WS_LEN64       127

static bool
ws_opcode_is_known(uint8_t op)
{
    return op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE ||
           op == WS_OP_PING || op == WS_OP_PONG;
}

static bool
ws_opcode_is_control(uint8_t op)
{
    return (op & 0x8) != 0;
}

enum ws_parse_result
ws_frame_parse_header(const uint8_t *buf, size_t len, uint64_t max_payload, struct ws_frame_header *hdr)
{
    size_t need = 2;
    uint64_t plen;

    if (len < 1)
        return WS_PARSE_NEED_MORE;
    uint8_t b0 = buf[0];
    uint8_t op = b0 & WS_OPCODE_MASK;
    if ((b0 & WS_RSV_MASK) != 0 || !ws_opcode_is_known(op))
        return WS_PARSE_BAD_OPCODE;
    if (ws_opcode_is_control(op) && !(b0 & WS_FIN))
        return WS_PARSE_BAD_CONTROL;
    if (len < 2)
        return WS_PARSE_NEED_MORE;
    uint8_t b1 = buf[1];
    if (!(b1 & WS_MASK_BIT))
        return WS_PARSE_UNMASKED;
    plen = b1 & WS_LEN_MASK;
    if (ws_opcode_is_control(op) && plen > WS_MAX_CONTROL_PAYLOAD)
        return WS_PARSE_BAD_CONTROL;
    if (plen == WS_LEN16) {
        need += 2;
        if (len < need)
            return WS_PARSE_NEED_MORE;
        plen = (uint64_t)buf[2] << 8 | buf[3];
    } else if (plen == WS_LEN64) {
        need += 8;
        if (len < 3)
            return WS_PARSE_NEED_MORE;
        if (buf[2] & 0x80)
            return WS_PARSE_BAD_LENGTH;
        if (len < need)
            return WS_PARSE_NEED_MORE;
        plen = 0;
        for (size_t i = 2; i < 10; i++)
            plen = plen << 8 | buf[i];
    }
    if (plen > max_payload)
        return WS_PARSE_TOO_BIG;
    need += 4;
    if (len < need)
        return WS_PARSE_NEED_MORE;
    hdr->fin = (b0 & WS_FIN) != 0;
    hdr->opcode = op;
    hdr->masked = true;
    memcpy(hdr->mask, buf + need - 4, 4);
    hdr->payload_len = plen;
    hdr->header_len = need;
    return WS_PARSE_OK;
}

size_t
ws_frame_encode_header(uint8_t *out, bool fin, uint8_t opcode, uint64_t payload_len)
{
    out[0] = (uint8_t)((fin ? WS_FIN : 0) | (opcode & WS_OPCODE_MASK));
    if (payload_len < WS_LEN16) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xffff) {
        out[1] = WS_LEN16;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = WS_LEN64;
    for (size_t i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

void
ws_frame_unmask(uint8_t *buf, size_t len, const uint8_t mask[4], uint64_t offset)
{
    uint8_t key[8];
    uint64_t w;
    size_t i = 0;

    /* The key rotated so that key[0] applies to buf[0], repeated to a word; since 8 is a
     * multiple of 4, every word of the buffer uses the same rotation. memcpy keeps the
     * loads and stores free of alignment and aliasing rules and compiles to plain moves. */
    for (size_t k = 0; k < 8; k++)
        key[k] = mask[(offset + k) & 3];
    memcpy(&w, key, sizeof w);
    for (; len - i >= 32; i += 32) {
        uint64_t v[4];
        memcpy(v, buf + i, sizeof v);
        v[0] ^= w;
        v[1] ^= w;
        v[2] ^= w;
        v[3] ^= w;
        memcpy(buf + i, v, sizeof v);
    }
    for (; len - i >= 8; i += 8) {
        uint64_t v;
        memcpy(&v, buf + i, sizeof v);
        v ^= w;
        memcpy(buf + i, &v, sizeof v);
    }
    for (; i < len; i++)
        buf[i] ^= key[i & 7];
}

enum ws_parse_result
ws_message_add_frame(struct ws_message *msg, const struct ws_frame_header *hdr, uint64_t max_message)
{
    uint64_t so_far = msg->len;

    if (hdr->opcode == WS_OP_CONT) {
        if (msg->opcode == 0)
            return WS_PARSE_BAD_CONTINUATION;
    } else {
        if (msg->opcode != 0)
            return WS_PARSE_NEED_CONTINUATION;
        so_far = 0;
    }
    if (max_message != 0 && hdr->payload_len > max_message - so_far)
        return WS_PARSE_TOO_BIG;
    /* Only an accepted frame changes the message. */
    if (hdr->opcode != WS_OP_CONT)
        msg->opcode = hdr->opcode;
    msg->len = so_far + hdr->payload_len;
    return WS_PARSE_OK;
}

void
ws_message_end(struct ws_message *msg)
{
    msg->opcode = 0;
    msg->len = 0;
}

const char *
ws_parse_result_str(enum ws_parse_result result)
{
    switch (result) {
    case WS_PARSE_OK:
        return "ok";
    case WS_PARSE_NEED_MORE:
        return "incomplete frame header";
    case WS_PARSE_BAD_OPCODE:
        return "reserved opcode or RSV bit";
    case WS_PARSE_UNMASKED:
        return "client frame not masked";
    case WS_PARSE_BAD_CONTROL:
        return "fragmented or oversized control frame";
    case WS_PARSE_BAD_LENGTH:
        return "64-bit length with high bit set";
    case WS_PARSE_TOO_BIG:
        return "frame or message too big";
    case WS_PARSE_BAD_CONTINUATION:
        return "continuation frame without a message";
    case WS_PARSE_NEED_CONTINUATION:
        return "new message inside a fragmented message";
    }
    return "unknown";
}

uint16_t
ws_parse_result_close_code(enum ws_parse_result result)
{
    return result == WS_PARSE_TOO_BIG ? WS_CLOSE_TOO_BIG : WS_CLOSE_PROTOCOL_ERROR;
}

bool
ws_close_code_is_valid(unsigned code)
{
    if (code >= 1000 && code <= 1003)
        return true;
    if (code >= 1007 && code <= 1014)
        return true;
    return code >= 3000 && code <= 4999;
}

enum ws_close_result
ws_close_parse(const uint8_t *payload, size_t len, uint16_t *code)
{
    uint8_t st = UTF8_STATE_INIT;

    if (len == 0) {
        *code = WS_CLOSE_NO_STATUS;
        return WS_CLOSE_OK;
    }
    if (len == 1)
        return WS_CLOSE_BAD_LENGTH;
    unsigned c = (unsigned)payload[0] << 8 | payload[1];
    if (!ws_close_code_is_valid(c))
        return WS_CLOSE_BAD_CODE;
    if (utf8_validate(&st, payload + 2, len - 2) != UTF8_OK)
        return WS_CLOSE_BAD_REASON;
    *code = (uint16_t)c;
    return WS_CLOSE_OK;
}

size_t
ws_close_encode(uint8_t *out, uint16_t code, const char *reason, size_t reason_len)
{
    size_t max_reason = WS_MAX_CONTROL_PAYLOAD - 2;

    if (code == WS_CLOSE_NO_STATUS)
        return ws_frame_encode_header(out, true, WS_OP_CLOSE, 0);
    if (reason_len > max_reason) {
        reason_len = max_reason;
        /* Do not cut a code point: back up over continuation bytes. */
        while (reason_len > 0 && ((uint8_t)reason[reason_len] & 0xc0) == 0x80)
            reason_len--;
    }
    size_t h = ws_frame_encode_header(out, true, WS_OP_CLOSE, 2 + reason_len);
    out[h] = (uint8_t)(code >> 8);
    out[h + 1] = (uint8_t)code;
    if (reason_len > 0)
        memcpy(out + h + 2, reason, reason_len);
    return h + 2 + reason_len;
}

const char *
ws_close_result_str(enum ws_close_result result)
{
    switch (result) {
    case WS_CLOSE_OK:
        return "ok";
    case WS_CLOSE_BAD_LENGTH:
        return "close payload of 1 byte";
    case WS_CLOSE_BAD_CODE:
        return "invalid close code";
    case WS_CLOSE_BAD_REASON:
        return "close reason not UTF-8";
    }
    return "unknown";
}
