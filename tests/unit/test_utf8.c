/* test_utf8.c - incremental UTF-8 validation: RFC 3629 valid and invalid sequences,
 * every split point across calls, the ASCII fast path at every position and alignment,
 * the sticky invalid state, and thousands of random strings against a reference. */
#include "utf8.h"

#include <stdbool.h>
#include <string.h>

#include "check.h"

static uint64_t prng_state = UINT64_C(0x2545f4914f6cdd1d);

static uint32_t
prng(void)
{
    prng_state ^= prng_state << 13;
    prng_state ^= prng_state >> 7;
    prng_state ^= prng_state << 17;
    return (uint32_t)(prng_state >> 16);
}

static const char *
result_name(enum utf8_result r)
{
    return r == UTF8_OK ? "OK" : r == UTF8_INCOMPLETE ? "INCOMPLETE" : r == UTF8_INVALID ? "INVALID" : "?";
}

static enum utf8_result
validate_once(const void *buf, size_t len)
{
    uint8_t state = UTF8_STATE_INIT;

    return utf8_validate(&state, buf, len);
}

/* ---- a reference validator, written from the code point rules of RFC 3629 §3/§4 ---- */

/* Can some completion of a sequence whose code point lies in [lo, hi] be valid? */
static bool
ref_feasible(uint32_t lo, uint32_t hi, uint32_t min)
{
    if (lo < min)
        lo = min; /* shorter forms are overlong */
    if (hi > 0x10ffff)
        hi = 0x10ffff;
    if (lo > hi)
        return false;
    return !(lo >= 0xd800 && hi <= 0xdfff); /* surrogates */
}

static enum utf8_result
ref_validate(const uint8_t *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t b = s[i++];
        unsigned need;
        uint32_t cp, min;

        if (b < 0x80)
            continue;
        if ((b & 0xe0) == 0xc0)
            need = 1, cp = b & 0x1f, min = 0x80;
        else if ((b & 0xf0) == 0xe0)
            need = 2, cp = b & 0x0f, min = 0x800;
        else if ((b & 0xf8) == 0xf0)
            need = 3, cp = b & 0x07, min = 0x10000;
        else
            return UTF8_INVALID; /* continuation byte or F8..FF */
        for (unsigned have = 0;; have++) {
            unsigned rest = need - have;
            uint32_t lo = cp << (6 * rest), hi = lo | ((UINT32_C(1) << (6 * rest)) - 1);
            if (!ref_feasible(lo, hi, min))
                return UTF8_INVALID;
            if (rest == 0)
                break;
            if (i == n)
                return UTF8_INCOMPLETE;
            if ((s[i] & 0xc0) != 0x80)
                return UTF8_INVALID;
            cp = cp << 6 | (s[i++] & 0x3f);
        }
    }
    return UTF8_OK;
}

/* ---- tables ---- */

struct utf8_case {
    const char *what;
    const char *bytes;
    size_t len;
    enum utf8_result want;
};

#define S(lit) lit, sizeof lit - 1

