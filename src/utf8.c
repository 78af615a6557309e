/* utf8.c - incremental UTF-8 validator: a byte-class table and a small state machine,
 * with an 8-bytes-at-a-time fast path over ASCII; the same machine finds where bytes stop
 * being valid, to repair them. Not a decoder. */
#include "utf8.h"

#include <string.h>

/* Byte classes. Continuation bytes are split by the ranges the lead bytes
 * E0, ED, F0 and F4 allow next (RFC 3629 §4). */
enum {
    C_ASCII,   /* 00..7F */
    C_CONT_LO, /* 80..8F */
    C_CONT_MI, /* 90..9F */
    C_CONT_HI, /* A0..BF */
    C_BAD,     /* C0, C1, F5..FF: never valid */
    C_LEAD2,   /* C2..DF */
    C_E0,      /* E0: next must be A0..BF (no overlongs) */
    C_LEAD3,   /* E1..EC, EE, EF */
    C_ED,      /* ED: next must be 80..9F (no surrogates) */
    C_F0,      /* F0: next must be 90..BF (no overlongs) */
    C_LEAD4,   /* F1..F3 */
    C_F4,      /* F4: next must be 80..8F (nothing above U+10FFFF) */
    C_COUNT
};

/* States: how many continuation bytes remain, and which range the next one needs. */
enum {
    S_ACCEPT = UTF8_STATE_INIT,
    S_NEED1, /* one more 80..BF */
    S_NEED2, /* two more 80..BF */
    S_NEED3, /* three more 80..BF */
    S_E0,    /* A0..BF, then one more */
    S_ED,    /* 80..9F, then one more */
    S_F0,    /* 90..BF, then two more */
    S_F4,    /* 80..8F, then two more */
    S_REJECT,
    S_COUNT
};

/* Byte -> class, spelled out so the table is constant. */
#define Ca C_ASCII
#define Cl C_CONT_LO
#define Cm C_CONT_MI
#define Ch C_CONT_HI
#define Cx C_BAD
#define C2 C_LEAD2
#define Ce C_E0
#define Cd C_ED
#define C3 C_LEAD3
#define Cf C_F0
#define C4 C_LEAD4
#define Cg C_F4
static const uint8_t class_table[256] = {
    Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, /* 00..0F */
    Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, /* 10..1F */
    Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, /* 20..2F */
    Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, /* 30..3F */
    Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, /* 40..4F */
    Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, /* 50..5F */
    Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, /* 60..6F */
    Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, Ca, /* 70..7F */
    Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, Cl, /* 80..8F */
    Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, Cm, /* 90..9F */
    Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, /* A0..AF */
    Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, Ch, /* B0..BF */
    Cx, Cx, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, /* C0..CF */
    C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, C2, /* D0..DF */
    Ce, C3, C3, C3, C3, C3, C3, C3, C3, C3, C3, C3, C3, Cd, C3, C3, /* E0..EF */
    Cf, C4, C4, C4, Cg, Cx, Cx, Cx, Cx, Cx, Cx, Cx, Cx, Cx, Cx, Cx, /* F0..FF */
};
#undef Ca
#undef Cl
#undef Cm
#undef Ch
#undef Cx
#undef C2
#undef Ce
#undef Cd
#undef C3
#undef Cf
#undef C4
#undef Cg

