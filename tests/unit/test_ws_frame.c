/* test_ws_frame.c - RFC 6455 §5 framing: header parse (RFC §5.7 examples, every truncation,
 * every error class), header encode at the length-form boundaries, unmasking against a
 * byte-by-byte reference, fragmentation rules, and close payloads. */
#include "ws_frame.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "utf8.h"

#define MAX_BIG (UINT64_C(1) << 40) /* a frame limit nothing here reaches */

/* Deterministic xorshift PRNG, so every run tests the same bytes. */
static uint64_t prng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint32_t
prng(void)
{
    prng_state ^= prng_state << 13;
    prng_state ^= prng_state >> 7;
    prng_state ^= prng_state << 17;
    return (uint32_t)(prng_state >> 16);
}

/* ---- parse: frames that are valid from a client ---- */

struct good_frame {
    const char *what;
    const uint8_t *wire;
    size_t wire_len; /* header only, or header and payload */
    bool fin;
    uint8_t opcode;
    uint64_t payload_len;
    size_t header_len;
};

/* RFC 6455 §5.7: single-frame masked text "Hello" */
static const uint8_t masked_hello[] = {
    0x81,                         /* FIN, opcode text */
    0x85,                         /* MASK, payload length 5 */
    0x37, 0xfa, 0x21, 0x3d,       /* masking key */
    0x7f, 0x9f, 0x4d, 0x51, 0x58, /* "Hello" masked */
};

/* RFC 6455 §5.7: masked pong "Hello" (the masked response to the §5.7 ping) */
static const uint8_t masked_pong[] = {
    0x8a,                         /* FIN, opcode pong */
    0x85,                         /* MASK, payload length 5 */
    0x37, 0xfa, 0x21, 0x3d,       /* masking key */
    0x7f, 0x9f, 0x4d, 0x51, 0x58, /* "Hello" masked */
};

/* RFC 6455 §5.7: 256 bytes binary message in a single frame, as a client sends it */
static const uint8_t masked_256[] = {
    0x82,                   /* FIN, opcode binary */
    0xfe,                   /* MASK, length 126: a 16-bit length follows */
    0x01, 0x00,             /* 256 */
    0x01, 0x02, 0x03, 0x04, /* masking key */
};

/* RFC 6455 §5.7: 64KiB binary message in a single frame, as a client sends it */
static const uint8_t masked_65536[] = {
    0x82,                                           /* FIN, opcode binary */
    0xff,                                           /* MASK, length 127: a 64-bit length follows */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, /* 65536 */
    0xa1, 0xb2, 0xc3, 0xd4,                         /* masking key */
};

/* Not minimal, but the largest length the 64-bit form may carry (§5.2: MSB must be 0). */
static const uint8_t masked_max64[] = {
    0x82,                                           /* FIN, opcode binary */
    0xff,                                           /* MASK, 64-bit length */
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 2^63 - 1 */
    0x00, 0x00, 0x00, 0x00,                         /* masking key */
};

/* The first fragment of a text message (FIN clear), empty */
static const uint8_t masked_text_fragment[] = {
    0x01,                   /* no FIN, opcode text */
    0x80,                   /* MASK, payload length 0 */
    0x11, 0x22, 0x33, 0x44, /* masking key */
};

/* A continuation frame that ends the message, 3 bytes */
static const uint8_t masked_cont_final[] = {
    0x80,                   /* FIN, opcode continuation */
    0x83,                   /* MASK, payload length 3 */
    0x11, 0x22, 0x33, 0x44, /* masking key */
};

/* Close with the largest control payload, 125 */
static const uint8_t masked_close_125[] = {
    0x88,                   /* FIN, opcode close */
    0xfd,                   /* MASK, payload length 125 */
    0x00, 0x00, 0x00, 0x00, /* masking key */
};

/* Ping with an empty payload */
static const uint8_t masked_ping_empty[] = {
    0x89,                   /* FIN, opcode ping */
    0x80,                   /* MASK, payload length 0 */
    0xde, 0xad, 0xbe, 0xef, /* masking key */
};

/* 7-bit form at its top, 125 bytes of binary */
static const uint8_t masked_125[] = {
    0x82,                   /* FIN, opcode binary */
    0xfd,                   /* MASK, payload length 125 */
    0x00, 0x00, 0x00, 0x00, /* masking key */
};

/* 16-bit form at its top, 65535 bytes */
static const uint8_t masked_65535[] = {
    0x82,                   /* FIN, opcode binary */
    0xfe,                   /* MASK, 16-bit length */
    0xff, 0xff,             /* 65535 */
    0x00, 0x00, 0x00, 0x00, /* masking key */
};

