/* webroot.h - static files for the browser client, on a listener's own port: GET and HEAD
 * of requests that carry no WebSocket upgrade. The path normaliser and the small HTTP
 * helpers are pure; answering a request opens files beneath the root and nowhere else. */
#ifndef WSPLICE_WEBROOT_H
#define WSPLICE_WEBROOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_upgrade.h"

struct evbuffer;
struct webroot;

/* Open directory 'dir' as a web root (a directory listing is generated for directories
 * without index.html when 'listing' is set). Returns the root with one reference, or NULL
 * with the reason in 'err' (the directory is missing or unreadable, or the kernel cannot
 * confine lookups to it: openat2(2), Linux 5.6). */
struct webroot *webroot_new(const char *dir, bool listing, char *err, size_t err_size);
void webroot_ref(struct webroot *w);
/* Drop a reference; the last one closes the directory. NULL is ignored. */
void webroot_unref(struct webroot *w);
const char *webroot_dir(const struct webroot *w);

enum webroot_path_result {
    WEBROOT_PATH_OK = 0,
    WEBROOT_PATH_NOT_ABSOLUTE, /* does not start with '/' (400) */
    WEBROOT_PATH_BAD_ESCAPE,   /* '%' without two hex digits (400) */
    WEBROOT_PATH_FORBIDDEN,    /* a NUL or control byte, a backslash, or an encoded '/' (403) */
    WEBROOT_PATH_ESCAPES,      /* ".." above the root (403) */
    WEBROOT_PATH_TOO_LONG,     /* the result does not fit the output (414) */
};

/* Percent-decode a request path once, then resolve its segments: empty and "." segments
 * go, ".." removes the segment before it. 'out' (out_size bytes, NUL-terminated) gets the
 * path relative to the root with single '/' separators and no leading or trailing '/':
 * "" is the root itself. '*names_dir' says whether the path ended in '/' (or in "." or
 * ".."), i.e. names a directory. Decoded bytes are never read as '%', '/', '.' or ".."
 * a second time. Pure. */
enum webroot_path_result webroot_path_normalize(const char *path, size_t len, char *out, size_t out_size,
                                                size_t *out_len, bool *names_dir);

const char *webroot_path_result_str(enum webroot_path_result result);

/* The HTTP status for a normaliser error. */
int webroot_path_result_status(enum webroot_path_result result);

/* The Content-Type for a file name, by its extension (case-insensitive);
 * "application/octet-stream" for anything unknown. Pure. */
const char *webroot_content_type(const char *name, size_t len);

#define WEBROOT_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/* Format 't' (seconds since the epoch) as an IMF-fixdate (RFC 9110 §5.6.7) into 'out'
 * (WEBROOT_DATE_LEN + 1 bytes). Returns WEBROOT_DATE_LEN. Pure. */
size_t webroot_http_date_format(int64_t t, char *out);

/* Parse an IMF-fixdate. The obsolete RFC 850 and asctime forms, and anything malformed,
 * return false: a conditional request with such a date gets the whole file. Pure. */
bool webroot_http_date_parse(const char *s, size_t len, int64_t *out);

/* Whether an If-None-Match value ("*" or a list of entity tags) matches 'etag' by the weak
 * comparison of RFC 9110 §8.8.3.2 (a "W/" prefix on either side is ignored). Pure. */
bool webroot_etag_matches(const char *header, size_t len, const char *etag);

/* The part of a response that follows its head: a byte range of an open file. */
struct webroot_body {
    bool has_file; /* 'fd' is open and owned; the other fields are meaningful */
    int fd;
    uint64_t offset;    /* the next byte to queue */
    uint64_t remaining; /* bytes still to queue */
};

struct webroot_reply {
    int status;
    uint64_t body_len; /* Content-Length as sent (0 for HEAD and 304 bodies not sent) */
    bool keep_alive;   /* the connection may carry another request after this one */
    struct webroot_body body;
};

/* Answer one request that is not a WebSocket upgrade. The status line, the headers and any
 * small body (errors, redirects, listings) are added to 'out'; a file's content is left in
 * reply->body for webroot_body_fill(). Always produces a complete response. */
void webroot_answer(const struct webroot *w, const struct http_request *req, struct evbuffer *out,
                    struct webroot_reply *reply);

/* Queue up to 'max' more bytes of the body at the end of 'out' as a file segment (sent with
 * sendfile(2) from plain sockets; read in, 'max' at a time, for TLS). The file is closed once
 * everything is queued. Returns 0, or -1 with errno set (the body is then dropped). */
int webroot_body_fill(struct webroot_body *b, struct evbuffer *out, size_t max);

/* Close the file, if any. */
void webroot_body_cleanup(struct webroot_body *b);

#endif
