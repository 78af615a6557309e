/* webroot.c - a small static file server for the pages that use the WebSocket routes.
 * Files are opened with openat2(RESOLVE_BENEATH) from the root's directory descriptor, so
 * no path, symlink or rename race can reach outside it; only regular files are served.
 * It answers whole requests and never reads request bodies: not a general web server. */
#include "webroot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <event2/buffer.h>

#define WEBROOT_PATH_MAX    4096 /* a normalised path, NUL included */
#define WEBROOT_LISTING_MAX 5000 /* entries shown in one directory listing */

struct webroot {
    atomic_uint refs;
    int dir_fd; /* the root directory; every lookup starts here */
    bool listing;
    char *dir; /* as configured, for messages */
};

/* Open 'path' (relative, never escaping) beneath 'dir_fd'. Symlinks are followed only
 * while they stay beneath it; ".." and absolute symlinks that leave it fail with EXDEV. */
static int
webroot_open_beneath(int dir_fd, const char *path)
{
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, /* a FIFO must not block the loop */
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };

    return (int)syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
}

struct webroot *
webroot_new(const char *dir, bool listing, char *err, size_t err_size)
{
    struct webroot *w = calloc(1, sizeof *w);
    int probe;

    if (w == NULL) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    w->dir_fd = -1;
    atomic_init(&w->refs, 1);
    w->dir = strdup(dir);
    if (w->dir == NULL) {
        snprintf(err, err_size, "out of memory");
        goto fail;
    }
    w->listing = listing;
    w->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dir_fd == -1) {
        snprintf(err, err_size, "%s: %s", dir, errno == ENOTDIR ? "not a directory" : strerror(errno));
        goto fail;
    }
    probe = webroot_open_beneath(w->dir_fd, ".");
    if (probe == -1) {
        if (errno == ENOSYS || errno == EPERM)
            snprintf(err, err_size,
                     "%s: this kernel cannot confine lookups to a directory (openat2, Linux 5.6)", dir);
        else
            snprintf(err, err_size, "%s: %s", dir, strerror(errno));
        goto fail;
    }
    close(probe);
    return w;
fail:
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    free(w->dir);
    free(w);
    return NULL;
}

void
webroot_ref(struct webroot *w)
{
    atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
}

void
webroot_unref(struct webroot *w)
{
    if (w == NULL || atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1)
        return;
    close(w->dir_fd);
    free(w->dir);
    free(w);
}

const char *
webroot_dir(const struct webroot *w)
{
    return w->dir;
}

/* ---- pure helpers ---- */

static int
webroot_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum webroot_path_result
webroot_path_normalize(const char *path, size_t len, char *out, size_t out_size, size_t *out_len,
                       bool *names_dir)
{
    size_t i = 0, o = 0;

    *out_len = 0;
    *names_dir = false;
    if (len == 0 || path[0] != '/')
        return WEBROOT_PATH_NOT_ABSOLUTE;
    if (out_size == 0)
        return WEBROOT_PATH_TOO_LONG;
    while (i < len) {
        size_t seg_start = o; /* where this segment's separator goes, or its name at the start */
        i++;                  /* the '/' */
        if (o > 0) {
            if (o + 1 >= out_size)
                return WEBROOT_PATH_TOO_LONG;
            out[o++] = '/';
        }
        size_t name = o;
        while (i < len && path[i] != '/') {
            unsigned char c = (unsigned char)path[i];
            if (c == '%') {
                int hi = len - i >= 3 ? webroot_hex_value(path[i + 1]) : -1;
                int lo = len - i >= 3 ? webroot_hex_value(path[i + 2]) : -1;
                if (hi < 0 || lo < 0)
                    return WEBROOT_PATH_BAD_ESCAPE;
                c = (unsigned char)(hi << 4 | lo);
                if (c == '/')
                    return WEBROOT_PATH_FORBIDDEN; /* would join two segments into one name */
                i += 3;
            } else {
                i++;
            }
            if (c < 0x20 || c == 0x7f || c == '\\')
                return WEBROOT_PATH_FORBIDDEN;
            if (o + 1 >= out_size)
                return WEBROOT_PATH_TOO_LONG;
            out[o++] = (char)c;
        }
        size_t seg_len = o - name;
        if (seg_len == 0 || (seg_len == 1 && out[name] == '.')) {
            o = seg_start;
            *names_dir = true;
            continue;
        }
        if (seg_len == 2 && out[name] == '.' && out[name + 1] == '.') {
            if (seg_start == 0)
                return WEBROOT_PATH_ESCAPES;
            size_t prev = seg_start; /* out[seg_start] is the separator before ".." */
            while (prev > 0 && out[prev - 1] != '/')
                prev--;
            o = prev > 0 ? prev - 1 : 0;
            *names_dir = true;
            continue;
        }
        *names_dir = false;
    }
    out[o] = '\0';
    *out_len = o;
    return WEBROOT_PATH_OK;
}

