/* base64.h - RFC 4648 base64 (standard alphabet, '=' padding): a one-shot encoder and an
 * incremental decoder for messages that arrive in pieces. Pure: no I/O, no allocation. */
#ifndef WSPLICE_BASE64_H
#define WSPLICE_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Characters base64_encode() writes for 'len' input bytes (padding included, no NUL). */
#define BASE64_ENCODED_LEN(len) ((((len) + 2) / 3) * 4)

/* Encode 'len' bytes into 'out', which must hold BASE64_ENCODED_LEN(len) bytes.
 * Returns the number of characters written. No NUL terminator is added. */
size_t base64_encode(const uint8_t *in, size_t len, char *out);

enum base64_result {
    BASE64_OK = 0,      /* input accepted */
    BASE64_BAD_CHAR,    /* a byte outside the alphabet (whitespace included) */
    BASE64_BAD_PADDING, /* '=' in the wrong place, data after padding, or a truncated quantum */
};

struct base64_decoder {
    uint32_t bits; /* sextets of the current quantum, oldest highest */
    uint8_t count; /* sextets (or pad characters) in the current quantum: 0..3 */
    uint8_t pads;  /* '=' seen in the current quantum */
    bool finished; /* a padded quantum ended the data: nothing may follow */
};

void base64_decoder_init(struct base64_decoder *dec);

/* Decode 'len' characters into 'out' (which must hold len / 4 * 3 + 3 bytes), continuing
 * the quantum left by earlier calls. '*out_len' is set to the bytes written, also on error. */
enum base64_result base64_decode_update(struct base64_decoder *dec, const uint8_t *in, size_t len,
                                        uint8_t *out, size_t *out_len);

/* End of input: BASE64_OK only if the data ended on a whole quantum. */
enum base64_result base64_decode_final(const struct base64_decoder *dec);

/* One-shot decode of exactly 'len' characters; same 'out' rule as base64_decode_update(). */
enum base64_result base64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t *out_len);

const char *base64_result_str(enum base64_result result);

#endif
