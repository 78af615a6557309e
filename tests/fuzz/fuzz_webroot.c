/* fuzz_webroot.c - the web root's path normaliser on any bytes: whatever it accepts must
 * be a plain relative path (no empty, "." or ".." segment, no leading or trailing '/', no
 * NUL, control byte or backslash) that fits its buffer, and normalising it again (with
 * '%' re-encoded) gives the same path. The date and entity-tag parsers run on it too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "webroot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_plain(const char *p, size_t n)
{
    if (n == 0)
        return;
    if (p[0] == '/' || p[n - 1] == '/')
        abort();
    size_t seg = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || p[i] == '/') {
            size_t len = i - seg;
            if (len == 0 || (len == 1 && p[seg] == '.') || (len == 2 && p[seg] == '.' && p[seg + 1] == '.'))
                abort();
            seg = i + 1;
            continue;
        }
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char out[512], again_in[3 * 512 + 2], again[512];
    size_t n, n2;
    bool dir, dir2;
    int64_t t;

    webroot_http_date_parse(in, size, &t);
    webroot_etag_matches(in, size, "\"1a-5f-0\"");
    webroot_content_type(in, size);
    if (webroot_path_normalize(in, size, out, sizeof out, &n, &dir) != WEBROOT_PATH_OK)
        return 0;
    if (n >= sizeof out || out[n] != '\0' || memchr(out, '\0', n) != NULL)
        abort();
    check_plain(out, n);
    size_t o = 0;
    again_in[o++] = '/';
    for (size_t i = 0; i < n; i++) {
        if (out[i] == '%') {
            memcpy(again_in + o, "%25", 3);
            o += 3;
        } else {
            again_in[o++] = out[i];
        }
    }
    if (dir)
        again_in[o++] = '/';
    if (webroot_path_normalize(again_in, o, again, sizeof again, &n2, &dir2) != WEBROOT_PATH_OK || n2 != n ||
        memcmp(again, out, n) != 0 || dir2 != dir)
        abort();
    return 0;
}