const char *
webroot_path_result_str(enum webroot_path_result result)
{
    switch (result) {
    case WEBROOT_PATH_OK:
        return "ok";
    case WEBROOT_PATH_NOT_ABSOLUTE:
        return "request target must be a path";
    case WEBROOT_PATH_BAD_ESCAPE:
        return "malformed percent-encoding in the path";
    case WEBROOT_PATH_FORBIDDEN:
        return "forbidden byte in the path";
    case WEBROOT_PATH_ESCAPES:
        return "path leads outside the web root";
    case WEBROOT_PATH_TOO_LONG:
        return "path too long";
    }
    return "unknown";
}

int
webroot_path_result_status(enum webroot_path_result result)
{
    switch (result) {
    case WEBROOT_PATH_OK:
        return 200;
    case WEBROOT_PATH_NOT_ABSOLUTE:
    case WEBROOT_PATH_BAD_ESCAPE:
        return 400;
    case WEBROOT_PATH_FORBIDDEN:
    case WEBROOT_PATH_ESCAPES:
        return 403;
    case WEBROOT_PATH_TOO_LONG:
        return 414;
    }
    return 400;
}

static bool
webroot_ascii_equal_nocase(const char *a, size_t len, const char *b)
{
    if (strlen(b) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] - 'A' + 'a') : a[i];
        if (c != b[i])
            return false;
    }
    return true;
}

const char *
webroot_content_type(const char *name, size_t len)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"}, /* RFC 9239; module scripts need a JS type */
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"webmanifest", "application/manifest+json"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"},
        {"xml", "application/xml"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"avif", "image/avif"},
        {"ico", "image/vnd.microsoft.icon"},
        {"bmp", "image/bmp"},
        {"wasm", "application/wasm"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},
        {"otf", "font/otf"},
        {"mp3", "audio/mpeg"},
        {"ogg", "audio/ogg"},
        {"oga", "audio/ogg"},
        {"wav", "audio/wav"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
        {"pdf", "application/pdf"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
    };
    size_t dot = len;

    while (dot > 0 && name[dot - 1] != '.' && name[dot - 1] != '/')
        dot--;
    if (dot > 1 && name[dot - 1] == '.' && name[dot - 2] != '/') { /* ".bashrc" has no extension */
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (webroot_ascii_equal_nocase(name + dot, len - dot, types[i].ext))
                return types[i].type;
    }
    return "application/octet-stream";
}

static const char webroot_days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char webroot_months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days from 1970-01-01 to a proleptic Gregorian date (month 1-12). */
static int64_t
webroot_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

