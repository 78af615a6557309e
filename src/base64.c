/* base64.c - RFC 4648 §4 base64. The decoder is strict: no whitespace, padding only at the
 * end, and the unused bits of a final quantum are not checked (as most decoders do). */
#include "base64.h"

static const char alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define PAD_CHAR '='

size_t
base64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    size_t i = 0;

    for (; len - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = PAD_CHAR;
        out[o++] = PAD_CHAR;
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = PAD_CHAR;
    }
    return o;
}

/* The sextet for an alphabet character, or -1. */
static int
base64_sextet(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

void
base64_decoder_init(struct base64_decoder *dec)
{
    dec->bits = 0;
    dec->count = 0;
    dec->pads = 0;
    dec->finished = false;
}

enum base64_result
base64_decode_update(struct base64_decoder *dec, const uint8_t *in, size_t len, uint8_t *out, size_t *out_len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];

        if (dec->finished) {
            *out_len = o;
            return BASE64_BAD_PADDING;
        }
        if (c == PAD_CHAR) {
            /* Padding may only fill positions 3 and 4 of a quantum ("xx==" or "xxx="). */
            if (dec->count + dec->pads < 2) {
                *out_len = o;
                return BASE64_BAD_PADDING;
            }
            dec->pads++;
        } else {
            int v = base64_sextet(c);
            if (v < 0) {
                *out_len = o;
                return BASE64_BAD_CHAR;
            }
            if (dec->pads > 0) { /* data after '=' inside a quantum */
                *out_len = o;
                return BASE64_BAD_PADDING;
            }
            dec->bits = dec->bits << 6 | (uint32_t)v;
            dec->count++;
        }
        if (dec->count + dec->pads < 4)
            continue;
        /* A whole quantum: 4 sextets give 3 bytes, 3 give 2, 2 give 1. */
        uint32_t v = dec->bits << (6 * dec->pads);
        out[o++] = (uint8_t)(v >> 16);
        if (dec->count >= 3)
            out[o++] = (uint8_t)(v >> 8);
        if (dec->count == 4)
            out[o++] = (uint8_t)v;
        if (dec->pads > 0)
            dec->finished = true;
        dec->bits = 0;
        dec->count = 0;
        dec->pads = 0;
    }
    *out_len = o;
    return BASE64_OK;
}

enum base64_result
base64_decode_final(const struct base64_decoder *dec)
{
    return dec->count == 0 && dec->pads == 0 ? BASE64_OK : BASE64_BAD_PADDING;
}

enum base64_result
base64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t *out_len)
{
    struct base64_decoder dec;
    enum base64_result r;

    base64_decoder_init(&dec);
    r = base64_decode_update(&dec, in, len, out, out_len);
    if (r != BASE64_OK)
        return r;
    return base64_decode_final(&dec);
}

const char *
base64_result_str(enum base64_result result)
{
    switch (result) {
    case BASE64_OK:
        return "ok";
    case BASE64_BAD_CHAR:
        return "character outside the base64 alphabet";
    case BASE64_BAD_PADDING:
        return "misplaced or missing base64 padding";
    }
    return "unknown";
}