static const struct good_frame good_frames[] = {
    {"§5.7 masked Hello", masked_hello, sizeof masked_hello, true, WS_OP_TEXT, 5, 6},
    {"§5.7 masked pong", masked_pong, sizeof masked_pong, true, WS_OP_PONG, 5, 6},
    {"§5.7 256 bytes", masked_256, sizeof masked_256, true, WS_OP_BINARY, 256, 8},
    {"§5.7 64KiB", masked_65536, sizeof masked_65536, true, WS_OP_BINARY, 65536, 14},
    {"2^63-1", masked_max64, sizeof masked_max64, true, WS_OP_BINARY, UINT64_C(0x7fffffffffffffff), 14},
    {"text fragment", masked_text_fragment, sizeof masked_text_fragment, false, WS_OP_TEXT, 0, 6},
    {"final continuation", masked_cont_final, sizeof masked_cont_final, true, WS_OP_CONT, 3, 6},
    {"close 125", masked_close_125, sizeof masked_close_125, true, WS_OP_CLOSE, 125, 6},
    {"empty ping", masked_ping_empty, sizeof masked_ping_empty, true, WS_OP_PING, 0, 6},
    {"binary 125", masked_125, sizeof masked_125, true, WS_OP_BINARY, 125, 6},
    {"binary 65535", masked_65535, sizeof masked_65535, true, WS_OP_BINARY, 65535, 8},
};

static void
test_parse_good(void)
{
    for (size_t t = 0; t < sizeof good_frames / sizeof good_frames[0]; t++) {
        const struct good_frame *g = &good_frames[t];
        uint64_t max = g->payload_len > MAX_BIG ? UINT64_MAX : MAX_BIG;
        struct ws_frame_header h;

        memset(&h, 0xa5, sizeof h);
        CHECK(ws_frame_parse_header(g->wire, g->wire_len, max, &h) == WS_PARSE_OK);
        CHECK(h.fin == g->fin);
        CHECK(h.opcode == g->opcode);
        CHECK(h.masked);
        CHECK(h.payload_len == g->payload_len);
        CHECK(h.header_len == g->header_len);
        CHECK(memcmp(h.mask, g->wire + g->header_len - 4, 4) == 0);

        /* Every truncation of the header needs more, and says nothing else. */
        for (size_t n = 0; n < g->header_len; n++)
            CHECK(ws_frame_parse_header(g->wire, n, max, &h) == WS_PARSE_NEED_MORE);

        /* The limit is inclusive: exactly max_payload is fine, one less is too big. */
        CHECK(ws_frame_parse_header(g->wire, g->wire_len, g->payload_len, &h) == WS_PARSE_OK);
        if (g->payload_len > 0)
            CHECK(ws_frame_parse_header(g->wire, g->wire_len, g->payload_len - 1, &h) == WS_PARSE_TOO_BIG);
    }

    /* The payload after the §5.7 header unmasks to "Hello". */
    struct ws_frame_header h;
    uint8_t payload[5];
    CHECK(ws_frame_parse_header(masked_hello, sizeof masked_hello, 1024, &h) == WS_PARSE_OK);
    memcpy(payload, masked_hello + h.header_len, sizeof payload);
    ws_frame_unmask(payload, sizeof payload, h.mask, 0);
    CHECK(memcmp(payload, "Hello", 5) == 0);

    /* Bytes after the header (the payload, the next frame) do not change the result. */
    uint8_t two[2 * sizeof masked_hello];
    memcpy(two, masked_hello, sizeof masked_hello);
    memcpy(two + sizeof masked_hello, masked_hello, sizeof masked_hello);
    CHECK(ws_frame_parse_header(two, sizeof two, 1024, &h) == WS_PARSE_OK);
    CHECK(h.header_len == 6 && h.payload_len == 5);
}

/* ---- parse: frames a client must not send ---- */

struct bad_frame {
    const char *what;
    uint8_t wire[WS_MAX_HEADER_LEN];
    size_t wire_len;   /* the whole header */
    size_t visible_at; /* the error shows once this many bytes are there */
    uint64_t max_payload;
    enum ws_parse_result want;
};

