/* fuzz_utf8.c - the incremental validator against a plain reference decoder, with the
 * input split at a fuzzer-chosen point (code points cross the split); and the repair:
 * always valid output, and the same whether done whole or in two pieces. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reference: decode each sequence and check ranges (RFC 3629 §3-4). 1 valid, 0 invalid,
 * -1 valid but truncated at the end. */
static int
reference(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        uint32_t cp;
        size_t len;
        if (b < 0x80) {
            i++;
            continue;
        } else if (b >= 0xc2 && b <= 0xdf) {
            len = 2, cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
            len = 3, cp = b & 0x0f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            len = 4, cp = b & 0x07;
        } else {
            return 0;
        }
        for (size_t k = 1; k < len; k++) {
            if (i + k >= n) {
                /* Truncated: valid only if what is there could still become valid. */
                uint32_t lo = cp << (6 * (len - k));
                (void)lo;
                for (size_t j = 1; j < k; j++)
                    if ((s[i + j] & 0xc0) != 0x80)
                        return 0;
                /* Check the range constraint of the second byte when present. */
                if (k >= 2) {
                    uint8_t b1 = s[i + 1];
                    if ((b == 0xe0 && b1 < 0xa0) || (b == 0xed && b1 > 0x9f) || (b == 0xf0 && b1 < 0x90) ||
                        (b == 0xf4 && b1 > 0x8f))
                        return 0;
                }
                return -1;
            }
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = data[0] % size;
    const uint8_t *s = data + 1;
    size_t n = size - 1;
    if (split > n)
        split = n;
    uint8_t st = UTF8_STATE_INIT;
    enum utf8_result r = utf8_validate(&st, s, split);
    if (r != UTF8_INVALID)
        r = utf8_validate(&st, s + split, n - split);
    int want = reference(s, n);
    if ((want == 1 && r != UTF8_OK) || (want == 0 && r != UTF8_INVALID) || (want == -1 && r != UTF8_INCOMPLETE))
        abort();

    uint8_t *whole = malloc(3 * n + 1), *pieces = malloc(3 * n + 1);
    size_t c, c1, c2;
    size_t len = utf8_repair(s, n, true, whole, &c);
    st = UTF8_STATE_INIT;
    if (c != n || utf8_validate(&st, whole, len) != UTF8_OK || (want == 1 && (len != n || memcmp(whole, s, n))))
        abort();
    size_t l1 = utf8_repair(s, split, false, pieces, &c1);
    size_t l2 = utf8_repair(s + c1, n - c1, true, pieces + l1, &c2);
    if (c1 + c2 != n || l1 + l2 != len || memcmp(pieces, whole, len) != 0)
        abort();
    free(whole);
    free(pieces);
    return 0;
}
