/* test_base64.c - RFC 4648 base64: the §10 test vectors both ways, round trips, padding
 * and alphabet errors, and the incremental decoder split at every position. Output
 * buffers are allocated at exactly the documented size so ASan sees any overrun. */
#include "base64.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t prng_state = UINT64_C(0xd1b54a32d192ed03);

static uint32_t
prng(void)
{
    prng_state ^= prng_state << 13;
    prng_state ^= prng_state >> 7;
    prng_state ^= prng_state << 17;
    return (uint32_t)(prng_state >> 16);
}

/* The documented output room for decoding 'len' characters. */
static size_t
decode_room(size_t len)
{
    return len / 4 * 3 + 3;
}

static const char *
result_name(enum base64_result r)
{
    return r == BASE64_OK            ? "OK"
           : r == BASE64_BAD_CHAR    ? "BAD_CHAR"
           : r == BASE64_BAD_PADDING ? "BAD_PADDING"
                                     : "?";
}

/* One-shot decode into an exactly-sized heap buffer; the bytes go to 'out' (if not NULL). */
static enum base64_result
decode_exact(const char *in, size_t len, uint8_t *out, size_t *out_len)
{
    uint8_t *buf = malloc(decode_room(len));
    enum base64_result r;

    if (buf == NULL)
        return BASE64_BAD_CHAR;
    *out_len = 0x5a5a;
    r = base64_decode((const uint8_t *)in, len, buf, out_len);
    if (out != NULL && *out_len <= decode_room(len))
        memcpy(out, buf, *out_len);
    free(buf);
    return r;
}

/* RFC 4648 §10 */
static const struct {
    const char *plain;
    const char *encoded;
} rfc_vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void
test_rfc_vectors(void)
{
    for (size_t t = 0; t < sizeof rfc_vectors / sizeof rfc_vectors[0]; t++) {
        const char *plain = rfc_vectors[t].plain;
        const char *enc = rfc_vectors[t].encoded;
        size_t plen = strlen(plain), elen = strlen(enc);
        char out[16];
        uint8_t dec[16];
        size_t dec_len;

        memset(out, '#', sizeof out);
        CHECK(BASE64_ENCODED_LEN(plen) == elen);
        CHECK(base64_encode((const uint8_t *)plain, plen, out) == elen);
        CHECK(memcmp(out, enc, elen) == 0);
        CHECK(out[elen] == '#'); /* no NUL, nothing past the end */

        CHECK(decode_exact(enc, elen, dec, &dec_len) == BASE64_OK);
        CHECK(dec_len == plen);
        CHECK(memcmp(dec, plain, plen) == 0);
    }

    /* Sec-WebSocket-Key of RFC 6455 §1.3: 16 bytes */
    uint8_t dec[24];
    size_t dec_len;
    CHECK(decode_exact("dGhlIHNhbXBsZSBub25jZQ==", 24, dec, &dec_len) == BASE64_OK);
    CHECK(dec_len == 16);
    CHECK(memcmp(dec, "the sample nonce", 16) == 0);

    /* Every alphabet character once, in order: 00 10 83 ("ABCD") ... f3 df bf ("89+/"). */
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t raw[48];
    char back[64];
    CHECK(decode_exact(alphabet, 64, raw, &dec_len) == BASE64_OK);
    CHECK(dec_len == 48);
    CHECK(raw[0] == 0x00 && raw[1] == 0x10 && raw[2] == 0x83 && raw[45] == 0xf3 && raw[46] == 0xdf &&
          raw[47] == 0xbf);
    CHECK(base64_encode(raw, 48, back) == 64);
    CHECK(memcmp(back, alphabet, 64) == 0);
}

