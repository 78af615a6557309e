/* fuzz_base64.c - decode arbitrary text in two pieces and compare with one-shot decoding;
 * whatever decodes must re-encode to the same text; any bytes must round-trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *out1 = malloc(size + 6), *out2 = malloc(size + 6); /* also holds the round trip */
    char *enc = malloc(BASE64_ENCODED_LEN(size) + 1);
    size_t n1 = 0, n2a = 0, n2b = 0;
    if (out1 == NULL || out2 == NULL || enc == NULL)
        abort();

    enum base64_result r1 = base64_decode(data, size, out1, &n1);
    struct base64_decoder dec;
    size_t split = size > 0 ? data[0] % (size + 1) : 0;
    base64_decoder_init(&dec);
    enum base64_result r2 = base64_decode_update(&dec, data, split, out2, &n2a);
    if (r2 == BASE64_OK)
        r2 = base64_decode_update(&dec, data + split, size - split, out2 + n2a, &n2b);
    if (r2 == BASE64_OK)
        r2 = base64_decode_final(&dec);
    if ((r1 == BASE64_OK) != (r2 == BASE64_OK))
        abort();
    if (r1 == BASE64_OK) {
        if (n1 != n2a + n2b || memcmp(out1, out2, n1) != 0)
            abort();
        size_t e = base64_encode(out1, n1, enc);
        /* Canonical inputs re-encode exactly; others differ only in unused low bits. */
        if (e != size)
            abort();
    }
    size_t e = base64_encode(data, size, enc);
    if (base64_decode((const uint8_t *)enc, e, out1, &n1) != BASE64_OK || n1 != size ||
        (size > 0 && memcmp(out1, data, size) != 0))
        abort();
    free(out1);
    free(out2);
    free(enc);
    return 0;
}
