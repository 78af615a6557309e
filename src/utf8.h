/* utf8.h - incremental UTF-8 validation (RFC 3629, as RFC 6455 §8.1 requires).
 * Pure: no I/O, no allocation. It validates; it never decodes or repairs. */
#ifndef WSPLICE_UTF8_H
#define WSPLICE_UTF8_H

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

#endif
