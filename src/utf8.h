/* utf8.h - incremental UTF-8 validation (RFC 3629, as RFC 6455 §8.1 requires), and the
 * repair of untrusted bytes into valid text. Pure: no I/O, no allocation. Not a decoder. */
#ifndef WSPLICE_UTF8_H
#define WSPLICE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum utf8_result {
    UTF8_OK = 0,     /* everything so far is valid and ends on a code point boundary */
    UTF8_INCOMPLETE, /* valid so far, but ends inside a code point: feed more bytes */
    UTF8_INVALID,    /* an invalid sequence (overlong, surrogate, > U+10FFFF, stray byte) */
};

#define UTF8_STATE_INIT 0

/* Validate 'len' bytes of 'buf', continuing from '*state' (start with UTF8_STATE_INIT).
 * A code point may be split across calls. '*state' is updated; after UTF8_INVALID it
 * stays invalid. The caller decides at the end of a message whether INCOMPLETE is an error. */
enum utf8_result utf8_validate(uint8_t *state, const uint8_t *buf, size_t len);

const char *utf8_result_str(enum utf8_result result);

/* The length of the longest prefix of 'buf' that is valid UTF-8 and ends on a code point
 * boundary. When it is shorter than 'len', '*bad_len' tells what follows it: the length
 * of the maximal ill-formed subpart there (at least 1; Unicode §3.9, as the WHATWG decoder
 * counts them), or 0 when the rest is the valid start of a sequence that 'len' cut short. */
size_t utf8_valid_prefix(const uint8_t *buf, size_t len, size_t *bad_len);

#define UTF8_REPLACEMENT     "\xef\xbf\xbd" /* U+FFFD */
#define UTF8_REPLACEMENT_LEN 3

/* Copy 'len' bytes of 'in' into 'out' as valid UTF-8: each maximal ill-formed subpart
 * becomes one U+FFFD. A sequence cut short at the end is replaced too when 'final';
 * otherwise it is left out, for the caller to complete with more bytes. '*consumed' gets
 * the input bytes used. 'out' needs up to UTF8_REPLACEMENT_LEN * len bytes; with 'out'
 * NULL nothing is written. Returns the output length. */
size_t utf8_repair(const uint8_t *in, size_t len, bool final, uint8_t *out, size_t *consumed);

#endif