static const struct bad_frame bad_frames[] = {
    /* RFC 6455 §5.7: single-frame unmasked text "Hello" (fine from a server, not a client) */
    {"§5.7 unmasked Hello",
     {
         0x81, /* FIN, opcode text */
         0x05, /* no MASK, payload length 5 */
     },
     2,
     2,
     1024,
     WS_PARSE_UNMASKED},
    {"unmasked 16-bit",
     {
         0x82,       /* FIN, opcode binary */
         0x7e,       /* no MASK, 16-bit length */
         0x01, 0x00, /* 256 */
     },
     4,
     2,
     1024,
     WS_PARSE_UNMASKED},
    {"unmasked 64-bit",
     {
         0x82,                                           /* FIN, opcode binary */
         0x7f,                                           /* no MASK, 64-bit length */
         0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, /* 65536 */
     },
     10,
     2,
     MAX_BIG,
     WS_PARSE_UNMASKED},
    {"RSV1",
     {
         0xc1,                   /* FIN, RSV1, opcode text */
         0x80,                   /* MASK, length 0 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     1,
     1024,
     WS_PARSE_BAD_OPCODE},
    {"RSV2",
     {
         0xa1,                   /* FIN, RSV2, opcode text */
         0x80,                   /* MASK, length 0 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     1,
     1024,
     WS_PARSE_BAD_OPCODE},
    {"RSV3",
     {
         0x91,                   /* FIN, RSV3, opcode text */
         0x80,                   /* MASK, length 0 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     1,
     1024,
     WS_PARSE_BAD_OPCODE},
    {"RSV1 on a continuation, no FIN",
     {
         0x40,                   /* RSV1, opcode continuation */
         0x80,                   /* MASK, length 0 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     1,
     1024,
     WS_PARSE_BAD_OPCODE},
    {"ping without FIN",
     {
         0x09,                   /* no FIN, opcode ping */
         0x80,                   /* MASK, length 0 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     1,
     1024,
     WS_PARSE_BAD_CONTROL},
    {"close without FIN",
     {
         0x08,                   /* no FIN, opcode close */
         0x82,                   /* MASK, length 2 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     1,
     1024,
     WS_PARSE_BAD_CONTROL},
    {"pong without FIN",
     {
         0x0a,                   /* no FIN, opcode pong */
         0x80,                   /* MASK, length 0 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     1,
     1024,
     WS_PARSE_BAD_CONTROL},
    {"ping with 126 bytes",
     {
         0x89,                   /* FIN, opcode ping */
         0xfe,                   /* MASK, 16-bit length */
         0x00, 0x7e,             /* 126 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     8,
     2,
     1024,
     WS_PARSE_BAD_CONTROL},
    {"close with a 64-bit length",
     {
         0x88,                                           /* FIN, opcode close */
         0xff,                                           /* MASK, 64-bit length */
         0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, /* 2 */
         0x00, 0x00, 0x00, 0x00,                         /* masking key */
     },
     14,
     2,
     1024,
     WS_PARSE_BAD_CONTROL},
    {"64-bit length with the MSB set",
     {
         0x82,                                           /* FIN, opcode binary */
         0xff,                                           /* MASK, 64-bit length */
         0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 2^63 */
         0x00, 0x00, 0x00, 0x00,                         /* masking key */
     },
     14,
     3,
     UINT64_MAX,
     WS_PARSE_BAD_LENGTH},
    {"64-bit length all ones",
     {
         0x82,                                           /* FIN, opcode binary */
         0xff,                                           /* MASK, 64-bit length */
         0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 2^64 - 1 */
         0x00, 0x00, 0x00, 0x00,                         /* masking key */
     },
     14,
     3,
     UINT64_MAX,
     WS_PARSE_BAD_LENGTH},
    {"7-bit length above the limit",
     {
         0x82,                   /* FIN, opcode binary */
         0xe5,                   /* MASK, payload length 101 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     2,
     100,
     WS_PARSE_TOO_BIG},
    {"16-bit length above the limit",
     {
         0x82,                   /* FIN, opcode binary */
         0xfe,                   /* MASK, 16-bit length */
         0x03, 0xe9,             /* 1001 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     8,
     4,
     1000,
     WS_PARSE_TOO_BIG},
    {"64-bit length above the limit",
     {
         0x82,                                           /* FIN, opcode binary */
         0xff,                                           /* MASK, 64-bit length */
         0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, /* 2^32 */
         0x00, 0x00, 0x00, 0x00,                         /* masking key */
     },
     14,
     10,
     UINT64_C(0xffffffff),
     WS_PARSE_TOO_BIG},
    {"text frame with a zero limit",
     {
         0x81,                   /* FIN, opcode text */
         0x81,                   /* MASK, payload length 1 */
         0x00, 0x00, 0x00, 0x00, /* masking key */
     },
     6,
     2,
     0,
     WS_PARSE_TOO_BIG},
};

/* Reserved opcodes (§5.2): 3-7 are data, 0xB-0xF control; with and without FIN and MASK. */
static void
test_parse_reserved_opcodes(void)
{
    static const uint8_t reserved[] = {0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf};
    struct ws_frame_header h;

    for (size_t i = 0; i < sizeof reserved; i++) {
        for (unsigned fin = 0; fin < 2; fin++) {
            uint8_t wire[] = {
                (uint8_t)((fin ? 0x80 : 0x00) | reserved[i]), /* FIN?, reserved opcode */
                0x81,                                         /* MASK, payload length 1 */
                0x00,
                0x00,
                0x00,
                0x00, /* masking key */
                0x00, /* payload */
            };
            for (size_t n = 1; n <= sizeof wire; n++)
                CHECK(ws_frame_parse_header(wire, n, 1024, &h) == WS_PARSE_BAD_OPCODE);
            wire[1] = 0x01; /* unmasked as well: the opcode is seen first */
            CHECK(ws_frame_parse_header(wire, sizeof wire, 1024, &h) == WS_PARSE_BAD_OPCODE);
        }
    }
    /* And every known opcode passes the first byte. */
    static const uint8_t known[] = {WS_OP_CONT,  WS_OP_TEXT, WS_OP_BINARY,
                                    WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < sizeof known; i++) {
        uint8_t wire[] = {
            (uint8_t)(0x80 | known[i]), /* FIN, opcode */
            0x80,                       /* MASK, payload length 0 */
            0x01,
            0x02,
            0x03,
            0x04, /* masking key */
        };
        CHECK(ws_frame_parse_header(wire, 1, 1024, &h) == WS_PARSE_NEED_MORE);
        CHECK(ws_frame_parse_header(wire, sizeof wire, 1024, &h) == WS_PARSE_OK);
        CHECK(h.opcode == known[i]);
    }
}

