/* fuzz_http_upgrade.c - the request-head parser and the handshake verdict. Every slice
 * it returns must lie inside the input, and an accepted request must yield an accept key. */
#include <stdint.h>
#include <stdlib.h>

#include "http_upgrade.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_slice(const struct http_slice *s, const char *buf, size_t len)
{
    if (s->ptr == NULL)
        return;
    if (s->ptr < buf || s->ptr + s->len > buf + len)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct http_request req;
    size_t max = 4096;
    enum http_parse_result r = http_upgrade_parse(buf, size, max, &req);

    (void)http_parse_result_str(r);
    if (r != HTTP_PARSE_OK)
        return 0;
    if (req.head_len == 0 || req.head_len > size || req.head_len > max)
        abort();
    check_slice(&req.method, buf, req.head_len);
    check_slice(&req.target, buf, req.head_len);
    check_slice(&req.path, buf, req.head_len);
    check_slice(&req.query, buf, req.head_len);
    check_slice(&req.host, buf, req.head_len);
    check_slice(&req.key, buf, req.head_len);
    check_slice(&req.origin, buf, req.head_len);
    enum http_upgrade_verdict v = http_upgrade_validate(&req);
    int status = http_upgrade_verdict_status(v);
    if (status < 101 || status > 599)
        abort();
    char reply[HTTP_REPLY_MAX];
    if (v == HTTP_UPGRADE_OK) {
        char accept[HTTP_ACCEPT_LEN + 1];
        if (http_upgrade_accept_key(req.key.ptr, req.key.len, accept) != 0)
            abort();
        if (http_upgrade_format_101(reply, accept, http_upgrade_choose_subprotocol(&req)) == 0)
            abort();
    } else if (http_upgrade_format_error(reply, status, http_upgrade_verdict_str(v), (unsigned)(size % 7)) == 0) {
        abort();
    }
    return 0;
}
