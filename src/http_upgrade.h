/* http_upgrade.h - the HTTP/1.1 side of RFC 6455 §4.2: parse an opening handshake, judge it,
 * compute Sec-WebSocket-Accept, and format 101 and error replies. Pure: it returns slices
 * into the caller's buffer and never copies, allocates or logs. */
#ifndef WSPLICE_HTTP_UPGRADE_H
#define WSPLICE_HTTP_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_slice {
    const char *ptr; /* into the parsed buffer; NULL when absent */
    size_t len;
};

enum http_parse_result {
    HTTP_PARSE_OK = 0,           /* *req filled; req->head_len bytes form the request head */
    HTTP_PARSE_NEED_MORE,        /* no blank line yet and nothing wrong so far */
    HTTP_PARSE_TOO_BIG,          /* the head is over the limit (431) */
    HTTP_PARSE_BAD_REQUEST_LINE, /* not "METHOD /target HTTP/x.y" (400) */
    HTTP_PARSE_BAD_HEADER,       /* a malformed header line, folding, or a control byte (400) */
};

enum http_subprotocol {
    HTTP_SUBPROTOCOL_NONE = 0, /* no Sec-WebSocket-Protocol in the reply */
    HTTP_SUBPROTOCOL_BINARY,   /* "binary": raw bytes in binary frames */
    HTTP_SUBPROTOCOL_BASE64,   /* "base64": base64 in text frames (websockify's legacy mode) */
};

struct http_request {
    size_t head_len; /* request line to blank line, inclusive */
    struct http_slice method;
    struct http_slice target; /* request-target as sent */
    struct http_slice path;   /* target up to '?' */
    struct http_slice query;  /* after '?', without it; ptr NULL when absent */
    unsigned version_major, version_minor;
    struct http_slice host;              /* Host header value */
    struct http_slice key;               /* Sec-WebSocket-Key */
    struct http_slice ws_version;        /* Sec-WebSocket-Version */
    struct http_slice origin;            /* Origin */
    struct http_slice extensions;        /* Sec-WebSocket-Extensions (the last one) */
    struct http_slice if_none_match;     /* If-None-Match (the last one) */
    struct http_slice if_modified_since; /* If-Modified-Since (the last one) */
    unsigned host_count, key_count, ws_version_count;
    bool has_upgrade;           /* an Upgrade header was sent at all */
    bool upgrade_websocket;     /* ... and it lists "websocket" */
    bool connection_upgrade;    /* a Connection header lists "upgrade" */
    bool connection_close;      /* ... "close" */
    bool connection_keep_alive; /* ... "keep-alive" */
    bool has_body;         /* Transfer-Encoding, or a Content-Length other than 0: a body follows the head */
    bool offers_protocols; /* a Sec-WebSocket-Protocol header was sent */
    bool offers_binary, offers_base64;
};

/* Parse the request head at the start of 'buf' (len bytes). Heads longer than 'max_len'
 * give HTTP_PARSE_TOO_BIG as soon as 'max_len' bytes hold no complete head. Accepts CRLF
 * or bare LF line ends. Obvious garbage (a TLS record, binary bytes, a "method" of more
 * than 32 characters) is rejected before the head is complete. */
enum http_parse_result http_upgrade_parse(const char *buf, size_t len, size_t max_len,
                                          struct http_request *req);

const char *http_parse_result_str(enum http_parse_result result);

/* What to answer a parsed request, in the order they are checked. */
enum http_upgrade_verdict {
    HTTP_UPGRADE_OK = 0,
    HTTP_UPGRADE_NOT_GET,          /* 405 */
    HTTP_UPGRADE_BAD_VERSION_HTTP, /* not HTTP/1.x with x >= 1 (HTTP/2 has its own upgrade, RFC 8441): 400 */
    HTTP_UPGRADE_BAD_HOST,         /* Host missing or repeated: 400 */
    HTTP_UPGRADE_BAD_TARGET,       /* request-target is not a path: 400 */
    HTTP_UPGRADE_PLAIN_HTTP,       /* no Upgrade and no key: an ordinary GET (426) */
    HTTP_UPGRADE_BAD_UPGRADE,      /* Upgrade does not list websocket: 400 */
    HTTP_UPGRADE_BAD_CONNECTION,   /* Connection does not list upgrade: 400 */
    HTTP_UPGRADE_BAD_KEY,          /* key missing, repeated, or not 16 bytes of base64: 400 */
    HTTP_UPGRADE_BAD_WS_VERSION,   /* Sec-WebSocket-Version is not 13: 426 */
};

enum http_upgrade_verdict http_upgrade_validate(const struct http_request *req);

/* The HTTP status for a verdict (101 for HTTP_UPGRADE_OK), and a one-line reason. */
int http_upgrade_verdict_status(enum http_upgrade_verdict verdict);
const char *http_upgrade_verdict_str(enum http_upgrade_verdict verdict);

/* websockify's rule: "binary" when offered, else "base64" when offered, else none. */
enum http_subprotocol http_upgrade_choose_subprotocol(const struct http_request *req);
const char *http_subprotocol_str(enum http_subprotocol proto);

#define HTTP_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */

/* Sec-WebSocket-Accept for a key (§4.2.2): base64(SHA-1(key + GUID)). 'out' gets
 * HTTP_ACCEPT_LEN characters and a NUL. Returns 0, or -1 if libcrypto fails. */
int http_upgrade_accept_key(const char *key, size_t key_len, char out[HTTP_ACCEPT_LEN + 1]);

#define HTTP_REPLY_MAX 1024

/* Format the 101 reply into 'out' (HTTP_REPLY_MAX bytes). Returns its length. */
size_t http_upgrade_format_101(char *out, const char *accept, enum http_subprotocol proto);

/* Format an error reply with a text/plain body "<reason>\n" and Connection: close; 426
 * replies carry Upgrade and Sec-WebSocket-Version: 13, 405 replies Allow: GET, and a
 * nonzero 'retry_after_s' adds Retry-After (for 429 and 503). The reason is cut to fit.
 * Returns the length written into 'out' (HTTP_REPLY_MAX bytes). */
size_t http_upgrade_format_error(char *out, int status, const char *reason, unsigned retry_after_s);

/* The standard reason phrase for a status code ("Bad Gateway"). */
const char *http_status_phrase(int status);

/* Case-insensitive search for 'token' in a comma-separated header value. */
bool http_list_has_token(const char *value, size_t len, const char *token);

#endif