static void
test_parse_bad(void)
{
    for (size_t t = 0; t < sizeof bad_frames / sizeof bad_frames[0]; t++) {
        const struct bad_frame *b = &bad_frames[t];
        struct ws_frame_header h;

        for (size_t n = 0; n < b->visible_at; n++) {
            enum ws_parse_result r = ws_frame_parse_header(b->wire, n, b->max_payload, &h);
            CHECK(r == WS_PARSE_NEED_MORE);
            if (r != WS_PARSE_NEED_MORE)
                fprintf(stderr, "  %s: %zu bytes gave %s\n", b->what, n, ws_parse_result_str(r));
        }
        /* Reported as soon as it is visible, with or without the rest of the header. */
        for (size_t n = b->visible_at; n <= b->wire_len; n++) {
            enum ws_parse_result r = ws_frame_parse_header(b->wire, n, b->max_payload, &h);
            CHECK(r == b->want);
            if (r != b->want)
                fprintf(stderr, "  %s: %zu bytes gave %s, want %s\n", b->what, n, ws_parse_result_str(r),
                        ws_parse_result_str(b->want));
        }
    }
}

/* ---- encode ---- */

struct encode_case {
    bool fin;
    uint8_t opcode;
    uint64_t payload_len;
    uint8_t wire[WS_MAX_SERVER_HEADER_LEN];
    size_t wire_len;
};

static const struct encode_case encode_cases[] = {
    /* RFC 6455 §5.7: unmasked text "Hello" */
    {true, WS_OP_TEXT, 5, {0x81, 0x05}, 2},
    /* RFC 6455 §5.7: fragmented unmasked text, "Hel" then "lo" */
    {false, WS_OP_TEXT, 3, {0x01, 0x03}, 2},
    {true, WS_OP_CONT, 2, {0x80, 0x02}, 2},
    /* RFC 6455 §5.7: unmasked ping "Hello" */
    {true, WS_OP_PING, 5, {0x89, 0x05}, 2},
    /* RFC 6455 §5.7: 256 bytes binary in a single unmasked frame */
    {true, WS_OP_BINARY, 256, {0x82, 0x7e, 0x01, 0x00}, 4},
    /* RFC 6455 §5.7: 64KiB binary in a single unmasked frame */
    {true, WS_OP_BINARY, 65536, {0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}, 10},
    /* The boundaries of the three length forms */
    {true, WS_OP_BINARY, 0, {0x82, 0x00}, 2},
    {true, WS_OP_BINARY, 125, {0x82, 0x7d}, 2},
    {true, WS_OP_BINARY, 126, {0x82, 0x7e, 0x00, 0x7e}, 4},
    {true, WS_OP_BINARY, 65535, {0x82, 0x7e, 0xff, 0xff}, 4},
    {true, WS_OP_BINARY, 65536, {0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}, 10},
    {false,
     WS_OP_BINARY,
     UINT64_C(0x0102030405060708),
     {0x02, 0x7f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08},
     10},
    {true, WS_OP_CLOSE, 0, {0x88, 0x00}, 2},
    {true, WS_OP_PONG, 125, {0x8a, 0x7d}, 2},
};

static void
test_encode(void)
{
    for (size_t t = 0; t < sizeof encode_cases / sizeof encode_cases[0]; t++) {
        const struct encode_case *e = &encode_cases[t];
        uint8_t out[WS_MAX_SERVER_HEADER_LEN + 1];

        memset(out, 0xee, sizeof out);
        size_t n = ws_frame_encode_header(out, e->fin, e->opcode, e->payload_len);
        CHECK(n == e->wire_len);
        CHECK(memcmp(out, e->wire, e->wire_len) == 0);
        CHECK(out[n] == 0xee); /* nothing written past the header */
    }

    /* Round trip through the parser at and around every boundary: add MASK and a key. */
    static const uint64_t lens[] = {0,
                                    1,
                                    124,
                                    125,
                                    126,
                                    127,
                                    65534,
                                    65535,
                                    65536,
                                    65537,
                                    UINT64_C(1) << 32,
                                    UINT64_C(0x7fffffffffffffff)};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t wire[WS_MAX_HEADER_LEN];
        struct ws_frame_header h;
        size_t n = ws_frame_encode_header(wire, true, WS_OP_BINARY, lens[i]);

        CHECK(n == (lens[i] <= 125 ? 2u : lens[i] <= 65535 ? 4u : 10u));
        wire[1] |= 0x80;
        memcpy(wire + n, "\x01\x02\x03\x04", 4);
        CHECK(ws_frame_parse_header(wire, n + 4, UINT64_MAX, &h) == WS_PARSE_OK);
        CHECK(h.payload_len == lens[i]);
        CHECK(h.header_len == n + 4);
        CHECK(h.fin && h.opcode == WS_OP_BINARY);
    }
}