static const struct utf8_case cases[] = {
    {"empty", S(""), UTF8_OK},
    {"ASCII", S("Hello, world"), UTF8_OK},
    {"NUL and DEL", S("a\0b\x7f"), UTF8_OK},
    {"U+0080, first 2-byte", S("\xc2\x80"), UTF8_OK},
    {"U+00E9", S("caf\xc3\xa9"), UTF8_OK},
    {"U+07FF, last 2-byte", S("\xdf\xbf"), UTF8_OK},
    {"U+0800, first 3-byte", S("\xe0\xa0\x80"), UTF8_OK},
    {"U+20AC euro", S("\xe2\x82\xac"), UTF8_OK},
    {"U+D7FF, below surrogates", S("\xed\x9f\xbf"), UTF8_OK},
    {"U+E000, above surrogates", S("\xee\x80\x80"), UTF8_OK},
    {"U+FFFD", S("\xef\xbf\xbd"), UTF8_OK},
    {"U+FFFF", S("\xef\xbf\xbf"), UTF8_OK},
    {"U+10000, first 4-byte", S("\xf0\x90\x80\x80"), UTF8_OK},
    {"U+1F600", S("\xf0\x9f\x98\x80"), UTF8_OK},
    {"U+10FFFF, last code point", S("\xf4\x8f\xbf\xbf"), UTF8_OK},
    {"mixed", S("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"), UTF8_OK},
    {"RFC 3629 §7 example: A<NOT IDENTICAL TO><ALPHA>.", S("\x41\xe2\x89\xa2\xce\x91\x2e"), UTF8_OK},
    {"RFC 3629 §7 example: Korean", S("\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4"), UTF8_OK},
    {"RFC 3629 §7 example: Japanese", S("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"), UTF8_OK},
    {"RFC 3629 §7 example: BOM + U+233B4", S("\xef\xbb\xbf\xf0\xa3\x8e\xb4"), UTF8_OK},

    {"overlong NUL C0 80", S("\xc0\x80"), UTF8_INVALID},
    {"overlong C1 BF", S("\xc1\xbf"), UTF8_INVALID},
    {"overlong '/' C0 AF", S("\xc0\xaf"), UTF8_INVALID},
    {"overlong 3-byte E0 80 80", S("\xe0\x80\x80"), UTF8_INVALID},
    {"overlong 3-byte E0 9F BF", S("\xe0\x9f\xbf"), UTF8_INVALID},
    {"overlong 4-byte F0 80 80 80", S("\xf0\x80\x80\x80"), UTF8_INVALID},
    {"overlong 4-byte F0 8F BF BF", S("\xf0\x8f\xbf\xbf"), UTF8_INVALID},
    {"surrogate U+D800", S("\xed\xa0\x80"), UTF8_INVALID},
    {"surrogate U+DFFF", S("\xed\xbf\xbf"), UTF8_INVALID},
    {"surrogate pair (CESU-8)", S("\xed\xa0\xbd\xed\xb8\x80"), UTF8_INVALID},
    {"U+110000", S("\xf4\x90\x80\x80"), UTF8_INVALID},
    {"F5 lead", S("\xf5\x80\x80\x80"), UTF8_INVALID},
    {"F7 lead", S("\xf7\xbf\xbf\xbf"), UTF8_INVALID},
    {"5-byte F8", S("\xf8\x88\x80\x80\x80"), UTF8_INVALID},
    {"6-byte FC", S("\xfc\x84\x80\x80\x80\x80"), UTF8_INVALID},
    {"FE", S("\xfe"), UTF8_INVALID},
    {"FF", S("\xff"), UTF8_INVALID},
    {"stray continuation 80", S("\x80"), UTF8_INVALID},
    {"stray continuation BF after ASCII", S("abc\xbf"), UTF8_INVALID},
    {"continuation after a complete 2-byte", S("\xc3\xa9\xa9"), UTF8_INVALID},
    {"2-byte lead then ASCII",
     S("\xc3"
       "A"),
     UTF8_INVALID},
    {"3-byte lead, cont, ASCII",
     S("\xe2\x82"
       "A"),
     UTF8_INVALID},
    {"4-byte lead then a new lead", S("\xf0\x9f\xf0\x9f\x98\x80"), UTF8_INVALID},
    {"invalid after valid", S("\xe2\x82\xac\xff"), UTF8_INVALID},
    {"invalid then valid",
     S("\xff"
       "abc"),
     UTF8_INVALID},

    {"2-byte, 1 of 2", S("\xc3"), UTF8_INCOMPLETE},
    {"3-byte, 2 of 3", S("\xe2\x82"), UTF8_INCOMPLETE},
    {"4-byte, 3 of 4", S("\xf0\x9f\x98"), UTF8_INCOMPLETE},
    {"E0 A0 (valid so far)", S("\xe0\xa0"), UTF8_INCOMPLETE},
    {"ED 9F (valid so far)", S("\xed\x9f"), UTF8_INCOMPLETE},
    {"F4 8F BF (valid so far)", S("\xf4\x8f\xbf"), UTF8_INCOMPLETE},
    {"ASCII then a lead", S("abcdefghijklmnop\xe2"), UTF8_INCOMPLETE},
};

static void
test_table(void)
{
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const struct utf8_case *c = &cases[t];
        enum utf8_result r = validate_once(c->bytes, c->len);

        CHECK(r == c->want);
        if (r != c->want)
            fprintf(stderr, "  %s: got %s, want %s\n", c->what, result_name(r), result_name(c->want));
        /* The reference agrees with the table, so the random comparison below means something. */
        CHECK(ref_validate((const uint8_t *)c->bytes, c->len) == c->want);
    }
}