#define R S_REJECT
static const uint8_t transitions[S_COUNT][C_COUNT] = {
    /*            ASCII     CONT_LO  CONT_MI  CONT_HI  BAD LEAD2    E0    LEAD3    ED    F0    LEAD4    F4 */
    [S_ACCEPT] = {S_ACCEPT, R, R, R, R, S_NEED1, S_E0, S_NEED2, S_ED, S_F0, S_NEED3, S_F4},
    [S_NEED1] = {R, S_ACCEPT, S_ACCEPT, S_ACCEPT, R, R, R, R, R, R, R, R},
    [S_NEED2] = {R, S_NEED1, S_NEED1, S_NEED1, R, R, R, R, R, R, R, R},
    [S_NEED3] = {R, S_NEED2, S_NEED2, S_NEED2, R, R, R, R, R, R, R, R},
    [S_E0] = {R, R, R, S_NEED1, R, R, R, R, R, R, R, R},
    [S_ED] = {R, S_NEED1, S_NEED1, R, R, R, R, R, R, R, R, R},
    [S_F0] = {R, R, S_NEED2, S_NEED2, R, R, R, R, R, R, R, R},
    [S_F4] = {R, S_NEED2, R, R, R, R, R, R, R, R, R, R},
    [S_REJECT] = {R, R, R, R, R, R, R, R, R, R, R, R},
};
#undef R

/* Skip whole words of ASCII from 'i'. */
static size_t
utf8_skip_ascii(const uint8_t *buf, size_t len, size_t i)
{
    while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, buf + i, sizeof w);
        if (w & UINT64_C(0x8080808080808080))
            break;
        i += 8;
    }
    return i;
}

/* Run the machine from state 'st' over buf[*pos..len) until the end or a rejected byte,
 * which '*pos' is left at. '*seq_start' gets where the last sequence began. Returns the
 * state reached. */
static uint8_t
utf8_run(uint8_t st, const uint8_t *buf, size_t len, size_t *pos, size_t *seq_start)
{
    size_t i = *pos;

    while (i < len) {
        if (st == S_ACCEPT) {
            i = utf8_skip_ascii(buf, len, i);
            *seq_start = i;
            if (i == len)
                break;
        }
        st = transitions[st][class_table[buf[i]]];
        if (st == S_REJECT)
            break;
        i++;
    }
    *pos = i;
    return st;
}

enum utf8_result
utf8_validate(uint8_t *state, const uint8_t *buf, size_t len)
{
    size_t pos = 0, start = 0;
    uint8_t st = *state == S_REJECT ? S_REJECT : utf8_run(*state, buf, len, &pos, &start);

    *state = st;
    if (st == S_REJECT)
        return UTF8_INVALID; /* here, or an earlier call saw an invalid sequence */
    return st == S_ACCEPT ? UTF8_OK : UTF8_INCOMPLETE;
}

size_t
utf8_valid_prefix(const uint8_t *buf, size_t len, size_t *bad_len)
{
    size_t pos = 0, start = 0;
    uint8_t st = utf8_run(S_ACCEPT, buf, len, &pos, &start);

    *bad_len = 0;
    if (st == S_REJECT) {
        /* The sequence's bytes that could still have been valid form the subpart; the
         * byte that broke it may start the next sequence. A lone bad byte is its own. */
        *bad_len = pos > start ? pos - start : 1;
        return start;
    }
    return st == S_ACCEPT ? len : start;
}

size_t
utf8_repair(const uint8_t *in, size_t len, bool final, uint8_t *out, size_t *consumed)
{
    size_t i = 0, o = 0;

    while (i < len) {
        size_t bad, ok = utf8_valid_prefix(in + i, len - i, &bad);
        if (out != NULL)
            memcpy(out + o, in + i, ok);
        i += ok;
        o += ok;
        if (i == len)
            break;
        if (bad == 0) { /* cut short by the end */
            if (!final)
                break;
            bad = len - i;
        }
        if (out != NULL)
            memcpy(out + o, UTF8_REPLACEMENT, UTF8_REPLACEMENT_LEN);
        o += UTF8_REPLACEMENT_LEN;
        i += bad;
    }
    *consumed = i;
    return o;
}

const char *
utf8_result_str(enum utf8_result result)
{
    switch (result) {
    case UTF8_OK:
        return "valid";
    case UTF8_INCOMPLETE:
        return "truncated code point";
    case UTF8_INVALID:
        return "invalid UTF-8";
    }
    return "unknown";
}