size_t
webroot_http_date_format(int64_t t, char *out)
{
    struct tm tm;
    time_t tt = (time_t)t;
    char buf[64]; /* roomier than the result: the compiler cannot see the fields' ranges */

    if (gmtime_r(&tt, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
        tt = 0; /* outside what four year digits hold: the epoch is as good as any */
        gmtime_r(&tt, &tm);
    }
    snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", webroot_days[tm.tm_wday % 7], tm.tm_mday,
             webroot_months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(out, buf, WEBROOT_DATE_LEN);
    out[WEBROOT_DATE_LEN] = '\0';
    return WEBROOT_DATE_LEN;
}

/* 'n' decimal digits at 's', or -1. */
static int
webroot_digits(const char *s, size_t n)
{
    int v = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool
webroot_http_date_parse(const char *s, size_t len, int64_t *out)
{
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    unsigned month = 0; /* not found */
    bool day_ok = false;

    if (len != WEBROOT_DATE_LEN || memcmp(s + 3, ", ", 2) != 0 || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return false;
    for (unsigned i = 0; i < 7; i++)
        day_ok = day_ok || memcmp(s, webroot_days[i], 3) == 0;
    for (unsigned i = 0; i < 12; i++)
        if (memcmp(s + 8, webroot_months[i], 3) == 0)
            month = i + 1;
    int day = webroot_digits(s + 5, 2), year = webroot_digits(s + 12, 4);
    int hour = webroot_digits(s + 17, 2), min = webroot_digits(s + 20, 2), sec = webroot_digits(s + 23, 2);
    if (!day_ok || month == 0 || day < 1 || day > 31 || year < 0 || hour < 0 || hour > 23 || min < 0 ||
        min > 59 || sec < 0 || sec > 60)
        return false;
    *out = webroot_days_from_civil(year, month, (unsigned)day) * 86400 + hour * 3600 + min * 60 + sec;
    return true;
}

/* An entity tag without a weak prefix: the quoted opaque tag. */
static void
webroot_etag_strip_weak(const char **p, size_t *len)
{
    if (*len >= 2 && (*p)[0] == 'W' && (*p)[1] == '/') {
        *p += 2;
        *len -= 2;
    }
}

bool
webroot_etag_matches(const char *header, size_t len, const char *etag)
{
    const char *want = etag;
    size_t want_len = strlen(etag), i = 0;

    webroot_etag_strip_weak(&want, &want_len);
    while (i < len) {
        while (i < len && (header[i] == ' ' || header[i] == '\t' || header[i] == ','))
            i++;
        size_t start = i;
        if (i < len && header[i] == '*')
            return true;
        if (i + 1 < len && header[i] == 'W' && header[i + 1] == '/')
            i += 2;
        if (i < len && header[i] == '"') {
            const char *close = memchr(header + i + 1, '"', len - i - 1);
            if (close == NULL)
                return false;
            i = (size_t)(close - header) + 1;
        } else {
            while (i < len && header[i] != ',')
                i++; /* not an entity tag: skip it */
            continue;
        }
        const char *tag = header + start;
        size_t tag_len = i - start;
        webroot_etag_strip_weak(&tag, &tag_len);
        if (tag_len == want_len && memcmp(tag, want, tag_len) == 0)
            return true;
    }
    return false;
}

/* ---- responses ---- */

static bool
webroot_method_is(const struct http_request *req, const char *method)
{
    return req->method.len == strlen(method) && memcmp(req->method.ptr, method, req->method.len) == 0;
}

static void
webroot_head_start(struct evbuffer *out, struct webroot_reply *reply, int status)
{
    char date[WEBROOT_DATE_LEN + 1];

    webroot_http_date_format((int64_t)time(NULL), date);
    reply->status = status;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, http_status_phrase(status), date);
}

/* The headers every response ends with; 304 carries no content headers. */
static void
webroot_head_end(struct evbuffer *out, const struct webroot_reply *reply, const char *type, uint64_t len)
{
    if (reply->status != 304)
        evbuffer_add_printf(
            out, "Content-Type: %s\r\nContent-Length: %" PRIu64 "\r\nX-Content-Type-Options: nosniff\r\n",
            type, len);
    evbuffer_add_printf(out, "Connection: %s\r\n\r\n", reply->keep_alive ? "keep-alive" : "close");
}

/* Finish a response whose body is the one-line text 'reason'. */
static void
webroot_text(struct evbuffer *out, struct webroot_reply *reply, bool is_head, const char *reason)
{
    size_t len = strlen(reason);

    evbuffer_add_printf(out, "Cache-Control: no-store\r\n");
    webroot_head_end(out, reply, "text/plain; charset=utf-8", len + 1);
    if (is_head)
        return;
    evbuffer_add(out, reason, len);
    evbuffer_add(out, "\n", 1);
    reply->body_len = len + 1;
}

static void
webroot_error(struct evbuffer *out, struct webroot_reply *reply, bool is_head, int status, const char *reason)
{
    webroot_head_start(out, reply, status);
    webroot_text(out, reply, is_head, reason);
}

/* "/dir" names a directory: send the client to "/dir/", as web servers do, so that
 * relative links in its index resolve inside it. The target is ASCII (the parser saw to it). */
static void
webroot_redirect(const struct http_request *req, bool is_head, struct evbuffer *out,
                 struct webroot_reply *reply)
{
    webroot_head_start(out, reply, 301);
    evbuffer_add_printf(out, "Location: %.*s/%s%.*s\r\n", (int)req->path.len, req->path.ptr,
                        req->query.ptr != NULL ? "?" : "", (int)req->query.len,
                        req->query.ptr != NULL ? req->query.ptr : "");
    webroot_text(out, reply, is_head, "a directory: its address ends in /");
}

static void
webroot_file(const struct http_request *req, int fd, const struct stat *st, const char *name, size_t name_len,
             bool is_head, struct evbuffer *out, struct webroot_reply *reply)
{
    char etag[64], modified[WEBROOT_DATE_LEN + 1];
    uint64_t size = (uint64_t)st->st_size;
    int64_t since;
    bool not_modified = false;

    /* Size and modification time to the nanosecond: a rewritten file gets a new tag. */
    snprintf(etag, sizeof etag, "\"%" PRIx64 "-%" PRIx64 "-%lx\"", size, (uint64_t)st->st_mtim.tv_sec,
             (unsigned long)st->st_mtim.tv_nsec);
    webroot_http_date_format((int64_t)st->st_mtim.tv_sec, modified);
    /* RFC 9110 §13.2.2: If-None-Match decides when present; otherwise If-Modified-Since. */
    if (req->if_none_match.ptr != NULL)
        not_modified = webroot_etag_matches(req->if_none_match.ptr, req->if_none_match.len, etag);
    else if (req->if_modified_since.ptr != NULL &&
             webroot_http_date_parse(req->if_modified_since.ptr, req->if_modified_since.len, &since))
        not_modified = (int64_t)st->st_mtim.tv_sec <= since;

    webroot_head_start(out, reply, not_modified ? 304 : 200);
    evbuffer_add_printf(out, "Last-Modified: %s\r\nETag: %s\r\nCache-Control: no-cache\r\n", modified, etag);
    webroot_head_end(out, reply, webroot_content_type(name, name_len), size);
    if (not_modified || is_head || size == 0) {
        close(fd);
        return;
    }
    reply->body_len = size;
    reply->body = (struct webroot_body){.has_file = true, .fd = fd, .offset = 0, .remaining = size};
}

/* ---- listings ---- */

struct webroot_entry {
    char *name;
    bool is_dir;
};

static int
webroot_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct webroot_entry *)a)->name, ((const struct webroot_entry *)b)->name);
}

