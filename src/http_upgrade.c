/* http_upgrade.c - RFC 6455 §4.2.1 request checks on top of a small, strict RFC 9112
 * request-head parser. It understands only what a WebSocket handshake needs; other
 * headers are checked for syntax and skipped. */
#include "http_upgrade.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "base64.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* RFC 9110 §5.6.2 tchar */
static bool
http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field value bytes: VCHAR, obs-text, SP and HTAB (RFC 9110 §5.5). */
static bool
http_is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool
http_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char
http_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool
http_name_is(const char *name, size_t len, const char *want)
{
    size_t wlen = strlen(want);

    if (len != wlen)
        return false;
    for (size_t i = 0; i < len; i++)
        if (http_lower(name[i]) != http_lower(want[i]))
            return false;
    return true;
}

bool
http_list_has_token(const char *value, size_t len, const char *token)
{
    size_t i = 0;

    while (i < len) {
        while (i < len && (http_is_ows(value[i]) || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        while (end > start && http_is_ows(value[end - 1]))
            end--;
        if (end > start && http_name_is(value + start, end - start, token))
            return true;
    }
    return false;
}

/* Find the end of the line starting at 'p': returns the offset of '\n' or -1. */
static long
http_find_lf(const char *p, size_t len)
{
    const char *lf = memchr(p, '\n', len);
    return lf ? (long)(lf - p) : -1;
}

/* Parse "METHOD SP target SP HTTP/d.d" (without the line end). */
static enum http_parse_result
http_parse_request_line(const char *line, size_t len, struct http_request *req)
{
    size_t i = 0;

    while (i < len && http_is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i >= len || line[i] != ' ')
        return HTTP_PARSE_BAD_REQUEST_LINE;
    req->method.ptr = line;
    req->method.len = i;
    size_t t = ++i;
    while (i < len && (unsigned char)line[i] > 0x20 && (unsigned char)line[i] < 0x7f)
        i++;
    if (i == t || i >= len || line[i] != ' ')
        return HTTP_PARSE_BAD_REQUEST_LINE;
    req->target.ptr = line + t;
    req->target.len = i - t;
    i++;
    if (len - i != 8 || memcmp(line + i, "HTTP/", 5) != 0 || line[i + 5] < '0' || line[i + 5] > '9' ||
        line[i + 6] != '.' || line[i + 7] < '0' || line[i + 7] > '9')
        return HTTP_PARSE_BAD_REQUEST_LINE;
    req->version_major = (unsigned)(line[i + 5] - '0');
    req->version_minor = (unsigned)(line[i + 7] - '0');

    const char *q = memchr(req->target.ptr, '?', req->target.len);
    req->path.ptr = req->target.ptr;
    req->path.len = q ? (size_t)(q - req->target.ptr) : req->target.len;
    if (q) {
        req->query.ptr = q + 1;
        req->query.len = req->target.len - req->path.len - 1;
    }
    return HTTP_PARSE_OK;
}

/* Is this partial first line still a plausible request line? Lets garbage fail fast. */
static bool
http_request_line_prefix_ok(const char *p, size_t len)
{
    size_t i = 0;

    while (i < len && http_is_tchar((unsigned char)p[i]))
        i++;
    if (i == len)
        return i <= 32; /* no method is that long */
    if (p[i] != ' ' || i == 0)
        return false;
    for (i++; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c != ' ' && c != '\r' && (c < 0x21 || c > 0x7e))
            return false;
    }
    return true;
}

static void
http_record_header(struct http_request *req, const char *name, size_t nlen, const char *val, size_t vlen)
{
    struct http_slice v = {val, vlen};

    if (http_name_is(name, nlen, "host")) {
        req->host = v;
        req->host_count++;
    } else if (http_name_is(name, nlen, "upgrade")) {
        req->has_upgrade = true;
        if (http_list_has_token(val, vlen, "websocket"))
            req->upgrade_websocket = true;
    } else if (http_name_is(name, nlen, "connection")) {
        if (http_list_has_token(val, vlen, "upgrade"))
            req->connection_upgrade = true;
        if (http_list_has_token(val, vlen, "close"))
            req->connection_close = true;
        if (http_list_has_token(val, vlen, "keep-alive"))
            req->connection_keep_alive = true;
    } else if (http_name_is(name, nlen, "sec-websocket-key")) {
        req->key = v;
        req->key_count++;
    } else if (http_name_is(name, nlen, "sec-websocket-version")) {
        req->ws_version = v;
        req->ws_version_count++;
    } else if (http_name_is(name, nlen, "sec-websocket-protocol")) {
        req->offers_protocols = true;
        if (http_list_has_token(val, vlen, "binary"))
            req->offers_binary = true;
        if (http_list_has_token(val, vlen, "base64"))
            req->offers_base64 = true;
    } else if (http_name_is(name, nlen, "origin")) {
        req->origin = v;
    } else if (http_name_is(name, nlen, "sec-websocket-extensions")) {
        req->extensions = v;
    } else if (http_name_is(name, nlen, "if-none-match")) {
        req->if_none_match = v;
    } else if (http_name_is(name, nlen, "if-modified-since")) {
        req->if_modified_since = v;
    } else if (http_name_is(name, nlen, "transfer-encoding")) {
        req->has_body = true; /* RFC 9112 §6.3: chunked or not, a body follows */
    } else if (http_name_is(name, nlen, "content-length")) {
        if (vlen != 1 || val[0] != '0')
            req->has_body = true; /* any other value, valid or not, means we cannot find the next head */
    }
}

/* Parse one header line (without its line end). */
static enum http_parse_result
http_parse_header_line(const char *line, size_t len, struct http_request *req)
{
    size_t i = 0;

    if (len > 0 && http_is_ows(line[0]))
        return HTTP_PARSE_BAD_HEADER; /* obs-fold is rejected (RFC 9112 §5.2) */
    while (i < len && http_is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || i >= len || line[i] != ':')
        return HTTP_PARSE_BAD_HEADER; /* includes whitespace before the colon (§5.1) */
    size_t nlen = i++;
    while (i < len && http_is_ows(line[i]))
        i++;
    size_t vstart = i;
    for (; i < len; i++)
        if (!http_is_value_char((unsigned char)line[i]))
            return HTTP_PARSE_BAD_HEADER;
    size_t vend = len;
    while (vend > vstart && http_is_ows(line[vend - 1]))
        vend--;
    http_record_header(req, line, nlen, line + vstart, vend - vstart);
    return HTTP_PARSE_OK;
}

enum http_parse_result
http_upgrade_parse(const char *buf, size_t len, size_t max_len, struct http_request *req)
{
    size_t pos = 0;
    bool first = true;
    enum http_parse_result r;

    memset(req, 0, sizeof *req);
    for (;;) {
        size_t avail = (len < max_len ? len : max_len) - pos;
        long lf = http_find_lf(buf + pos, avail);
        if (lf < 0) {
            if (first && !http_request_line_prefix_ok(buf + pos, avail))
                return HTTP_PARSE_BAD_REQUEST_LINE;
            return len >= max_len ? HTTP_PARSE_TOO_BIG : HTTP_PARSE_NEED_MORE;
        }
        size_t line_len = (size_t)lf;
        size_t next = pos + line_len + 1;
        if (line_len > 0 && buf[pos + line_len - 1] == '\r')
            line_len--;
        if (memchr(buf + pos, '\r', line_len) != NULL)
            return first ? HTTP_PARSE_BAD_REQUEST_LINE : HTTP_PARSE_BAD_HEADER;
        if (first) {
            r = http_parse_request_line(buf + pos, line_len, req);
            if (r != HTTP_PARSE_OK)
                return r;
            first = false;
        } else if (line_len == 0) {
            req->head_len = next;
            return HTTP_PARSE_OK;
        } else {
            r = http_parse_header_line(buf + pos, line_len, req);
            if (r != HTTP_PARSE_OK)
                return r;
        }
        pos = next;
    }
}

const char *
http_parse_result_str(enum http_parse_result result)
{
    switch (result) {
    case HTTP_PARSE_OK:
        return "ok";
    case HTTP_PARSE_NEED_MORE:
        return "incomplete request head";
    case HTTP_PARSE_TOO_BIG:
        return "request head too large";
    case HTTP_PARSE_BAD_REQUEST_LINE:
        return "malformed request line";
    case HTTP_PARSE_BAD_HEADER:
        return "malformed header line";
    }
    return "unknown";
}

/* A key is base64 of exactly 16 bytes: 22 characters and "==" (§4.1, item 7). */
static bool
http_key_is_valid(const struct http_slice *key)
{
    uint8_t raw[24];
    size_t raw_len = 0;

    if (key->len != 24)
        return false;
    if (base64_decode((const uint8_t *)key->ptr, key->len, raw, &raw_len) != BASE64_OK)
        return false;
    return raw_len == 16;
}

enum http_upgrade_verdict
http_upgrade_validate(const struct http_request *req)
{
    if (req->method.len != 3 || memcmp(req->method.ptr, "GET", 3) != 0)
        return HTTP_UPGRADE_NOT_GET; /* methods are case-sensitive (RFC 9110 §9.1) */
    if (req->version_major != 1 || req->version_minor < 1)
        return HTTP_UPGRADE_BAD_VERSION_HTTP;
    if (req->host_count != 1 || req->host.len == 0)
        return HTTP_UPGRADE_BAD_HOST;
    if (req->target.len == 0 || req->target.ptr[0] != '/')
        return HTTP_UPGRADE_BAD_TARGET;
    if (!req->has_upgrade && req->key_count == 0)
        return HTTP_UPGRADE_PLAIN_HTTP;
    if (!req->upgrade_websocket)
        return HTTP_UPGRADE_BAD_UPGRADE;
    if (!req->connection_upgrade)
        return HTTP_UPGRADE_BAD_CONNECTION;
    if (req->key_count != 1 || !http_key_is_valid(&req->key))
        return HTTP_UPGRADE_BAD_KEY;
    if (req->ws_version_count != 1 || req->ws_version.len != 2 || memcmp(req->ws_version.ptr, "13", 2) != 0)
        return HTTP_UPGRADE_BAD_WS_VERSION;
    return HTTP_UPGRADE_OK;
}

int
http_upgrade_verdict_status(enum http_upgrade_verdict verdict)
{
    switch (verdict) {
    case HTTP_UPGRADE_OK:
        return 101;
    case HTTP_UPGRADE_NOT_GET:
        return 405;
    case HTTP_UPGRADE_PLAIN_HTTP:
    case HTTP_UPGRADE_BAD_WS_VERSION:
        return 426;
    case HTTP_UPGRADE_BAD_VERSION_HTTP:
    case HTTP_UPGRADE_BAD_HOST:
    case HTTP_UPGRADE_BAD_UPGRADE:
    case HTTP_UPGRADE_BAD_CONNECTION:
    case HTTP_UPGRADE_BAD_KEY:
    case HTTP_UPGRADE_BAD_TARGET:
        return 400;
    }
    return 400;
}

const char *
http_upgrade_verdict_str(enum http_upgrade_verdict verdict)
{
    switch (verdict) {
    case HTTP_UPGRADE_OK:
        return "ok";
    case HTTP_UPGRADE_NOT_GET:
        return "only GET can open a WebSocket";
    case HTTP_UPGRADE_BAD_VERSION_HTTP:
        return "HTTP/1.1 or later is required";
    case HTTP_UPGRADE_BAD_HOST:
        return "exactly one Host header is required";
    case HTTP_UPGRADE_PLAIN_HTTP:
        return "this port serves WebSocket connections only";
    case HTTP_UPGRADE_BAD_UPGRADE:
        return "Upgrade header must be websocket";
    case HTTP_UPGRADE_BAD_CONNECTION:
        return "Connection header must include Upgrade";
    case HTTP_UPGRADE_BAD_KEY:
        return "Sec-WebSocket-Key must be base64 of 16 bytes";
    case HTTP_UPGRADE_BAD_WS_VERSION:
        return "Sec-WebSocket-Version must be 13";
    case HTTP_UPGRADE_BAD_TARGET:
        return "request target must be a path";
    }
    return "unknown";
}

enum http_subprotocol
http_upgrade_choose_subprotocol(const struct http_request *req)
{
    if (req->offers_binary)
        return HTTP_SUBPROTOCOL_BINARY;
    if (req->offers_base64)
        return HTTP_SUBPROTOCOL_BASE64;
    return HTTP_SUBPROTOCOL_NONE;
}

const char *
http_subprotocol_str(enum http_subprotocol proto)
{
    switch (proto) {
    case HTTP_SUBPROTOCOL_NONE:
        return "none";
    case HTTP_SUBPROTOCOL_BINARY:
        return "binary";
    case HTTP_SUBPROTOCOL_BASE64:
        return "base64";
    }
    return "unknown";
}

int
http_upgrade_accept_key(const char *key, size_t key_len, char out[HTTP_ACCEPT_LEN + 1])
{
    char input[64 + sizeof WS_GUID];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (key_len > 64)
        return -1;
    memcpy(input, key, key_len);
    memcpy(input + key_len, WS_GUID, sizeof WS_GUID - 1);
    if (EVP_Digest(input, key_len + sizeof WS_GUID - 1, md, &md_len, EVP_sha1(), NULL) != 1 || md_len != 20)
        return -1;
    out[base64_encode(md, md_len, out)] = '\0';
    return 0;
}

size_t
http_upgrade_format_101(char *out, const char *accept, enum http_subprotocol proto)
{
    int n = snprintf(out, HTTP_REPLY_MAX,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s%s%s"
                     "\r\n",
                     accept, proto == HTTP_SUBPROTOCOL_NONE ? "" : "Sec-WebSocket-Protocol: ",
                     proto == HTTP_SUBPROTOCOL_NONE ? "" : http_subprotocol_str(proto),
                     proto == HTTP_SUBPROTOCOL_NONE ? "" : "\r\n");
    return n < 0 ? 0 : (size_t)n;
}

const char *
http_status_phrase(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 301:
        return "Moved Permanently";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Error";
}

size_t
http_upgrade_format_error(char *out, int status, const char *reason, unsigned retry_after_s)
{
    const char *extra = "";
    char retry[40] = "";
    int body_len = (int)strnlen(reason, 256);

    if (status == 426)
        extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    else if (status == 405)
        extra = "Allow: GET\r\n";
    if (retry_after_s > 0) /* RFC 9110 §10.2.3: delay-seconds */
        snprintf(retry, sizeof retry, "Retry-After: %u\r\n", retry_after_s);
    int n = snprintf(out, HTTP_REPLY_MAX,
                     "HTTP/1.1 %d %s\r\n"
                     "%s%s"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\n"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n"
                     "\r\n"
                     "%.*s\n",
                     status, http_status_phrase(status), extra, retry, body_len + 1, body_len, reason);
    if (n < 0)
        return 0;
    return (size_t)n < HTTP_REPLY_MAX ? (size_t)n : HTTP_REPLY_MAX - 1;
}