static void
test_round_trip(void)
{
    uint8_t in[300], dec[300];
    char enc[BASE64_ENCODED_LEN(300)];
    int bad = 0;

    for (size_t len = 0; len <= 300; len++) {
        for (size_t i = 0; i < len; i++)
            in[i] = len <= 256 ? (uint8_t)(i + len) : (uint8_t)prng(); /* every byte value, then random */
        size_t elen = base64_encode(in, len, enc);
        size_t dlen;
        if (elen != BASE64_ENCODED_LEN(len) || elen % 4 != 0 ||
            decode_exact(enc, elen, dec, &dlen) != BASE64_OK || dlen != len || memcmp(dec, in, len) != 0) {
            bad++;
            fprintf(stderr, "  round trip of %zu bytes failed\n", len);
        }
    }
    CHECK(bad == 0);
}

struct bad_case {
    const char *what;
    const char *text;
    size_t len;
    enum base64_result want;
};

#define S(lit) lit, sizeof lit - 1

static const struct bad_case bad_cases[] = {
    {"lone pad", S("="), BASE64_BAD_PADDING},
    {"two pads", S("=="), BASE64_BAD_PADDING},
    {"pad in position 2", S("A==="), BASE64_BAD_PADDING},
    {"pad in position 2, short", S("A="), BASE64_BAD_PADDING},
    {"data after a pad in the quantum", S("AB=C"), BASE64_BAD_PADDING},
    {"data after a padded quantum", S("AB==AB=="), BASE64_BAD_PADDING},
    {"data after a padded quantum, short", S("AB==A"), BASE64_BAD_PADDING},
    {"data after Zm8=", S("Zm8=Zm9v"), BASE64_BAD_PADDING},
    {"extra pad after Zm8=", S("Zm8=="), BASE64_BAD_PADDING},
    {"extra pad after Zg==", S("Zg==="), BASE64_BAD_PADDING},
    {"pad starting a quantum", S("Zm9v="), BASE64_BAD_PADDING},
    {"pad after one char of a quantum", S("Zm9vZ==="), BASE64_BAD_PADDING},
    {"truncated quantum of 1", S("Z"), BASE64_BAD_PADDING},
    {"truncated quantum of 2", S("Zg"), BASE64_BAD_PADDING},
    {"truncated quantum of 3", S("Zm8"), BASE64_BAD_PADDING},
    {"truncated after a whole quantum", S("Zm9vYg"), BASE64_BAD_PADDING},
    {"missing the second pad", S("Zg="), BASE64_BAD_PADDING},
    {"space", S("Zm9v Zg=="), BASE64_BAD_CHAR},
    {"leading space", S(" Zm9v"), BASE64_BAD_CHAR},
    {"newline", S("Zm9v\nZg=="), BASE64_BAD_CHAR},
    {"CRLF at the end", S("Zm9v\r\n"), BASE64_BAD_CHAR},
    {"tab", S("Zm\t9v"), BASE64_BAD_CHAR},
    {"URL-safe '-'", S("Zm9-"), BASE64_BAD_CHAR},
    {"URL-safe '_'", S("Zm9_"), BASE64_BAD_CHAR},
    {"NUL", S("Zm9\0"), BASE64_BAD_CHAR},
    {"'.'", S("Zm9."), BASE64_BAD_CHAR},
    {"'!'", S("Zm9v!"), BASE64_BAD_CHAR},
    {"byte 0x80", S("Zm9\x80"), BASE64_BAD_CHAR},
    {"byte 0xff", S("\xffZm9"), BASE64_BAD_CHAR},
    {"'@' (just below 'A')", S("@AAA"), BASE64_BAD_CHAR},
    {"'[' (just above 'Z')", S("[AAA"), BASE64_BAD_CHAR},
    {"'`' (just below 'a')", S("`AAA"), BASE64_BAD_CHAR},
    {"'{' (just above 'z')", S("{AAA"), BASE64_BAD_CHAR},
    {"':' (just above '9')", S(":AAA"), BASE64_BAD_CHAR},
    {"',' (between '+' and '/')", S(",AAA"), BASE64_BAD_CHAR},
};