static void
webroot_add_html(struct evbuffer *body, const char *s, size_t len)
{
    static const char *const entities[256] = {
        ['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['"'] = "&quot;", ['\''] = "&#39;",
    };

    for (size_t i = 0; i < len; i++) {
        const char *e = entities[(unsigned char)s[i]];
        if (e != NULL)
            evbuffer_add(body, e, strlen(e));
        else
            evbuffer_add(body, s + i, 1);
    }
}

/* A name as one path segment of a URL: everything but unreserved characters escaped. */
static void
webroot_add_url_segment(struct evbuffer *body, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c))
            evbuffer_add(body, s, 1);
        else
            evbuffer_add_printf(body, "%%%02X", c);
    }
}

/* Read up to WEBROOT_LISTING_MAX entries of directory 'fd' (taken), sorted by name.
 * Returns the count, or -1 (fd closed). '*truncated' says whether some were left out. */
static long
webroot_read_dir(int fd, struct webroot_entry **entries, bool *truncated)
{
    DIR *d = fdopendir(fd);
    struct webroot_entry *list = NULL;
    size_t count = 0, cap = 0;
    struct dirent *e;

    *truncated = false;
    if (d == NULL) {
        close(fd);
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (count == WEBROOT_LISTING_MAX) {
            *truncated = true;
            break;
        }
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct webroot_entry *n = realloc(list, ncap * sizeof *n);
            if (n == NULL)
                break;
            list = n;
            cap = ncap;
        }
        bool is_dir = e->d_type == DT_DIR;
        struct stat st;
        if (e->d_type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            is_dir = S_ISDIR(st.st_mode);
        list[count].name = strdup(e->d_name);
        if (list[count].name == NULL)
            break;
        list[count++].is_dir = is_dir;
    }
    closedir(d);
    if (count > 0)
        qsort(list, count, sizeof *list, webroot_entry_cmp);
    *entries = list;
    return (long)count;
}

/* "Index of /dir/" with the directory's name escaped. */
static void
webroot_add_title(struct evbuffer *body, const char *rel, size_t rel_len)
{
    evbuffer_add_printf(body, "Index of /");
    webroot_add_html(body, rel, rel_len);
    if (rel_len > 0)
        evbuffer_add(body, "/", 1);
}

static void
webroot_listing(int fd, const char *rel, size_t rel_len, bool is_head, struct evbuffer *out,
                struct webroot_reply *reply)
{
    struct webroot_entry *entries = NULL;
    bool truncated;
    long count = webroot_read_dir(fd, &entries, &truncated);
    struct evbuffer *body = count >= 0 ? evbuffer_new() : NULL;