/* Feed 'len' bytes in pieces ending at the given cut points; returns the last result. */
static enum utf8_result
validate_pieces(const uint8_t *buf, size_t len, const size_t *cuts, size_t ncuts, enum utf8_result *first)
{
    uint8_t state = UTF8_STATE_INIT;
    size_t pos = 0;
    enum utf8_result r = UTF8_OK;

    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        r = utf8_validate(&state, buf + pos, end - pos);
        if (i == 0 && first != NULL)
            *first = r;
        pos = end;
    }
    return r;
}

/* Every split of every table string into two calls gives the one-shot answer; a split
 * inside a valid multi-byte sequence is INCOMPLETE, then OK. */
static void
test_splits(void)
{
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const struct utf8_case *c = &cases[t];
        const uint8_t *b = (const uint8_t *)c->bytes;

        /* Both pieces non-empty: an empty call after INVALID is test_sticky_invalid()'s. */
        for (size_t k = 1; k < c->len; k++) {
            enum utf8_result first;
            enum utf8_result r = validate_pieces(b, c->len, &k, 1, &first);
            CHECK(r == c->want);
            if (r != c->want)
                fprintf(stderr, "  %s split at %zu: got %s\n", c->what, k, result_name(r));
            /* The first piece alone says what the reference says about it. */
            CHECK(first == ref_validate(b, k));
        }
        /* Byte at a time. */
        uint8_t state = UTF8_STATE_INIT;
        enum utf8_result r = c->len == 0 ? utf8_validate(&state, b, 0) : UTF8_OK;
        for (size_t i = 0; i < c->len; i++) {
            r = utf8_validate(&state, b + i, 1);
            if (r == UTF8_INVALID)
                break;
        }
        CHECK(r == c->want);
    }

    /* Each multi-byte code point split at each inner position: INCOMPLETE, then OK. */
    static const char *const seqs[] = {"\xc2\x80",         "\xdf\xbf",         "\xe0\xa0\x80",
                                       "\xe2\x82\xac",     "\xed\x9f\xbf",     "\xef\xbf\xbf",
                                       "\xf0\x90\x80\x80", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"};
    for (size_t s = 0; s < sizeof seqs / sizeof seqs[0]; s++) {
        const uint8_t *b = (const uint8_t *)seqs[s];
        size_t len = strlen(seqs[s]);
        for (size_t k = 1; k < len; k++) {
            uint8_t state = UTF8_STATE_INIT;
            CHECK(utf8_validate(&state, b, k) == UTF8_INCOMPLETE);
            CHECK(utf8_validate(&state, b + k, len - k) == UTF8_OK);
            CHECK(state == UTF8_STATE_INIT); /* back on a boundary */
        }
        /* An empty call in the middle changes nothing. */
        uint8_t state = UTF8_STATE_INIT;
        CHECK(utf8_validate(&state, b, 1) == UTF8_INCOMPLETE);
        CHECK(utf8_validate(&state, b + 1, 0) == UTF8_INCOMPLETE);
        CHECK(utf8_validate(&state, b + 1, len - 1) == UTF8_OK);
        /* A split sequence followed by ASCII instead of its continuation is invalid. */
        state = UTF8_STATE_INIT;
        CHECK(utf8_validate(&state, b, len - 1) == UTF8_INCOMPLETE);
        CHECK(utf8_validate(&state, (const uint8_t *)"abcdefghijkl", 12) == UTF8_INVALID);
    }
}

/* The 8-byte ASCII fast path: one non-ASCII byte at every position of a 16..40-byte
 * buffer, at every alignment. */