static void
test_bad(void)
{
    for (size_t t = 0; t < sizeof bad_cases / sizeof bad_cases[0]; t++) {
        const struct bad_case *c = &bad_cases[t];
        size_t out_len;
        enum base64_result r = decode_exact(c->text, c->len, NULL, &out_len);

        CHECK(r == c->want);
        if (r != c->want)
            fprintf(stderr, "  %s: got %s, want %s\n", c->what, result_name(r), result_name(c->want));
        CHECK(out_len <= decode_room(c->len));
    }

    /* On error, *out_len counts what was written before it. */
    uint8_t out[16];
    size_t out_len = 99;
    CHECK(decode_exact("Zm9vYmFy!", 9, out, &out_len) == BASE64_BAD_CHAR);
    CHECK(out_len == 6);
    CHECK(memcmp(out, "foobar", 6) == 0);
    CHECK(decode_exact("Zm9vYg==Zg==", 12, out, &out_len) == BASE64_BAD_PADDING);
    CHECK(out_len == 4);
    CHECK(memcmp(out, "foob", 4) == 0);
}

/* Decode 'enc' in pieces ending at 'cuts', each piece into its own exact-size buffer. */
static enum base64_result
decode_pieces(const char *enc, size_t len, const size_t *cuts, size_t ncuts, uint8_t *out, size_t *out_len)
{
    struct base64_decoder dec;
    size_t pos = 0, total = 0;

    base64_decoder_init(&dec);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        uint8_t *buf = malloc(decode_room(end - pos));
        size_t n = 0;
        if (buf == NULL)
            return BASE64_BAD_CHAR;
        enum base64_result r = base64_decode_update(&dec, (const uint8_t *)enc + pos, end - pos, buf, &n);
        memcpy(out + total, buf, n);
        free(buf);
        total += n;
        *out_len = total;
        if (r != BASE64_OK)
            return r;
        pos = end;
    }
    return base64_decode_final(&dec);
}

static void
test_incremental(void)
{
    static const char *const texts[] = {"",         "Zg==",     "Zm8=",     "Zm9v",
                                        "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy", "dGhlIHNhbXBsZSBub25jZQ=="};
    uint8_t whole[256], parts[256];
    size_t whole_len, parts_len;
    int bad = 0;

    for (size_t t = 0; t < sizeof texts / sizeof texts[0] + 1; t++) {
        char longer[BASE64_ENCODED_LEN(100) + 1];
        const char *enc = texts[t < 8 ? t : 0];
        if (t == 8) { /* and a longer, random one */
            uint8_t raw[100];
            for (size_t i = 0; i < sizeof raw; i++)
                raw[i] = (uint8_t)prng();
            longer[base64_encode(raw, 98, longer)] = '\0';
            enc = longer;
        }
        size_t len = strlen(enc);
        CHECK(decode_exact(enc, len, whole, &whole_len) == BASE64_OK);

        /* two pieces, split at every position */
        for (size_t k = 0; k <= len; k++) {
            if (decode_pieces(enc, len, &k, 1, parts, &parts_len) != BASE64_OK || parts_len != whole_len ||
                memcmp(parts, whole, whole_len) != 0) {
                bad++;
                fprintf(stderr, "  \"%s\" split at %zu decodes differently\n", enc, k);
            }
        }
        /* three pieces, every pair of positions (short texts) */
        for (size_t a = 0; a <= len && len <= 24; a++) {
            for (size_t b = a; b <= len; b++) {
                size_t cuts[2] = {a, b};
                if (decode_pieces(enc, len, cuts, 2, parts, &parts_len) != BASE64_OK ||
                    parts_len != whole_len || memcmp(parts, whole, whole_len) != 0) {
                    bad++;
                    fprintf(stderr, "  \"%s\" split at %zu and %zu decodes differently\n", enc, a, b);
                }
            }
        }
        /* one character at a time */
        size_t cuts[200];
        for (size_t i = 0; i + 1 < len; i++)
            cuts[i] = i + 1;
        if (len > 1 && (decode_pieces(enc, len, cuts, len - 1, parts, &parts_len) != BASE64_OK ||
                        parts_len != whole_len || memcmp(parts, whole, whole_len) != 0)) {
            bad++;
            fprintf(stderr, "  \"%s\" one at a time decodes differently\n", enc);
        }
    }
    CHECK(bad == 0);

    /* Errors are found across a split, too. */
    for (size_t t = 0; t < sizeof bad_cases / sizeof bad_cases[0]; t++) {
        const struct bad_case *c = &bad_cases[t];
        for (size_t k = 0; k <= c->len; k++) {
            enum base64_result r = decode_pieces(c->text, c->len, &k, 1, parts, &parts_len);
            CHECK(r == c->want);
            if (r != c->want)
                fprintf(stderr, "  %s split at %zu: got %s\n", c->what, k, result_name(r));
        }
    }
}