    if (body == NULL) {
        webroot_error(out, reply, is_head, 500, "cannot read the directory");
        free(entries);
        return;
    }
    evbuffer_add_printf(body, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    webroot_add_title(body, rel, rel_len);
    evbuffer_add_printf(body, "</title></head>\n<body><h1>");
    webroot_add_title(body, rel, rel_len);
    evbuffer_add_printf(body, "</h1>\n<ul>\n");
    if (rel_len > 0)
        evbuffer_add_printf(body, "<li><a href=\"../\">../</a></li>\n");
    for (long i = 0; i < count; i++) {
        evbuffer_add_printf(body, "<li><a href=\"");
        webroot_add_url_segment(body, entries[i].name);
        evbuffer_add_printf(body, "%s\">", entries[i].is_dir ? "/" : "");
        webroot_add_html(body, entries[i].name, strlen(entries[i].name));
        evbuffer_add_printf(body, "%s</a></li>\n", entries[i].is_dir ? "/" : "");
        free(entries[i].name);
    }
    free(entries);
    if (truncated)
        evbuffer_add_printf(body, "<li>(only the first %d entries are listed)</li>\n", WEBROOT_LISTING_MAX);
    evbuffer_add_printf(body, "</ul>\n</body></html>\n");

    size_t len = evbuffer_get_length(body);
    webroot_head_start(out, reply, 200);
    evbuffer_add_printf(out, "Cache-Control: no-cache\r\n");
    webroot_head_end(out, reply, "text/html; charset=utf-8", len);
    if (!is_head) {
        evbuffer_add_buffer(out, body);
        reply->body_len = len;
    }
    evbuffer_free(body);
}

/* The status for a failed open beneath the root. */
static int
webroot_open_status(int err, const char **reason)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        *reason = "not found";
        return 404;
    case EXDEV: /* a symlink or ".." that leads outside the root */
    case ELOOP:
    case EACCES:
    case EPERM:
        *reason = "forbidden";
        return 403;
    case EMFILE:
    case ENFILE:
        *reason = "out of file descriptors: try again later";
        return 503;
    default:
        *reason = "cannot open the file";
        return 500;
    }
}

/* A directory was asked for with its trailing '/': its index.html, a listing, or 403. */
static void
webroot_directory(const struct webroot *w, int fd, const char *rel, size_t rel_len, bool is_head,
                  const struct http_request *req, struct evbuffer *out, struct webroot_reply *reply)
{
    static const char index_name[] = "index.html";
    char path[WEBROOT_PATH_MAX + sizeof index_name];
    struct stat st;

    snprintf(path, sizeof path, "%s%s%s", rel, rel_len > 0 ? "/" : "", index_name);
    int index_fd = webroot_open_beneath(w->dir_fd, path);
    int err = errno;
    if (index_fd >= 0 && fstat(index_fd, &st) == 0 && S_ISREG(st.st_mode)) {
        close(fd);
        webroot_file(req, index_fd, &st, index_name, sizeof index_name - 1, is_head, out, reply);
        return;
    }
    if (index_fd >= 0) {
        close(index_fd);
        err = EACCES; /* index.html is there but is not a regular file */
    }
    if (err == ENOENT && w->listing) {
        webroot_listing(fd, rel, rel_len, is_head, out, reply);
        return;
    }
    close(fd);
    if (err == ENOENT)
        webroot_error(out, reply, is_head, 403, "no index.html, and directory listings are off");
    else
        webroot_error(out, reply, is_head, 403, "forbidden");
}

void
webroot_answer(const struct webroot *w, const struct http_request *req, struct evbuffer *out,
               struct webroot_reply *reply)
{
    char rel[WEBROOT_PATH_MAX];
    size_t rel_len;
    bool names_dir;
    bool is_head = webroot_method_is(req, "HEAD");
    struct stat st;
    const char *reason;