static void
test_fast_path(void)
{
    uint8_t mem[64 + 8];
    int bad = 0;

    for (size_t align = 0; align < 8; align++) {
        uint8_t *buf = mem + align;
        for (size_t len = 16; len <= 40; len += 8) {
            for (size_t p = 0; p < len; p++) {
                enum utf8_result r;

                /* a stray continuation byte */
                memset(buf, 'a', len);
                buf[p] = 0x80;
                if ((r = validate_once(buf, len)) != UTF8_INVALID) {
                    bad++;
                    fprintf(stderr, "  stray 80 at %zu of %zu (align %zu): %s\n", p, len, align,
                            result_name(r));
                }
                /* a byte never valid */
                buf[p] = 0xff;
                if ((r = validate_once(buf, len)) != UTF8_INVALID) {
                    bad++;
                    fprintf(stderr, "  FF at %zu of %zu (align %zu): %s\n", p, len, align, result_name(r));
                }
                /* a lead byte: incomplete at the end, invalid before ASCII */
                buf[p] = 0xc3;
                r = validate_once(buf, len);
                if (r != (p == len - 1 ? UTF8_INCOMPLETE : UTF8_INVALID)) {
                    bad++;
                    fprintf(stderr, "  C3 at %zu of %zu (align %zu): %s\n", p, len, align, result_name(r));
                }
                /* a whole 2-byte sequence starting here */
                if (p + 1 < len) {
                    buf[p + 1] = 0xa9;
                    if ((r = validate_once(buf, len)) != UTF8_OK) {
                        bad++;
                        fprintf(stderr, "  C3 A9 at %zu of %zu (align %zu): %s\n", p, len, align,
                                result_name(r));
                    }
                }
                /* a whole 4-byte sequence starting here */
                if (p + 3 < len) {
                    memcpy(buf + p, "\xf0\x9f\x98\x80", 4);
                    if ((r = validate_once(buf, len)) != UTF8_OK) {
                        bad++;
                        fprintf(stderr, "  U+1F600 at %zu of %zu (align %zu): %s\n", p, len, align,
                                result_name(r));
                    }
                }
            }
            /* all ASCII, and all ASCII after a split code point */
            memset(buf, 'a', len);
            if (validate_once(buf, len) != UTF8_OK)
                bad++;
            uint8_t state = UTF8_STATE_INIT;
            if (utf8_validate(&state, (const uint8_t *)"\xe2\x82", 2) != UTF8_INCOMPLETE ||
                utf8_validate(&state, buf, len) != UTF8_INVALID) {
                bad++;
                fprintf(stderr, "  ASCII after E2 82 (len %zu, align %zu) not invalid\n", len, align);
            }
        }
    }
    CHECK(bad == 0);

    /* Bytes 00..7F all pass the fast path. */
    uint8_t all[128];
    for (size_t i = 0; i < 128; i++)
        all[i] = (uint8_t)i;
    CHECK(validate_once(all, sizeof all) == UTF8_OK);
}

/* After UTF8_INVALID the state stays invalid, whatever follows. */
static void
test_sticky_invalid(void)
{
    static const char *const follow[] = {"", "a", "abcdefghijklmnop", "\xc3\xa9", "\x80"};

    for (size_t i = 0; i < sizeof follow / sizeof follow[0]; i++) {
        uint8_t state = UTF8_STATE_INIT;
        CHECK(utf8_validate(&state, (const uint8_t *)"ok\xff", 3) == UTF8_INVALID);
        for (int again = 0; again < 2; again++) {
            enum utf8_result r = utf8_validate(&state, (const uint8_t *)follow[i], strlen(follow[i]));
            CHECK(r == UTF8_INVALID);
            if (r != UTF8_INVALID)
                fprintf(stderr, "  after INVALID, %zu more bytes gave %s\n", strlen(follow[i]),
                        result_name(r));
        }
        CHECK(state != UTF8_STATE_INIT);
    }
}

/* Random strings built to hit the edges (boundary code points, truncations, stray bytes),
 * one-shot and split, against the reference. */
