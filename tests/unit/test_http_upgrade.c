/* test_http_upgrade.c - the opening handshake (RFC 6455 §4.2.1): request-head parsing and
 * its slices, every truncation, garbage and malformed headers, the verdicts and their
 * statuses, subprotocol choice, Sec-WebSocket-Accept, and the 101 and error replies. */
#include "http_upgrade.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"

#define MAX_HEAD 16384

static bool
slice_is(struct http_slice s, const char *want)
{
    if (want == NULL)
        return s.ptr == NULL;
    return s.ptr != NULL && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static const char *
parse_name(enum http_parse_result r)
{
    switch (r) {
    case HTTP_PARSE_OK:
        return "OK";
    case HTTP_PARSE_NEED_MORE:
        return "NEED_MORE";
    case HTTP_PARSE_TOO_BIG:
        return "TOO_BIG";
    case HTTP_PARSE_BAD_REQUEST_LINE:
        return "BAD_REQUEST_LINE";
    case HTTP_PARSE_BAD_HEADER:
        return "BAD_HEADER";
    }
    return "?";
}

/* Parse from a heap copy of exactly 'len' bytes, so ASan catches a read past the end. */
static enum http_parse_result
parse_exact(const char *text, size_t len, size_t max_len, struct http_request *req, char **copy)
{
    char *buf = malloc(len ? len : 1);
    enum http_parse_result r;

    if (buf == NULL)
        return HTTP_PARSE_TOO_BIG;
    memcpy(buf, text, len);
    r = http_upgrade_parse(buf, len, max_len, req);
    if (copy != NULL)
        *copy = buf; /* the slices point into it; the caller frees */
    else
        free(buf);
    return r;
}

/* ---- a complete request ---- */

/* RFC 6455 §1.3's key, with everything a browser sends that we look at */
static const char full_request[] = "GET /websockify?token=abc&x=1 HTTP/1.1\r\n"
                                   "Host: example.com:6080\r\n"
                                   "User-Agent: test/1.0\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n"
                                   "Origin: http://example.com\r\n"
                                   "Sec-WebSocket-Protocol: binary, base64\r\n"
                                   "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                                   "\r\n";

/* The same with bare LF line ends (RFC 9112 §2.2 allows a recipient to accept them) */
static const char full_request_lf[] = "GET /websockify?token=abc&x=1 HTTP/1.1\n"
                                      "Host: example.com:6080\n"
                                      "User-Agent: test/1.0\n"
                                      "Upgrade: websocket\n"
                                      "Connection: Upgrade\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
                                      "Sec-WebSocket-Version: 13\n"
                                      "Origin: http://example.com\n"
                                      "Sec-WebSocket-Protocol: binary, base64\n"
                                      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\n"
                                      "\n";

/* Line ends mixed, and a blank line of bare LF after CRLF headers */
static const char full_request_mixed[] =
    "GET /websockify?token=abc&x=1 HTTP/1.1\r\n"
    "Host: example.com:6080\n"
    "User-Agent: test/1.0\r\n"
    "Upgrade: websocket\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Origin: http://example.com\n"
    "Sec-WebSocket-Protocol: binary, base64\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "\n";

static void
check_full_request(const char *text, size_t len)
{
    struct http_request req;
    char *buf;

    CHECK(parse_exact(text, len, MAX_HEAD, &req, &buf) == HTTP_PARSE_OK);
    CHECK(req.head_len == len);
    CHECK(slice_is(req.method, "GET"));
    CHECK(slice_is(req.target, "/websockify?token=abc&x=1"));
    CHECK(slice_is(req.path, "/websockify"));
    CHECK(slice_is(req.query, "token=abc&x=1"));
    CHECK(req.version_major == 1 && req.version_minor == 1);
    CHECK(slice_is(req.host, "example.com:6080"));
    CHECK(slice_is(req.key, "dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK(slice_is(req.ws_version, "13"));
    CHECK(slice_is(req.origin, "http://example.com"));
    CHECK(slice_is(req.extensions, "permessage-deflate; client_max_window_bits"));
    CHECK(req.host_count == 1 && req.key_count == 1 && req.ws_version_count == 1);
    CHECK(req.has_upgrade && req.upgrade_websocket && req.connection_upgrade);
    CHECK(req.offers_protocols && req.offers_binary && req.offers_base64);
    /* Slices borrow the caller's buffer: no copies. */
    CHECK(req.method.ptr == buf);
    CHECK(req.path.ptr == buf + 4);
    CHECK(req.key.ptr > buf && req.key.ptr + req.key.len < buf + len);
    CHECK(http_upgrade_validate(&req) == HTTP_UPGRADE_OK);
    CHECK(http_upgrade_choose_subprotocol(&req) == HTTP_SUBPROTOCOL_BINARY);
    free(buf);

    /* Every truncation needs more. */
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        enum http_parse_result r = parse_exact(text, n, MAX_HEAD, &req, NULL);
        if (r != HTTP_PARSE_NEED_MORE) {
            bad++;
            fprintf(stderr, "  truncated to %zu bytes: %s\n", n, parse_name(r));
        }
    }
    CHECK(bad == 0);

    /* Bytes after the head (a first frame sent eagerly) are not part of it. */
    char *more = malloc(len + 6);
    if (more != NULL) {
        memcpy(more, text, len);
        memcpy(more + len, "\x81\x85\x37\xfa\x21\x3d", 6);
        CHECK(http_upgrade_parse(more, len + 6, MAX_HEAD, &req) == HTTP_PARSE_OK);
        CHECK(req.head_len == len);
        /* ... nor count against max_len when the head itself fits */
        CHECK(http_upgrade_parse(more, len + 6, len, &req) == HTTP_PARSE_OK);
        CHECK(req.head_len == len);
        free(more);
    }

    /* max_len: the head may be exactly max_len; one byte less is too big. */
    CHECK(parse_exact(text, len, len, &req, NULL) == HTTP_PARSE_OK);
    CHECK(parse_exact(text, len, len - 1, &req, NULL) == HTTP_PARSE_TOO_BIG);
    CHECK(parse_exact(text, len, 64, &req, NULL) == HTTP_PARSE_TOO_BIG);
    /* A truncation shorter than max_len still needs more, but max_len bytes without the
     * end can never become a head that fits: waiting would stall a reader that stops at
     * max_len. */
    CHECK(parse_exact(text, 63, 64, &req, NULL) == HTTP_PARSE_NEED_MORE);
    CHECK(parse_exact(text, 64, 64, &req, NULL) == HTTP_PARSE_TOO_BIG);
}

static void
test_full_request(void)
{
    check_full_request(full_request, sizeof full_request - 1);
    check_full_request(full_request_lf, sizeof full_request_lf - 1);
    check_full_request(full_request_mixed, sizeof full_request_mixed - 1);

    /* Minimal request: no query (query.ptr NULL), an empty query, no Origin. */
    struct http_request req;
    static const char minimal[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK(parse_exact(minimal, sizeof minimal - 1, MAX_HEAD, &req, NULL) == HTTP_PARSE_OK);
    CHECK(req.query.ptr == NULL);
    CHECK(req.origin.ptr == NULL);
    CHECK(req.key.ptr == NULL && req.key_count == 0);
    CHECK(!req.has_upgrade && !req.offers_protocols);
    static const char empty_query[] = "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n";
    char *buf;
    CHECK(parse_exact(empty_query, sizeof empty_query - 1, MAX_HEAD, &req, &buf) == HTTP_PARSE_OK);
    CHECK(slice_is(req.path, "/a"));
    CHECK(req.query.ptr != NULL && req.query.len == 0);
    free(buf);

    /* Header values: OWS trimmed on both sides, tabs included; empty values allowed;
     * obs-text (UTF-8) allowed. */
    static const char spaced[] = "GET /x HTTP/1.1\r\n"
                                 "Host:\t  example.com \t\r\n"
                                 "X-Empty:\r\n"
                                 "X-Utf8: caf\xc3\xa9\r\n"
                                 "ORIGIN:https://a.example\r\n"
                                 "\r\n";
    CHECK(parse_exact(spaced, sizeof spaced - 1, MAX_HEAD, &req, &buf) == HTTP_PARSE_OK);
    CHECK(slice_is(req.host, "example.com"));
    CHECK(slice_is(req.origin, "https://a.example"));
    free(buf);

    /* An over-long head without a blank line is too big once max_len bytes are there. */
    char big[600];
    memcpy(big, "GET / HTTP/1.1\r\nX-Pad: ", 23);
    memset(big + 23, 'a', sizeof big - 23);
    CHECK(parse_exact(big, sizeof big, 512, &req, NULL) == HTTP_PARSE_TOO_BIG);
    CHECK(parse_exact(big, 511, 512, &req, NULL) == HTTP_PARSE_NEED_MORE);
    /* ... and so is one long request line. */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'p', sizeof big - 5);
    CHECK(parse_exact(big, sizeof big, 512, &req, NULL) == HTTP_PARSE_TOO_BIG);
}

/* ---- garbage and malformed heads ---- */

struct bad_head {
    const char *what;
    const char *text;
    size_t len;
    enum http_parse_result want;
    size_t visible_at; /* the error shows once this many bytes are there; 0: only when complete */
};

#define S(lit)   lit, sizeof lit - 1
#define REQ_HEAD "GET / HTTP/1.1\r\nHost: example.com\r\n"

static const struct bad_head bad_heads[] = {
    /* A TLS ClientHello sent to a plain listener: record type 0x16, version 3.1, ... */
    {"TLS ClientHello",
     S("\x16\x03\x01\x02\x00" /* handshake record, TLS 1.0, length 512 */
       "\x01\x00\x01\xfc"     /* ClientHello, length 508 */
       "\x03\x03"),           /* client_version TLS 1.2 */
     HTTP_PARSE_BAD_REQUEST_LINE, 1},
    {"binary zeros", S("\x00\x00\x00\x00"), HTTP_PARSE_BAD_REQUEST_LINE, 1},
    {"method then a control byte", S("GET\x01/ HTTP/1.1"), HTTP_PARSE_BAD_REQUEST_LINE, 4},
    {"control byte in the target",
     S("GET /a\x01"
       "b HTTP/1.1\r\n"),
     HTTP_PARSE_BAD_REQUEST_LINE, 7},
    {"byte 0x80 in the target", S("GET /\x80 HTTP/1.1\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 6},
    {"leading space", S(" GET / HTTP/1.1\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 1},
    {"SSH banner", S("SSH-2.0-OpenSSH_9.2\r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"HTTP/0.9 request line", S("GET /\r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"two spaces", S("GET  / HTTP/1.1\r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"no version", S("GET / \r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"lower-case protocol", S("GET / http/1.1\r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"version without a dot", S("GET / HTTP/11\r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"two-digit version", S("GET / HTTP/1.10\r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"trailing space", S("GET / HTTP/1.1 \r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"bare CR in the request line", S("GET /\r HTTP/1.1\r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},
    {"no target", S("GET HTTP/1.1\r\n\r\n"), HTTP_PARSE_BAD_REQUEST_LINE, 0},

    {"space before the colon", S(REQ_HEAD "Upgrade : websocket\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"tab before the colon", S(REQ_HEAD "Upgrade\t: websocket\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"obs-fold (space)", S(REQ_HEAD "X-A: 1\r\n 2\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"obs-fold (tab)", S(REQ_HEAD "X-A: 1\r\n\t2\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"control byte in a value",
     S(REQ_HEAD "X-A: a\x01"
                "b\r\n\r\n"),
     HTTP_PARSE_BAD_HEADER, 0},
    {"ESC in a value", S(REQ_HEAD "X-A: \x1b[31m\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"DEL in a value", S(REQ_HEAD "X-A: a\x7f\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"NUL in a value", S(REQ_HEAD "X-A: a\0b\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"bare CR in a value", S(REQ_HEAD "X-A: a\rb\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"no colon", S(REQ_HEAD "NoColonHere\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"empty name", S(REQ_HEAD ": value\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"space in the name", S(REQ_HEAD "X A: b\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"non-token byte in the name", S(REQ_HEAD "X(A): b\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
    {"CR CR LF", S(REQ_HEAD "X-A: b\r\r\n\r\n"), HTTP_PARSE_BAD_HEADER, 0},
};

static void
test_bad_heads(void)
{
    for (size_t t = 0; t < sizeof bad_heads / sizeof bad_heads[0]; t++) {
        const struct bad_head *b = &bad_heads[t];
        struct http_request req;
        enum http_parse_result r = parse_exact(b->text, b->len, MAX_HEAD, &req, NULL);

        CHECK(r == b->want);
        if (r != b->want)
            fprintf(stderr, "  %s: got %s, want %s\n", b->what, parse_name(r), parse_name(b->want));
        /* Garbage is rejected before the head is complete, from the first byte that shows it. */
        if (b->visible_at > 0) {
            for (size_t n = b->visible_at; n < b->len; n++) {
                r = parse_exact(b->text, n, MAX_HEAD, &req, NULL);
                CHECK(r == b->want);
                if (r != b->want)
                    fprintf(stderr, "  %s, first %zu bytes: got %s\n", b->what, n, parse_name(r));
            }
        }
    }

    /* The contract's own examples of garbage, fed one more byte at a time: a TLS record
     * never waits for a line end. */
    static const uint8_t hello[] = {
        0x16,             /* TLS record: handshake */
        0x03, 0x01,       /* version TLS 1.0 */
        0x00, 0xa5,       /* record length */
        0x01,             /* ClientHello */
        0x00, 0x00, 0xa1, /* handshake length */
        0x03, 0x03,       /* client_version TLS 1.2 */
    };
    struct http_request req;
    for (size_t n = 1; n <= sizeof hello; n++)
        CHECK(parse_exact((const char *)hello, n, MAX_HEAD, &req, NULL) == HTTP_PARSE_BAD_REQUEST_LINE);
    /* Garbage beats the size limit. */
    CHECK(parse_exact((const char *)hello, sizeof hello, 4, &req, NULL) == HTTP_PARSE_BAD_REQUEST_LINE);
}

/* ---- verdicts ---- */

struct verdict_case {
    const char *what;
    const char *text;
    enum http_upgrade_verdict want;
};

#define KEY          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define VER          "Sec-WebSocket-Version: 13\r\n"
#define UPG          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
#define HOST         "Host: example.com\r\n"
#define GOOD_HEADERS HOST UPG KEY VER

static const struct verdict_case verdict_cases[] = {
    {"valid", "GET /ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_OK},
    {"HTTP/1.2 is later than 1.1", "GET /ws HTTP/1.2\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_OK},
    {"POST", "POST /ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_NOT_GET},
    {"HEAD", "HEAD /ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_NOT_GET},
    {"lower-case get (methods are case-sensitive)", "get /ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n",
     HTTP_UPGRADE_NOT_GET},
    {"GETX", "GETX /ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_NOT_GET},
    {"POST beats HTTP/1.0", "POST /ws HTTP/1.0\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_NOT_GET},
    {"HTTP/1.0", "GET /ws HTTP/1.0\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_BAD_VERSION_HTTP},
    {"HTTP/0.9 in a 1.x shape", "GET /ws HTTP/0.9\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_BAD_VERSION_HTTP},
    {"no Host", "GET /ws HTTP/1.1\r\n" UPG KEY VER "\r\n", HTTP_UPGRADE_BAD_HOST},
    {"two Hosts", "GET /ws HTTP/1.1\r\n" HOST "Host: other.example\r\n" UPG KEY VER "\r\n",
     HTTP_UPGRADE_BAD_HOST},
    {"two identical Hosts", "GET /ws HTTP/1.1\r\n" HOST HOST UPG KEY VER "\r\n", HTTP_UPGRADE_BAD_HOST},
    {"plain GET", "GET / HTTP/1.1\r\n" HOST "Accept: text/html\r\n\r\n", HTTP_UPGRADE_PLAIN_HTTP},
    {"plain GET with Connection: upgrade only", "GET / HTTP/1.1\r\n" HOST "Connection: Upgrade\r\n\r\n",
     HTTP_UPGRADE_PLAIN_HTTP},
    {"Upgrade: h2c", "GET /ws HTTP/1.1\r\n" HOST "Upgrade: h2c\r\nConnection: Upgrade\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_BAD_UPGRADE},
    {"key without Upgrade", "GET /ws HTTP/1.1\r\n" HOST "Connection: Upgrade\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_BAD_UPGRADE},
    {"empty Upgrade", "GET /ws HTTP/1.1\r\n" HOST "Upgrade:\r\nConnection: Upgrade\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_BAD_UPGRADE},
    {"Upgrade: websocket2",
     "GET /ws HTTP/1.1\r\n" HOST "Upgrade: websocket2\r\nConnection: Upgrade\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_BAD_UPGRADE},
    {"Upgrade listing websocket second",
     "GET /ws HTTP/1.1\r\n" HOST "Upgrade: h2c, websocket\r\nConnection: Upgrade\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_OK},
    {"Connection: keep-alive",
     "GET /ws HTTP/1.1\r\n" HOST "Upgrade: websocket\r\nConnection: keep-alive\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_BAD_CONNECTION},
    {"no Connection", "GET /ws HTTP/1.1\r\n" HOST "Upgrade: websocket\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_BAD_CONNECTION},
    {"Connection: keep-alive, Upgrade (Firefox)",
     "GET /ws HTTP/1.1\r\n" HOST "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_OK},
    {"Connection in two headers",
     "GET /ws HTTP/1.1\r\n" HOST
     "Upgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n" KEY VER "\r\n",
     HTTP_UPGRADE_OK},
    {"tokens and names in any case",
     "GET /ws HTTP/1.1\r\nhOsT: example.com\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n"
     "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n",
     HTTP_UPGRADE_OK},
    {"no key", "GET /ws HTTP/1.1\r\n" HOST UPG VER "\r\n", HTTP_UPGRADE_BAD_KEY},
    {"short key (10 bytes)",
     "GET /ws HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n" VER "\r\n",
     HTTP_UPGRADE_BAD_KEY},
    {"long key (18 bytes)",
     "GET /ws HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA\r\n" VER "\r\n",
     HTTP_UPGRADE_BAD_KEY},
    {"key not base64",
     "GET /ws HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!!\r\n" VER "\r\n",
     HTTP_UPGRADE_BAD_KEY},
    {"key without padding",
     "GET /ws HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" VER "\r\n",
     HTTP_UPGRADE_BAD_KEY},
    {"key with inner space",
     "GET /ws HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ==\r\n" VER "\r\n",
     HTTP_UPGRADE_BAD_KEY},
    {"empty key", "GET /ws HTTP/1.1\r\n" HOST UPG "Sec-WebSocket-Key:\r\n" VER "\r\n", HTTP_UPGRADE_BAD_KEY},
    {"two keys", "GET /ws HTTP/1.1\r\n" HOST UPG KEY KEY VER "\r\n", HTTP_UPGRADE_BAD_KEY},
    {"no version", "GET /ws HTTP/1.1\r\n" HOST UPG KEY "\r\n", HTTP_UPGRADE_BAD_WS_VERSION},
    {"version 8 (hybi-08)", "GET /ws HTTP/1.1\r\n" HOST UPG KEY "Sec-WebSocket-Version: 8\r\n\r\n",
     HTTP_UPGRADE_BAD_WS_VERSION},
    {"version 130", "GET /ws HTTP/1.1\r\n" HOST UPG KEY "Sec-WebSocket-Version: 130\r\n\r\n",
     HTTP_UPGRADE_BAD_WS_VERSION},
    {"version 1", "GET /ws HTTP/1.1\r\n" HOST UPG KEY "Sec-WebSocket-Version: 1\r\n\r\n",
     HTTP_UPGRADE_BAD_WS_VERSION},
    {"absolute-form target", "GET http://example.com/ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n",
     HTTP_UPGRADE_BAD_TARGET},
    {"asterisk-form target", "GET * HTTP/1.1\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_BAD_TARGET},
    {"authority-form target", "GET example.com:80 HTTP/1.1\r\n" GOOD_HEADERS "\r\n", HTTP_UPGRADE_BAD_TARGET},
};

static void
test_verdicts(void)
{
    for (size_t t = 0; t < sizeof verdict_cases / sizeof verdict_cases[0]; t++) {
        const struct verdict_case *c = &verdict_cases[t];
        struct http_request req;
        char *buf = NULL;
        enum http_parse_result pr = parse_exact(c->text, strlen(c->text), MAX_HEAD, &req, &buf);

        CHECK(pr == HTTP_PARSE_OK);
        if (pr != HTTP_PARSE_OK) {
            fprintf(stderr, "  %s: parse gave %s\n", c->what, parse_name(pr));
            free(buf);
            continue;
        }
        enum http_upgrade_verdict v = http_upgrade_validate(&req);
        CHECK(v == c->want);
        if (v != c->want)
            fprintf(stderr, "  %s: got \"%s\", want \"%s\"\n", c->what, http_upgrade_verdict_str(v),
                    http_upgrade_verdict_str(c->want));
        free(buf);
    }

    /* The status for each verdict. */
    static const struct {
        enum http_upgrade_verdict verdict;
        int status;
    } statuses[] = {
        {HTTP_UPGRADE_OK, 101},
        {HTTP_UPGRADE_NOT_GET, 405},
        {HTTP_UPGRADE_BAD_VERSION_HTTP, 400},
        {HTTP_UPGRADE_BAD_HOST, 400},
        {HTTP_UPGRADE_PLAIN_HTTP, 426},
        {HTTP_UPGRADE_BAD_UPGRADE, 400},
        {HTTP_UPGRADE_BAD_CONNECTION, 400},
        {HTTP_UPGRADE_BAD_KEY, 400},
        {HTTP_UPGRADE_BAD_WS_VERSION, 426},
        {HTTP_UPGRADE_BAD_TARGET, 400},
    };
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        CHECK(http_upgrade_verdict_status(statuses[i].verdict) == statuses[i].status);
        const char *s = http_upgrade_verdict_str(statuses[i].verdict);
        CHECK(s != NULL && *s != '\0' && strcmp(s, "unknown") != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s, http_upgrade_verdict_str(statuses[j].verdict)) != 0);
    }
}

/* ---- subprotocols ---- */

static const struct {
    const char *what;
    const char *headers;
    enum http_subprotocol want;
} subprotocol_cases[] = {
    {"none offered", "", HTTP_SUBPROTOCOL_NONE},
    {"binary", "Sec-WebSocket-Protocol: binary\r\n", HTTP_SUBPROTOCOL_BINARY},
    {"base64 alone", "Sec-WebSocket-Protocol: base64\r\n", HTTP_SUBPROTOCOL_BASE64},
    {"binary over base64", "Sec-WebSocket-Protocol: base64, binary\r\n", HTTP_SUBPROTOCOL_BINARY},
    {"binary over base64, other order", "Sec-WebSocket-Protocol: binary,base64\r\n", HTTP_SUBPROTOCOL_BINARY},
    {"unrelated protocols", "Sec-WebSocket-Protocol: chat, superchat\r\n", HTTP_SUBPROTOCOL_NONE},
    {"prefix of a name is not the name", "Sec-WebSocket-Protocol: binaryx, base64url\r\n",
     HTTP_SUBPROTOCOL_NONE},
    {"unrelated, then base64", "Sec-WebSocket-Protocol: chat, base64\r\n", HTTP_SUBPROTOCOL_BASE64},
    {"split across two headers", "Sec-WebSocket-Protocol: base64\r\nSec-WebSocket-Protocol: binary\r\n",
     HTTP_SUBPROTOCOL_BINARY},
    {"split across two headers, base64 second",
     "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: base64\r\n", HTTP_SUBPROTOCOL_BASE64},
};

static void
test_subprotocols(void)
{
    for (size_t t = 0; t < sizeof subprotocol_cases / sizeof subprotocol_cases[0]; t++) {
        char text[512];
        struct http_request req;
        int n = snprintf(text, sizeof text, "GET /ws HTTP/1.1\r\n" GOOD_HEADERS "%s\r\n",
                         subprotocol_cases[t].headers);

        /* 'text' outlives 'req' here, so parse it in place */
        CHECK(http_upgrade_parse(text, (size_t)n, MAX_HEAD, &req) == HTTP_PARSE_OK);
        CHECK(http_upgrade_validate(&req) == HTTP_UPGRADE_OK);
        enum http_subprotocol p = http_upgrade_choose_subprotocol(&req);
        CHECK(p == subprotocol_cases[t].want);
        if (p != subprotocol_cases[t].want)
            fprintf(stderr, "  %s: got %s\n", subprotocol_cases[t].what, http_subprotocol_str(p));
        CHECK(req.offers_protocols == (subprotocol_cases[t].headers[0] != '\0'));
    }
    CHECK(strcmp(http_subprotocol_str(HTTP_SUBPROTOCOL_BINARY), "binary") == 0);
    CHECK(strcmp(http_subprotocol_str(HTTP_SUBPROTOCOL_BASE64), "base64") == 0);
}

/* ---- Sec-WebSocket-Accept ---- */

static void
test_accept_key(void)
{
    char out[HTTP_ACCEPT_LEN + 1];

    /* RFC 6455 §1.3 */
    memset(out, '#', sizeof out);
    CHECK(http_upgrade_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out) == 0);
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
    /* a second known pair (the example in most WebSocket introductions) */
    CHECK(http_upgrade_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", 24, out) == 0);
    CHECK(strcmp(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=") == 0);
    /* key_len is honoured: the bytes after it do not count */
    CHECK(http_upgrade_accept_key("dGhlIHNhbXBsZSBub25jZQ==trailing", 24, out) == 0);
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
}

/* ---- replies ---- */

/* The value of header 'name' in a reply head, or NULL; '*count' gets how many there are. */
static const char *
reply_header(const char *reply, const char *name, size_t *value_len, int *count)
{
    const char *p = strstr(reply, "\r\n");
    const char *found = NULL;
    size_t nlen = strlen(name);

    *count = 0;
    while (p != NULL && strncmp(p, "\r\n\r\n", 4) != 0) {
        const char *line = p + 2;
        const char *end = strstr(line, "\r\n");
        if (end == NULL)
            break;
        if ((size_t)(end - line) > nlen + 1 && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            found = v;
            *value_len = (size_t)(end - v);
            (*count)++;
        }
        p = end;
    }
    return found;
}

static bool
reply_has(const char *reply, const char *name, const char *value)
{
    size_t len = 0;
    int count;
    const char *v = reply_header(reply, name, &len, &count);

    return v != NULL && count == 1 && len == strlen(value) && memcmp(v, value, len) == 0;
}

static bool
reply_lacks(const char *reply, const char *name)
{
    size_t len;
    int count;

    return reply_header(reply, name, &len, &count) == NULL;
}

static void
test_format_101(void)
{
    char out[HTTP_REPLY_MAX];
    size_t n;

    memset(out, '#', sizeof out);
    n = http_upgrade_format_101(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", HTTP_SUBPROTOCOL_NONE);
    CHECK(n > 0 && n < HTTP_REPLY_MAX && n == strlen(out));
    CHECK(strncmp(out, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
    CHECK(n >= 4 && strcmp(out + n - 4, "\r\n\r\n") == 0);
    CHECK(strstr(out, "\r\n\r\n") == out + n - 4); /* one head, nothing after it */
    CHECK(reply_has(out, "Upgrade", "websocket"));
    CHECK(reply_has(out, "Connection", "Upgrade"));
    CHECK(reply_has(out, "Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    CHECK(reply_lacks(out, "Sec-WebSocket-Protocol"));
    CHECK(reply_lacks(out, "Content-Length")); /* a 101 has no body */

    n = http_upgrade_format_101(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", HTTP_SUBPROTOCOL_BINARY);
    CHECK(n == strlen(out));
    CHECK(reply_has(out, "Sec-WebSocket-Protocol", "binary"));
    CHECK(reply_has(out, "Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    CHECK(strcmp(out + n - 4, "\r\n\r\n") == 0);

    n = http_upgrade_format_101(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", HTTP_SUBPROTOCOL_BASE64);
    CHECK(n == strlen(out));
    CHECK(reply_has(out, "Sec-WebSocket-Protocol", "base64"));
}

static void
check_error_reply(int status, const char *reason, unsigned retry_after_s)
{
    char out[HTTP_REPLY_MAX];
    char status_line[64];
    size_t n = http_upgrade_format_error(out, status, reason, retry_after_s);
    size_t vlen = 0;
    int count = 0;

    CHECK(n > 0 && n < HTTP_REPLY_MAX);
    CHECK(n == strlen(out));
    snprintf(status_line, sizeof status_line, "HTTP/1.1 %d %s\r\n", status, http_status_phrase(status));
    CHECK(strncmp(out, status_line, strlen(status_line)) == 0);
    CHECK(reply_has(out, "Connection", "close"));

    /* Content-Length is the body that follows the head, which is "<reason>\n". */
    const char *head_end = strstr(out, "\r\n\r\n");
    const char *cl = reply_header(out, "Content-Length", &vlen, &count);
    CHECK(head_end != NULL && cl != NULL && count == 1);
    if (head_end == NULL || cl == NULL)
        return;
    const char *body = head_end + 4;
    size_t body_len = n - (size_t)(body - out);
    CHECK((size_t)strtoul(cl, NULL, 10) == body_len);
    CHECK(body_len >= 1 && body[body_len - 1] == '\n');
    CHECK(strncmp(body, reason, body_len - 1) == 0);
    if (strlen(reason) + 1 + (size_t)(body - out) < HTTP_REPLY_MAX / 2)
        CHECK(body_len == strlen(reason) + 1); /* short reasons are whole */

    if (status == 426) {
        CHECK(reply_has(out, "Upgrade", "websocket"));
        CHECK(reply_has(out, "Sec-WebSocket-Version", "13"));
    } else {
        CHECK(reply_lacks(out, "Sec-WebSocket-Version"));
    }
    if (status == 405)
        CHECK(reply_has(out, "Allow", "GET"));
    else
        CHECK(reply_lacks(out, "Allow"));
    if (retry_after_s > 0) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%u", retry_after_s);
        CHECK(reply_has(out, "Retry-After", seconds));
    } else {
        CHECK(reply_lacks(out, "Retry-After"));
    }
}

static void
test_format_error(void)
{
    static const struct {
        int status;
        const char *phrase;
    } phrases[] = {
        {400, "Bad Request"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {426, "Upgrade Required"},
        {431, "Request Header Fields Too Large"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {101, "Switching Protocols"},
        {408, "Request Timeout"},
    };
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++) {
        CHECK(strcmp(http_status_phrase(phrases[i].status), phrases[i].phrase) == 0);
        check_error_reply(phrases[i].status, "something went wrong", 0);
    }
    check_error_reply(426, http_upgrade_verdict_str(HTTP_UPGRADE_PLAIN_HTTP), 0);
    check_error_reply(405, http_upgrade_verdict_str(HTTP_UPGRADE_NOT_GET), 0);
    check_error_reply(400, "", 0);
    /* Refusals that say when to come back (RFC 9110 §10.2.3, RFC 6585 §4). */
    CHECK(strcmp(http_status_phrase(429), "Too Many Requests") == 0);
    check_error_reply(429, "too many new connections from this address", 1);
    check_error_reply(429, "too many sessions from this address", 4294967295u);
    check_error_reply(503, "too many pending handshakes", 5);

    /* A reason too long for the reply is cut, and Content-Length still matches. */
    char long_reason[3000];
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    check_error_reply(426, long_reason, 0);
    check_error_reply(400, long_reason, 0);
    check_error_reply(429, long_reason, 120);
}

/* ---- http_list_has_token ---- */

static const struct {
    const char *value;
    size_t len; /* 0: strlen */
    const char *token;
    bool want;
} token_cases[] = {
    {"Upgrade", 0, "upgrade", true},
    {"upgrade", 0, "upgrade", true},
    {"UPGRADE", 0, "upgrade", true},
    {"keep-alive, Upgrade", 0, "upgrade", true},
    {"keep-alive,Upgrade", 0, "upgrade", true},
    {"Upgrade, keep-alive", 0, "upgrade", true},
    {"  upgrade  ", 0, "upgrade", true},
    {"\tupgrade\t,x", 0, "upgrade", true},
    {",,upgrade,,", 0, "upgrade", true},
    {"a , upgrade , b", 0, "upgrade", true},
    {"keep-alive", 0, "upgrade", false},
    {"upgrade2", 0, "upgrade", false},
    {"upgrades, x", 0, "upgrade", false},
    {"xupgrade", 0, "upgrade", false},
    {"up grade", 0, "upgrade", false},
    {"upgrade;q=1", 0, "upgrade", false},
    {"", 0, "upgrade", false},
    {",", 0, "upgrade", false},
    {" , ,", 0, "upgrade", false},
    {"upgrade", 3, "upg", true}, /* 'len' bounds the value: no NUL needed */
    {"upgrade", 6, "upgrade", false},
    {"keep-alive, upgrade", 10, "upgrade", false},
    {"websocket", 0, "WebSocket", true}, /* case-insensitive both ways */
    {"WEBSOCKET", 0, "WebSocket", true},
};

static void
test_list_has_token(void)
{
    for (size_t t = 0; t < sizeof token_cases / sizeof token_cases[0]; t++) {
        const char *v = token_cases[t].value;
        size_t len = token_cases[t].len ? token_cases[t].len : strlen(v);
        /* an exact-size copy, so a read past 'len' shows under ASan */
        char *copy = malloc(len ? len : 1);
        if (copy == NULL)
            continue;
        memcpy(copy, v, len);
        bool got = http_list_has_token(copy, len, token_cases[t].token);
        CHECK(got == token_cases[t].want);
        if (got != token_cases[t].want)
            fprintf(stderr, "  http_list_has_token(\"%.*s\", \"%s\") = %d\n", (int)len, v,
                    token_cases[t].token, got);
        free(copy);
    }
}

static void
test_strings(void)
{
    static const enum http_parse_result results[] = {HTTP_PARSE_OK, HTTP_PARSE_NEED_MORE, HTTP_PARSE_TOO_BIG,
                                                     HTTP_PARSE_BAD_REQUEST_LINE, HTTP_PARSE_BAD_HEADER};
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
        const char *s = http_parse_result_str(results[i]);
        CHECK(s != NULL && strcmp(s, "unknown") != 0);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s, http_parse_result_str(results[j])) != 0);
    }
}

/* ---- what a static-file request needs: conditionals, connection reuse, bodies ---- */

static void
test_plain_request_fields(void)
{
    static const struct {
        const char *head;
        bool close, keep_alive, has_body;
        const char *inm, *ims;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, false, false, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true, false, false, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Upgrade\r\n\r\n", false, true, false, NULL,
         NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, CLOSE\r\n\r\n", true, false, false, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", false, false, false, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", false, false, false, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", false, false, true, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n", false, false, true, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", false, false, true, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false, false, true, NULL, NULL},
        {"GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: W/\"x\", \"y\"\r\n"
         "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
         false, false, false, "W/\"x\", \"y\"", "Sun, 06 Nov 1994 08:49:37 GMT"},
    };
    struct http_request req;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(http_upgrade_parse(cases[i].head, strlen(cases[i].head), MAX_HEAD, &req) == HTTP_PARSE_OK);
        CHECK(req.connection_close == cases[i].close);
        CHECK(req.connection_keep_alive == cases[i].keep_alive);
        CHECK(req.has_body == cases[i].has_body);
        CHECK(slice_is(req.if_none_match, cases[i].inm));
        CHECK(slice_is(req.if_modified_since, cases[i].ims));
        CHECK(!req.upgrade_websocket);
    }
    CHECK(strcmp(http_status_phrase(304), "Not Modified") == 0);
    CHECK(strcmp(http_status_phrase(301), "Moved Permanently") == 0);
    CHECK(strcmp(http_status_phrase(505), "HTTP Version Not Supported") == 0);
    CHECK(strcmp(http_status_phrase(414), "URI Too Long") == 0);
}

int
main(void)
{
    test_full_request();
    test_bad_heads();
    test_verdicts();
    test_subprotocols();
    test_accept_key();
    test_format_101();
    test_format_error();
    test_list_has_token();
    test_strings();
    test_plain_request_fields();
    return check_report();
}
