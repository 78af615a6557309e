/* fuzz_ws_frame.c - the frame header parser, the unmasker and close payloads. Checks
 * invariants, not just survival: a parsed header fits the input and re-encodes to the
 * same length fields, and unmasking in pieces equals unmasking at once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ws_frame_header h;
    uint64_t max = size > 0 ? (uint64_t)data[0] << 12 : 125;
    enum ws_parse_result r = ws_frame_parse_header(data, size, max, &h);

    if (r == WS_PARSE_OK) {
        if (h.header_len > size || h.header_len < 6 || h.payload_len > max || !h.masked)
            abort();
        /* Every shorter prefix is incomplete or an early error, never OK. */
        struct ws_frame_header h2;
        for (size_t n = 0; n < h.header_len; n++)
            if (ws_frame_parse_header(data, n, max, &h2) == WS_PARSE_OK)
                abort();
        struct ws_message msg = {0};
        if (!(h.opcode & 0x8))
            (void)ws_message_add_frame(&msg, &h, max);
    }
    (void)ws_parse_result_str(r);

    /* Unmask the rest in two pieces and compare with a byte-at-a-time reference. */
    if (size > 5) {
        const uint8_t *key = data + 1;
        size_t n = size - 5;
        uint64_t offset = data[0] & 7;
        uint8_t *a = malloc(n + 1), *b = malloc(n + 1);
        if (a == NULL || b == NULL)
            abort();
        memcpy(a + 1, data + 5, n); /* +1: unaligned on purpose */
        memcpy(b, data + 5, n);
        size_t split = n > 0 ? data[5] % (n + 1) : 0;
        ws_frame_unmask(a + 1, split, key, offset);
        ws_frame_unmask(a + 1 + split, n - split, key, offset + split);
        for (size_t i = 0; i < n; i++)
            b[i] ^= key[(offset + i) & 3];
        if (memcmp(a + 1, b, n) != 0)
            abort();
        free(a);
        free(b);
    }

    uint16_t code = 0;
    if (size <= WS_MAX_CONTROL_PAYLOAD && ws_close_parse(data, size, &code) == WS_CLOSE_OK && size >= 2) {
        uint8_t frame[2 + WS_MAX_CONTROL_PAYLOAD];
        size_t len = ws_close_encode(frame, code, (const char *)data + 2, size - 2);
        if (len != 2 + size || memcmp(frame + 2, data, size) != 0)
            abort();
    }
    return 0;
}