static size_t
random_string(uint8_t *out, size_t cap)
{
    static const uint32_t edges[] = {0x0,      0x7f,     0x80,     0x7ff,   0x800,   0xfff,    0x1000,
                                     0xd7ff,   0xd800,   0xdbff,   0xdc00,  0xdfff,  0xe000,   0xfffd,
                                     0xffff,   0x10000,  0x3ffff,  0x40000, 0xfffff, 0x100000, 0x10ffff,
                                     0x110000, 0x13ffff, 0x140000, 0x1fffff};
    size_t len = 0;
    size_t parts = prng() % 12;

    for (size_t p = 0; p < parts && len + 8 <= cap; p++) {
        uint32_t kind = prng() % 10;
        if (kind < 3) { /* ASCII run, long enough for the fast path */
            size_t n = prng() % 20;
            for (size_t i = 0; i < n && len < cap; i++)
                out[len++] = (uint8_t)(0x20 + prng() % 0x5f);
        } else if (kind < 5) { /* a random byte */
            out[len++] = (uint8_t)prng();
        } else { /* a code point, encoded in its own length or a wrong one, maybe truncated */
            uint32_t cp = kind < 7 ? edges[prng() % (sizeof edges / sizeof edges[0])] : prng() % 0x120000;
            unsigned width = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (prng() % 8 == 0 && width < 4)
                width++; /* overlong */
            uint8_t enc[4];
            if (width == 1) {
                enc[0] = (uint8_t)cp;
            } else {
                static const uint8_t lead[5] = {0, 0, 0xc0, 0xe0, 0xf0};
                for (unsigned i = width - 1; i > 0; i--, cp >>= 6)
                    enc[i] = (uint8_t)(0x80 | (cp & 0x3f));
                enc[0] = (uint8_t)(lead[width] | cp);
            }
            unsigned keep = prng() % 6 == 0 ? prng() % width : width;
            memcpy(out + len, enc, keep);
            len += keep;
        }
    }
    return len;
}

static void
test_random(void)
{
    uint8_t buf[200];
    int bad = 0;
    int counts[3] = {0, 0, 0};

    for (int round = 0; round < 5000; round++) {
        size_t len = random_string(buf, sizeof buf);
        enum utf8_result want = ref_validate(buf, len);
        enum utf8_result r = validate_once(buf, len);
        counts[want]++;
        if (r != want) {
            bad++;
            fprintf(stderr, "  random %d (%zu bytes): got %s, want %s:", round, len, result_name(r),
                    result_name(want));
            for (size_t i = 0; i < len; i++)
                fprintf(stderr, " %02x", buf[i]);
            fprintf(stderr, "\n");
            continue;
        }
        /* The same bytes in up to four non-empty pieces. */
        size_t cuts[3];
        size_t ncuts = len < 2 ? 0 : prng() % 4;
        for (size_t i = 0; i < ncuts; i++)
            cuts[i] = 1 + prng() % (len - 1);
        for (size_t i = 1; i < ncuts; i++) /* sort: insertion, three items */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t tmp = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = tmp;
            }
        size_t unique = 0;
        for (size_t i = 0; i < ncuts; i++)
            if (unique == 0 || cuts[unique - 1] != cuts[i])
                cuts[unique++] = cuts[i];
        ncuts = unique;
        r = validate_pieces(buf, len, cuts, ncuts, NULL);
        if (r != want) {
            bad++;
            fprintf(stderr, "  random %d in %zu pieces: got %s, want %s\n", round, ncuts + 1, result_name(r),
                    result_name(want));
        }
    }
    CHECK(bad == 0);
    /* The generator reaches all three answers often enough to mean something. */
    CHECK(counts[UTF8_OK] > 500 && counts[UTF8_INCOMPLETE] > 100 && counts[UTF8_INVALID] > 500);
}

static void
test_strings(void)
{
    CHECK(strcmp(utf8_result_str(UTF8_OK), utf8_result_str(UTF8_INVALID)) != 0);
    CHECK(strcmp(utf8_result_str(UTF8_INCOMPLETE), utf8_result_str(UTF8_INVALID)) != 0);
    CHECK(strcmp(utf8_result_str(UTF8_INCOMPLETE), "unknown") != 0);
}

/* ---- repair: each maximal ill-formed subpart becomes one U+FFFD ---- */

#define R UTF8_REPLACEMENT