/* ---- unmask ---- */

static void
ref_unmask(uint8_t *buf, size_t len, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        buf[i] ^= mask[(offset + i) % 4];
}

static void
test_unmask(void)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    enum { BIG = 70000, SLACK = 16 };
    uint8_t *orig = malloc(BIG + SLACK);
    uint8_t *want = malloc(BIG + SLACK);
    uint8_t *got = malloc(BIG + SLACK);
    size_t lens[101 + 8];
    size_t nlens = 0;

    if (orig == NULL || want == NULL || got == NULL) {
        CHECK(!"out of memory");
        return;
    }
    for (size_t i = 0; i < BIG + SLACK; i++)
        orig[i] = (uint8_t)prng();
    for (size_t len = 0; len <= 100; len++)
        lens[nlens++] = len;
    lens[nlens++] = 127;
    lens[nlens++] = 255;
    lens[nlens++] = 256;
    lens[nlens++] = 1000;
    lens[nlens++] = 4099;
    lens[nlens++] = 65535;
    lens[nlens++] = 65536;
    lens[nlens++] = 65536 + 7;

    static const uint64_t big_offsets[] = {UINT64_C(1) << 32, (UINT64_C(1) << 32) + 3, UINT64_MAX - 3};
    int mismatches = 0;
    for (size_t li = 0; li < nlens; li++) {
        size_t len = lens[li];
        for (uint64_t offset = 0; offset < 8 + 3; offset++) {
            uint64_t off = offset < 8 ? offset : big_offsets[offset - 8];
            for (size_t align = 0; align < 8; align++) {
                if (len > 300 && align != 0 && align != 3)
                    continue; /* keep the large cases quick */
                memcpy(want + align, orig, len);
                ref_unmask(want + align, len, mask, off);
                /* Guard bytes on both sides catch a write outside [buf, buf+len). */
                memcpy(got + align, orig, len);
                if (align > 0)
                    got[align - 1] = 0x5a;
                got[align + len] = 0xa5;
                ws_frame_unmask(got + align, len, mask, off);
                if (memcmp(got + align, want + align, len) != 0 || (align > 0 && got[align - 1] != 0x5a) ||
                    got[align + len] != 0xa5) {
                    mismatches++;
                    fprintf(stderr, "  unmask differs: len %zu offset %llu align %zu\n", len,
                            (unsigned long long)off, align);
                }
            }
        }
    }
    CHECK(mismatches == 0);

    /* Unmasking twice restores the data (XOR). */
    memcpy(got, orig, 1000);
    ws_frame_unmask(got, 1000, mask, 5);
    CHECK(memcmp(got, orig, 1000) != 0);
    ws_frame_unmask(got, 1000, mask, 5);
    CHECK(memcmp(got, orig, 1000) == 0);

    /* A payload unmasked in pieces, each with its offset, equals one call (§5.3). */
    mismatches = 0;
    for (int round = 0; round < 300; round++) {
        size_t len = round < 200 ? prng() % 200 : prng() % BIG;
        memcpy(want, orig, len);
        ws_frame_unmask(want, len, mask, 0);
        memcpy(got, orig, len);
        size_t pos = 0;
        while (pos < len) {
            size_t piece = prng() % (round % 3 == 0 ? 9 : round % 3 == 1 ? 40 : 5000);
            if (piece > len - pos)
                piece = len - pos;
            ws_frame_unmask(got + pos, piece, mask, pos);
            pos += piece;
        }
        if (memcmp(got, want, len) != 0) {
            mismatches++;
            fprintf(stderr, "  piecewise unmask differs: round %d len %zu\n", round, len);
        }
    }
    CHECK(mismatches == 0);

    /* Byte-at-a-time is the degenerate case of pieces. */
    memcpy(want, orig, 77);
    ws_frame_unmask(want, 77, mask, 2);
    memcpy(got, orig, 77);
    for (size_t i = 0; i < 77; i++)
        ws_frame_unmask(got + i, 1, mask, 2 + i);
    CHECK(memcmp(got, want, 77) == 0);

    free(orig);
    free(want);
    free(got);
}

/* ---- message (fragmentation) ---- */

static struct ws_frame_header
frame(bool fin, uint8_t opcode, uint64_t payload_len)
{
    struct ws_frame_header h;

    memset(&h, 0, sizeof h);
    h.fin = fin;
    h.opcode = opcode;
    h.masked = true;
    h.payload_len = payload_len;
    h.header_len = 6;
    return h;
}

struct msg_step {
    bool fin;
    uint8_t opcode;
    uint64_t payload_len;
    enum ws_parse_result want;
    uint8_t want_opcode; /* msg->opcode after an OK step */
    uint64_t want_len;
};

struct msg_case {
    const char *what;
    uint64_t max_message;
    struct msg_step steps[6];
    size_t count;
};