    memset(reply, 0, sizeof *reply);
    /* HTTP/1.1 keeps the connection by default, HTTP/1.0 only when asked (RFC 9112 §9.3).
     * A request with a body ends it: the body is never read, so the next head is lost. */
    reply->keep_alive = !req->has_body && !req->connection_close && req->version_major == 1 &&
                        (req->version_minor >= 1 || req->connection_keep_alive);
    if (!is_head && !webroot_method_is(req, "GET")) {
        reply->keep_alive = false;
        webroot_head_start(out, reply, 405);
        evbuffer_add_printf(out, "Allow: GET, HEAD\r\n");
        webroot_text(out, reply, false, "only GET and HEAD are served here");
        return;
    }
    if (req->version_major != 1) {
        reply->keep_alive = false;
        webroot_error(out, reply, is_head, 505, "HTTP/1.0 or HTTP/1.1 only");
        return;
    }
    if (req->version_minor >= 1 && (req->host_count != 1 || req->host.len == 0)) {
        reply->keep_alive = false; /* RFC 9112 §3.2 */
        webroot_error(out, reply, is_head, 400, "exactly one Host header is required");
        return;
    }
    enum webroot_path_result pr =
        webroot_path_normalize(req->path.ptr, req->path.len, rel, sizeof rel, &rel_len, &names_dir);
    if (pr != WEBROOT_PATH_OK) {
        webroot_error(out, reply, is_head, webroot_path_result_status(pr), webroot_path_result_str(pr));
        return;
    }
    int fd = webroot_open_beneath(w->dir_fd, rel_len > 0 ? rel : ".");
    if (fd == -1) {
        int status = webroot_open_status(errno, &reason);
        webroot_error(out, reply, is_head, status, reason);
        return;
    }
    if (fstat(fd, &st) == -1) {
        close(fd);
        webroot_error(out, reply, is_head, 500, "cannot read the file");
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (!names_dir) {
            close(fd);
            webroot_redirect(req, is_head, out, reply);
            return;
        }
        webroot_directory(w, fd, rel, rel_len, is_head, req, out, reply);
        return;
    }
    if (!S_ISREG(st.st_mode) || names_dir) {
        close(fd); /* devices, FIFOs and sockets are never served; "file/" names no file */
        webroot_error(out, reply, is_head, names_dir ? 404 : 403,
                      names_dir ? "not found" : "not a regular file");
        return;
    }
    const char *base = strrchr(rel, '/');
    base = base != NULL ? base + 1 : rel;
    webroot_file(req, fd, &st, base, strlen(base), is_head, out, reply);
}

/* ---- bodies ---- */

static void
webroot_segment_gone(const struct evbuffer_file_segment *seg, int flags, void *arg)
{
    (void)seg;
    (void)flags;
    *(bool *)arg = true;
}

int
webroot_body_fill(struct webroot_body *b, struct evbuffer *out, size_t max)
{
    size_t n = b->remaining < max ? (size_t)b->remaining : max;
    bool last = n == b->remaining;
    bool gone = false;
    int rv = -1;

    if (!b->has_file || n == 0)
        return 0;
    /* Each segment owns a descriptor of its own: a sendfile segment reads the file only
     * when the socket takes it, long after this returns. The last one takes ours. */
    int fd = last ? b->fd : fcntl(b->fd, F_DUPFD_CLOEXEC, 0);
    if (fd == -1)
        goto fail;
    if (last)
        b->has_file = false;
    /* No mmap: a file truncated while mapped would raise SIGBUS; read in, it is an error. */
    struct evbuffer_file_segment *seg =
        evbuffer_file_segment_new(fd, (ev_off_t)b->offset, (ev_off_t)n,
                                  EVBUF_FS_CLOSE_ON_FREE | EVBUF_FS_DISABLE_MMAP | EVBUF_FS_DISABLE_LOCKING);
    if (seg == NULL) {
        close(fd);
        goto fail;
    }
    /* libevent 2.1 drops the caller's reference itself on some failures of
     * evbuffer_add_file_segment and not on others; the cleanup callback tells which. */
    evbuffer_file_segment_add_cleanup_cb(seg, webroot_segment_gone, &gone);
    rv = evbuffer_add_file_segment(out, seg, 0, (ev_off_t)n);
    if (!gone) {
        evbuffer_file_segment_add_cleanup_cb(seg, NULL, NULL);
        evbuffer_file_segment_free(seg);
    }
    if (rv == -1)
        goto fail;
    b->offset += n;
    b->remaining -= n;
    return 0;
fail:;
    int err = errno != 0 ? errno : EIO;
    webroot_body_cleanup(b);
    errno = err;
    return -1;
}

void
webroot_body_cleanup(struct webroot_body *b)
{
    if (b->has_file)
        close(b->fd);
    b->has_file = false;
    b->remaining = 0;
}