static void
test_repair_vectors(void)
{
    static const struct {
        const char *in, *out;
    } repairs[] = {
        {"", ""},
        {"plain ascii", "plain ascii"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        /* Unicode §3.9, table 3-8: a, F1 80 80, E1 80, C2, b, 80, c, 80, BF, d */
        {"a\xf1\x80\x80\xe1\x80\xc2"
         "b\x80"
         "c\x80\xbf"
         "d",
         "a" R R R "b" R "c" R R "d"},
        {"\xed\xa0\x80", R R R}, /* a surrogate: ED then A0 is already wrong */
        {"\xf0\x80\x80", R R R}, /* overlong: F0 then 80 is wrong */
        {"\xc0\xaf", R R},       /* C0 is never valid */
        {"\xe0\x80", R R},
        {"\xf4\x90\x80\x80", R R R R}, /* above U+10FFFF */
        {"\xff\xfe", R R},
        {"x\xe2\x82", "x" R}, /* cut short at the end (final): one replacement */
        {"\xf0\x9f\x98", R},
        {"\xe2\x82"
         "x",
         R "x"}, /* cut short by an ASCII byte */
        {"\xe2\x82\xe2\x82\xac", R "\xe2\x82\xac"},
        {"\x80\x80\x80", R R R},                        /* lone continuation bytes, one each */
        {"abcdefghijklmnop\x80", "abcdefghijklmnop" R}, /* past the ASCII fast path */
    };
    uint8_t out[256];

    for (size_t i = 0; i < sizeof repairs / sizeof repairs[0]; i++) {
        size_t len = strlen(repairs[i].in), consumed = 99;
        size_t n = utf8_repair((const uint8_t *)repairs[i].in, len, true, out, &consumed);
        bool ok = n == strlen(repairs[i].out) && memcmp(out, repairs[i].out, n) == 0 && consumed == len;
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  repair case %zu: %zu bytes out\n", i, n);
        /* Measuring gives the same length as writing. */
        CHECK(utf8_repair((const uint8_t *)repairs[i].in, len, true, NULL, &consumed) == n);
    }
}

static void
test_valid_prefix(void)
{
    size_t bad = 99;

    CHECK(utf8_valid_prefix((const uint8_t *)"abc", 3, &bad) == 3 && bad == 0);
    CHECK(utf8_valid_prefix((const uint8_t *)"ab\xe2\x82", 4, &bad) == 2 && bad == 0);  /* cut short */
    CHECK(utf8_valid_prefix((const uint8_t *)"ab\xe2\x82x", 5, &bad) == 2 && bad == 2); /* broken */
    CHECK(utf8_valid_prefix((const uint8_t *)"ab\x80x", 4, &bad) == 2 && bad == 1);
    CHECK(utf8_valid_prefix((const uint8_t *)"\xf4\x90", 2, &bad) == 0 && bad == 1);
    CHECK(utf8_valid_prefix((const uint8_t *)"", 0, &bad) == 0 && bad == 0);
}

/* Random bytes: the output is always valid, valid input comes out unchanged, and repairing
 * in two pieces (the first not final) gives what repairing the whole does. */
static void
test_repair_properties(void)
{
    uint8_t in[64], out[3 * 64], whole[3 * 64];
    int bad_valid = 0, bad_split = 0, bad_same = 0;

    for (int iter = 0; iter < 20000; iter++) {
        size_t len = prng() % sizeof in;
        for (size_t i = 0; i < len; i++) {
            uint32_t r = prng();
            /* Mostly bytes that take part in sequences, so near-misses are common. */
            in[i] = (uint8_t)(r % 4 == 0 ? r >> 8
                                         : (r % 4 == 1 ? 0x80 | (r >> 8 & 0x3f) : 0xc0 | (r >> 8 & 0x3f)));
        }
        size_t consumed, n = utf8_repair(in, len, true, whole, &consumed);
        if (consumed != len || validate_once(whole, n) != UTF8_OK)
            bad_valid++;
        if (validate_once(in, len) == UTF8_OK && (n != len || memcmp(in, whole, len) != 0))
            bad_same++;
        size_t cut = len ? prng() % (len + 1) : 0, c1, c2;
        size_t n1 = utf8_repair(in, cut, false, out, &c1);
        size_t n2 = utf8_repair(in + c1, len - c1, true, out + n1, &c2);
        if (c1 + c2 != len || n1 + n2 != n || memcmp(out, whole, n) != 0)
            bad_split++;
    }
    CHECK(bad_valid == 0);
    CHECK(bad_same == 0);
    CHECK(bad_split == 0);
}

#undef R

int
main(void)
{
    test_table();
    test_splits();
    test_fast_path();
    test_sticky_invalid();
    test_random();
    test_strings();
    test_valid_prefix();
    test_repair_vectors();
    test_repair_properties();
    return check_report();
}