static const struct msg_case msg_cases[] = {
    {"single text", 0, {{true, WS_OP_TEXT, 5, WS_PARSE_OK, WS_OP_TEXT, 5}}, 1},
    {"single binary", 0, {{true, WS_OP_BINARY, 0, WS_PARSE_OK, WS_OP_BINARY, 0}}, 1},
    {"continuation without start", 0, {{true, WS_OP_CONT, 3, WS_PARSE_BAD_CONTINUATION, 0, 0}}, 1},
    {"fragmented text",
     0,
     {
         {false, WS_OP_TEXT, 3, WS_PARSE_OK, WS_OP_TEXT, 3},
         {false, WS_OP_CONT, 0, WS_PARSE_OK, WS_OP_TEXT, 3},
         {true, WS_OP_CONT, 2, WS_PARSE_OK, WS_OP_TEXT, 5},
     },
     3},
    {"text inside fragmented text",
     0,
     {
         {false, WS_OP_TEXT, 3, WS_PARSE_OK, WS_OP_TEXT, 3},
         {true, WS_OP_TEXT, 2, WS_PARSE_NEED_CONTINUATION, 0, 0},
     },
     2},
    {"binary inside fragmented text",
     0,
     {
         {false, WS_OP_TEXT, 3, WS_PARSE_OK, WS_OP_TEXT, 3},
         {false, WS_OP_BINARY, 2, WS_PARSE_NEED_CONTINUATION, 0, 0},
     },
     2},
    {"text inside fragmented binary",
     0,
     {
         {false, WS_OP_BINARY, 3, WS_PARSE_OK, WS_OP_BINARY, 3},
         {false, WS_OP_CONT, 3, WS_PARSE_OK, WS_OP_BINARY, 6},
         {true, WS_OP_TEXT, 2, WS_PARSE_NEED_CONTINUATION, 0, 0},
     },
     3},
    {"message exactly at the limit",
     10,
     {
         {false, WS_OP_TEXT, 6, WS_PARSE_OK, WS_OP_TEXT, 6},
         {true, WS_OP_CONT, 4, WS_PARSE_OK, WS_OP_TEXT, 10},
     },
     2},
    {"fragments over the limit",
     10,
     {
         {false, WS_OP_TEXT, 6, WS_PARSE_OK, WS_OP_TEXT, 6},
         {false, WS_OP_CONT, 4, WS_PARSE_OK, WS_OP_TEXT, 10},
         {true, WS_OP_CONT, 1, WS_PARSE_TOO_BIG, 0, 0},
     },
     3},
    {"one frame over the limit", 10, {{true, WS_OP_BINARY, 11, WS_PARSE_TOO_BIG, 0, 0}}, 1},
    {"huge frame, huge limit",
     UINT64_MAX,
     {
         {false, WS_OP_BINARY, UINT64_MAX - 1, WS_PARSE_OK, WS_OP_BINARY, UINT64_MAX - 1},
         {true, WS_OP_CONT, 2, WS_PARSE_TOO_BIG, 0, 0},
     },
     2},
    {"no limit",
     0,
     {
         {false, WS_OP_BINARY, UINT64_C(1) << 62, WS_PARSE_OK, WS_OP_BINARY, UINT64_C(1) << 62},
         {true, WS_OP_CONT, UINT64_C(1) << 62, WS_PARSE_OK, WS_OP_BINARY, UINT64_C(1) << 63},
     },
     2},
};

static void
test_message(void)
{
    for (size_t t = 0; t < sizeof msg_cases / sizeof msg_cases[0]; t++) {
        const struct msg_case *c = &msg_cases[t];
        struct ws_message msg = {0, 0};

        for (size_t s = 0; s < c->count; s++) {
            const struct msg_step *st = &c->steps[s];
            struct ws_frame_header h = frame(st->fin, st->opcode, st->payload_len);
            enum ws_parse_result r = ws_message_add_frame(&msg, &h, c->max_message);
            CHECK(r == st->want);
            if (r != st->want)
                fprintf(stderr, "  %s, step %zu: got %s, want %s\n", c->what, s, ws_parse_result_str(r),
                        ws_parse_result_str(st->want));
            if (r == WS_PARSE_OK) {
                CHECK(msg.opcode == st->want_opcode);
                CHECK(msg.len == st->want_len);
            }
        }
    }

    /* ws_message_end() closes the message: the next must start afresh. */
    struct ws_message msg = {0, 0};
    struct ws_frame_header h = frame(false, WS_OP_TEXT, 7);
    CHECK(ws_message_add_frame(&msg, &h, 100) == WS_PARSE_OK);
    h = frame(true, WS_OP_CONT, 7);
    CHECK(ws_message_add_frame(&msg, &h, 100) == WS_PARSE_OK);
    CHECK(msg.len == 14);
    ws_message_end(&msg);
    CHECK(msg.opcode == 0);
    CHECK(msg.len == 0);
    h = frame(true, WS_OP_CONT, 1);
    CHECK(ws_message_add_frame(&msg, &h, 100) == WS_PARSE_BAD_CONTINUATION);
    h = frame(true, WS_OP_BINARY, 90);
    CHECK(ws_message_add_frame(&msg, &h, 100) == WS_PARSE_OK);
    CHECK(msg.opcode == WS_OP_BINARY);
    CHECK(msg.len == 90); /* the limit counts this message only, not the one before */
    ws_message_end(&msg);
    h = frame(true, WS_OP_TEXT, 100);
    CHECK(ws_message_add_frame(&msg, &h, 100) == WS_PARSE_OK);
}