/* base64_decode_final() is OK only on a whole quantum. */
static void
test_final(void)
{
    static const struct {
        const char *text;
        enum base64_result want;
    } cases[] = {
        {"", BASE64_OK},
        {"Z", BASE64_BAD_PADDING},
        {"Zm", BASE64_BAD_PADDING},
        {"Zm9", BASE64_BAD_PADDING},
        {"Zm9v", BASE64_OK},
        {"Zg=", BASE64_BAD_PADDING},
        {"Zg==", BASE64_OK},
        {"Zm8=", BASE64_OK},
        {"Zm9vZ", BASE64_BAD_PADDING},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        struct base64_decoder dec;
        uint8_t out[16];
        size_t n;
        base64_decoder_init(&dec);
        CHECK(base64_decode_update(&dec, (const uint8_t *)cases[t].text, strlen(cases[t].text), out, &n) ==
              BASE64_OK);
        CHECK(base64_decode_final(&dec) == cases[t].want);
        /* Completing the quantum later makes it whole. */
        if (strcmp(cases[t].text, "Zm9") == 0) {
            CHECK(base64_decode_update(&dec, (const uint8_t *)"v", 1, out, &n) == BASE64_OK);
            CHECK(n == 3 && memcmp(out, "foo", 3) == 0);
            CHECK(base64_decode_final(&dec) == BASE64_OK);
        }
    }

    /* A decoder after a padded quantum takes no more input, even across calls. */
    struct base64_decoder dec;
    uint8_t out[16];
    size_t n;
    base64_decoder_init(&dec);
    CHECK(base64_decode_update(&dec, (const uint8_t *)"Zg==", 4, out, &n) == BASE64_OK);
    CHECK(n == 1 && out[0] == 'f');
    CHECK(base64_decode_update(&dec, (const uint8_t *)"", 0, out, &n) == BASE64_OK);
    CHECK(n == 0);
    CHECK(base64_decode_update(&dec, (const uint8_t *)"Zg==", 4, out, &n) == BASE64_BAD_PADDING);
    CHECK(n == 0);

    /* base64_decoder_init() resets a used decoder. */
    base64_decoder_init(&dec);
    CHECK(base64_decode_update(&dec, (const uint8_t *)"Zm9v", 4, out, &n) == BASE64_OK);
    CHECK(n == 3 && memcmp(out, "foo", 3) == 0);
    CHECK(base64_decode_final(&dec) == BASE64_OK);
}

static void
test_strings(void)
{
    CHECK(strcmp(base64_result_str(BASE64_BAD_CHAR), base64_result_str(BASE64_BAD_PADDING)) != 0);
    CHECK(strcmp(base64_result_str(BASE64_BAD_CHAR), "unknown") != 0);
    CHECK(strcmp(base64_result_str(BASE64_OK), "unknown") != 0);
}

int
main(void)
{
    test_rfc_vectors();
    test_round_trip();
    test_bad();
    test_incremental();
    test_final();
    test_strings();
    return check_report();
}