/* ---- close payloads ---- */

struct close_case {
    const char *what;
    const char *payload;
    size_t len;
    enum ws_close_result want;
    uint16_t want_code;
};

static const struct close_case close_cases[] = {
    {"empty", "", 0, WS_CLOSE_OK, WS_CLOSE_NO_STATUS},
    {"one byte", "\x03", 1, WS_CLOSE_BAD_LENGTH, 0},
    {"1000", "\x03\xe8", 2, WS_CLOSE_OK, 1000},
    {"1001", "\x03\xe9", 2, WS_CLOSE_OK, 1001},
    {"1002", "\x03\xea", 2, WS_CLOSE_OK, 1002},
    {"1003", "\x03\xeb", 2, WS_CLOSE_OK, 1003},
    {"1007", "\x03\xef", 2, WS_CLOSE_OK, 1007},
    {"1011", "\x03\xf3", 2, WS_CLOSE_OK, 1011},
    {"1014", "\x03\xf6", 2, WS_CLOSE_OK, 1014},
    {"3000", "\x0b\xb8", 2, WS_CLOSE_OK, 3000},
    {"4999", "\x13\x87", 2, WS_CLOSE_OK, 4999},
    {"0", "\x00\x00", 2, WS_CLOSE_BAD_CODE, 0},
    {"999", "\x03\xe7", 2, WS_CLOSE_BAD_CODE, 0},
    {"1004", "\x03\xec", 2, WS_CLOSE_BAD_CODE, 0},
    {"1005 (never on the wire)", "\x03\xed", 2, WS_CLOSE_BAD_CODE, 0},
    {"1006 (never on the wire)", "\x03\xee", 2, WS_CLOSE_BAD_CODE, 0},
    {"1015 (TLS, never on the wire)", "\x03\xf7", 2, WS_CLOSE_BAD_CODE, 0},
    {"1016", "\x03\xf8", 2, WS_CLOSE_BAD_CODE, 0},
    {"2999", "\x0b\xb7", 2, WS_CLOSE_BAD_CODE, 0},
    {"5000", "\x13\x88", 2, WS_CLOSE_BAD_CODE, 0},
    {"65535", "\xff\xff", 2, WS_CLOSE_BAD_CODE, 0},
    {"1000 with a reason",
     "\x03\xe8"
     "bye",
     5, WS_CLOSE_OK, 1000},
    {"1000 with a UTF-8 reason",
     "\x03\xe8"
     "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80",
     17, WS_CLOSE_OK, 1000},
    {"reason with NUL",
     "\x03\xe8"
     "a\0b",
     5, WS_CLOSE_OK, 1000},
    {"reason not UTF-8",
     "\x03\xe8"
     "\xff",
     3, WS_CLOSE_BAD_REASON, 0},
    {"reason with a surrogate",
     "\x03\xe8"
     "\xed\xa0\x80",
     5, WS_CLOSE_BAD_REASON, 0},
    {"reason cut inside a code point",
     "\x03\xe8"
     "ok\xe2\x82",
     6, WS_CLOSE_BAD_REASON, 0},
    {"reason overlong",
     "\x03\xe8"
     "\xc0\xaf",
     4, WS_CLOSE_BAD_REASON, 0},
    {"bad code beats bad reason",
     "\x03\xed"
     "\xff",
     3, WS_CLOSE_BAD_CODE, 0},
};

static void
test_close_parse(void)
{
    for (size_t t = 0; t < sizeof close_cases / sizeof close_cases[0]; t++) {
        const struct close_case *c = &close_cases[t];
        uint16_t code = 0x5a5a;
        enum ws_close_result r = ws_close_parse((const uint8_t *)c->payload, c->len, &code);

        CHECK(r == c->want);
        if (r != c->want)
            fprintf(stderr, "  close %s: got %s, want %s\n", c->what, ws_close_result_str(r),
                    ws_close_result_str(c->want));
        if (r == WS_CLOSE_OK && c->want == WS_CLOSE_OK)
            CHECK(code == c->want_code);
    }

    /* ws_close_code_is_valid() over the whole 16-bit range agrees with §7.4. */
    int wrong = 0;
    for (unsigned code = 0; code <= 70000; code++) {
        bool want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                    (code >= 3000 && code <= 4999);
        if (ws_close_code_is_valid(code) != want) {
            wrong++;
            fprintf(stderr, "  ws_close_code_is_valid(%u) is wrong\n", code);
        }
    }
    CHECK(wrong == 0);
}

/* Longest well-formed prefix of at most 'max' bytes of a valid UTF-8 string. */
static size_t
utf8_cut(const char *s, size_t len, size_t max)
{
    size_t i = 0;

    while (i < len) {
        uint8_t b = (uint8_t)s[i];
        size_t n = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
        if (i + n > max)
            break;
        i += n;
    }
    return i;
}

static void
test_close_encode(void)
{
    uint8_t out[2 + WS_MAX_CONTROL_PAYLOAD + 1];
    size_t n;

    /* NO_STATUS is an empty close (§7.1.5: 1005 is never on the wire). */
    memset(out, 0xee, sizeof out);
    n = ws_close_encode(out, WS_CLOSE_NO_STATUS, "ignored", 7);
    CHECK(n == 2);
    CHECK(out[0] == 0x88 && out[1] == 0x00); /* FIN close, length 0 */

    /* 1000 "bye" */
    static const uint8_t bye[] = {
        0x88,       /* FIN, opcode close */
        0x05,       /* payload length 5 */
        0x03, 0xe8, /* 1000 */
        'b',  'y',  'e',
    };
    n = ws_close_encode(out, WS_CLOSE_NORMAL, "bye", 3);
    CHECK(n == sizeof bye);
    CHECK(memcmp(out, bye, sizeof bye) == 0);

    /* Code without a reason */
    n = ws_close_encode(out, WS_CLOSE_TOO_BIG, NULL, 0);
    CHECK(n == 4);
    CHECK(out[0] == 0x88 && out[1] == 0x02 && out[2] == 0x03 && out[3] == 0xf1); /* 1009 */

    /* Reasons of many lengths and code point widths: the payload is at most 125 bytes, the
     * reason the longest whole-code-point prefix that fits in 123, and it still parses. */
    static const char *const units[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    char reason[400];
    int bad = 0;
    for (size_t u = 0; u < 4; u++) {
        for (size_t lead = 0; lead < 4; lead++) {
            for (size_t total = 118; total <= 200; total += (total < 130 ? 1 : 35)) {
                size_t len = 0;
                for (; len < lead; len++)
                    reason[len] = 'x';
                size_t ul = strlen(units[u]);
                while (len + ul <= total) {
                    memcpy(reason + len, units[u], ul);
                    len += ul;
                }
                size_t want_reason = utf8_cut(reason, len, WS_MAX_CONTROL_PAYLOAD - 2);
                memset(out, 0xee, sizeof out);
                n = ws_close_encode(out, 4000, reason, len);
                uint16_t code = 0;
                uint8_t st = UTF8_STATE_INIT;
                if (n != 2 + 2 + want_reason || out[0] != 0x88 || out[1] != 2 + want_reason ||
                    memcmp(out + 4, reason, want_reason) != 0 || out[sizeof out - 1] != 0xee ||
                    ws_close_parse(out + 2, n - 2, &code) != WS_CLOSE_OK || code != 4000 ||
                    utf8_validate(&st, out + 4, n - 4) != UTF8_OK) {
                    bad++;
                    fprintf(stderr, "  close_encode: unit %zu lead %zu reason %zu: frame %zu bytes\n", u,
                            lead, len, n);
                }
            }
        }
    }
    CHECK(bad == 0);

    /* Exactly 123 bytes fit whole, 124 lose one. */
    memset(reason, 'r', sizeof reason);
    CHECK(ws_close_encode(out, 1000, reason, 123) == 127);
    CHECK(out[1] == 125);
    CHECK(ws_close_encode(out, 1000, reason, 124) == 127);
    CHECK(out[1] == 125);
}

static void
test_result_strings(void)
{
    static const enum ws_parse_result results[] = {
        WS_PARSE_OK,       WS_PARSE_NEED_MORE,        WS_PARSE_BAD_OPCODE,
        WS_PARSE_UNMASKED, WS_PARSE_BAD_CONTROL,      WS_PARSE_BAD_LENGTH,
        WS_PARSE_TOO_BIG,  WS_PARSE_BAD_CONTINUATION, WS_PARSE_NEED_CONTINUATION,
    };
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
        const char *s = ws_parse_result_str(results[i]);
        CHECK(s != NULL && *s != '\0' && strcmp(s, "unknown") != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s, ws_parse_result_str(results[j])) != 0);
    }
    static const enum ws_close_result close_results[] = {WS_CLOSE_OK, WS_CLOSE_BAD_LENGTH, WS_CLOSE_BAD_CODE,
                                                         WS_CLOSE_BAD_REASON};
    for (size_t i = 0; i < 4; i++) {
        const char *s = ws_close_result_str(close_results[i]);
        CHECK(s != NULL && *s != '\0' && strcmp(s, "unknown") != 0);
    }

    /* §7.4.1: 1009 for a message too big, 1002 for every protocol error. */
    CHECK(ws_parse_result_close_code(WS_PARSE_TOO_BIG) == 1009);
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++)
        if (results[i] != WS_PARSE_TOO_BIG && results[i] != WS_PARSE_OK && results[i] != WS_PARSE_NEED_MORE)
            CHECK(ws_parse_result_close_code(results[i]) == 1002);
}

int
main(void)
{
    test_parse_good();
    test_parse_bad();
    test_parse_reserved_opcodes();
    test_encode();
    test_unmask();
    test_message();
    test_close_parse();
    test_close_encode();
    test_result_strings();
    return check_report();
}
