/* test_webroot.c - the web root's pure parts: the request-path normaliser against every
 * traversal trick (dot segments, percent-encoded dots and slashes, NUL and control bytes,
 * backslashes, double encoding), output limits at every size, Content-Type by extension,
 * IMF-fixdate formatting and parsing, and If-None-Match matching. */
#include "webroot.h"

#include <string.h>

#include "check.h"

struct norm_case {
    const char *in;
    enum webroot_path_result want;
    const char *out; /* when WEBROOT_PATH_OK */
    bool names_dir;  /* when WEBROOT_PATH_OK */
};

static const struct norm_case norm_cases[] = {
    /* plain paths */
    {"/", WEBROOT_PATH_OK, "", true},
    {"/index.html", WEBROOT_PATH_OK, "index.html", false},
    {"/a/b/c.js", WEBROOT_PATH_OK, "a/b/c.js", false},
    {"/a/b/", WEBROOT_PATH_OK, "a/b", true},
    {"//a///b", WEBROOT_PATH_OK, "a/b", false},
    {"/a//", WEBROOT_PATH_OK, "a", true},
    {"/.hidden", WEBROOT_PATH_OK, ".hidden", false},
    {"/...", WEBROOT_PATH_OK, "...", false},
    {"/a/..b", WEBROOT_PATH_OK, "a/..b", false},
    {"/a/b..", WEBROOT_PATH_OK, "a/b..", false},
    /* dot segments that stay inside */
    {"/.", WEBROOT_PATH_OK, "", true},
    {"/./", WEBROOT_PATH_OK, "", true},
    {"/a/./b", WEBROOT_PATH_OK, "a/b", false},
    {"/a/../b", WEBROOT_PATH_OK, "b", false},
    {"/a/b/..", WEBROOT_PATH_OK, "a", true},
    {"/a/b/../", WEBROOT_PATH_OK, "a", true},
    {"/a/..", WEBROOT_PATH_OK, "", true},
    {"/a/b/../../c", WEBROOT_PATH_OK, "c", false},
    {"/a/.../../b", WEBROOT_PATH_OK, "a/b", false},
    {"/aa/bb/cc/../../dd", WEBROOT_PATH_OK, "aa/dd", false},
    /* dot segments that leave the root */
    {"/..", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/../", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/../etc/passwd", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/a/../../etc/passwd", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/a/b/../../..", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/./../x", WEBROOT_PATH_ESCAPES, NULL, false},
    {"//../x", WEBROOT_PATH_ESCAPES, NULL, false},
    /* the same, percent-encoded (decoded once, then resolved) */
    {"/%2e%2e/etc/passwd", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/%2E%2E/etc/passwd", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/.%2e/x", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/%2e./x", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/a/%2e%2e/%2e%2e/x", WEBROOT_PATH_ESCAPES, NULL, false},
    {"/a/%2e%2e/b", WEBROOT_PATH_OK, "b", false},
    {"/%2e", WEBROOT_PATH_OK, "", true},
    {"/a/%2e/b", WEBROOT_PATH_OK, "a/b", false},
    /* encoded separators, NUL, control bytes and backslashes */
    {"/..%2fetc%2fpasswd", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/%2e%2e%2fetc", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/a%2fb", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/a%2Fb", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/%2f", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/index.html%00.png", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/%00", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/a%0ab", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/a%0db", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/a%1fb", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/a%7fb", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/a\x01"
     "b",
     WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/..\\..\\etc\\passwd", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/a\\b", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/%5c..%5cetc", WEBROOT_PATH_FORBIDDEN, NULL, false},
    {"/%5C", WEBROOT_PATH_FORBIDDEN, NULL, false},
    /* decoded once only: a double-encoded dot is a literal "%2e" in a name */
    {"/%252e%252e/x", WEBROOT_PATH_OK, "%2e%2e/x", false},
    {"/%252f", WEBROOT_PATH_OK, "%2f", false},
    {"/%25", WEBROOT_PATH_OK, "%", false},
    /* other escapes */
    {"/a%20b.txt", WEBROOT_PATH_OK, "a b.txt", false},
    {"/%C3%A9t%C3%A9.txt", WEBROOT_PATH_OK, "\xc3\xa9t\xc3\xa9.txt", false},
    {"/%41%62c", WEBROOT_PATH_OK, "Abc", false},
    {"/%", WEBROOT_PATH_BAD_ESCAPE, NULL, false},
    {"/%4", WEBROOT_PATH_BAD_ESCAPE, NULL, false},
    {"/%zz", WEBROOT_PATH_BAD_ESCAPE, NULL, false},
    {"/%4g", WEBROOT_PATH_BAD_ESCAPE, NULL, false},
    {"/%g4", WEBROOT_PATH_BAD_ESCAPE, NULL, false},
    {"/a%", WEBROOT_PATH_BAD_ESCAPE, NULL, false},
    {"/a%2", WEBROOT_PATH_BAD_ESCAPE, NULL, false},
    {"/%%2e", WEBROOT_PATH_BAD_ESCAPE, NULL, false},
    /* not origin-form */
    {"", WEBROOT_PATH_NOT_ABSOLUTE, NULL, false},
    {"a", WEBROOT_PATH_NOT_ABSOLUTE, NULL, false},
    {"*", WEBROOT_PATH_NOT_ABSOLUTE, NULL, false},
    {"http://example.org/", WEBROOT_PATH_NOT_ABSOLUTE, NULL, false},
    {"../etc/passwd", WEBROOT_PATH_NOT_ABSOLUTE, NULL, false},
    {"\\etc", WEBROOT_PATH_NOT_ABSOLUTE, NULL, false},
};

static void
test_normalize_table(void)
{
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        const struct norm_case *c = &norm_cases[i];
        char out[256];
        size_t out_len = 99;
        bool dir = !c->names_dir;
        enum webroot_path_result r =
            webroot_path_normalize(c->in, strlen(c->in), out, sizeof out, &out_len, &dir);
        CHECK(r == c->want);
        if (r != c->want) {
            fprintf(stderr, "  case %zu \"%s\": got %s, want %s\n", i, c->in, webroot_path_result_str(r),
                    webroot_path_result_str(c->want));
            continue;
        }
        if (r != WEBROOT_PATH_OK)
            continue;
        CHECK(out_len == strlen(c->out) && strcmp(out, c->out) == 0);
        CHECK(dir == c->names_dir);
        if (strcmp(out, c->out) != 0 || dir != c->names_dir)
            fprintf(stderr, "  case %zu \"%s\": got \"%s\" dir=%d\n", i, c->in, out, dir);
    }
}

/* The length counts, not a NUL: a path with an embedded NUL is refused, not cut short. */
static void
test_normalize_raw_nul(void)
{
    static const char path[] = "/index.html\0../../etc/passwd";
    char out[64];
    size_t out_len;
    bool dir;

    CHECK(webroot_path_normalize(path, sizeof path - 1, out, sizeof out, &out_len, &dir) ==
          WEBROOT_PATH_FORBIDDEN);
}

/* Every output size: the result either fits with its NUL or is TOO_LONG, never cut. */
static void
test_normalize_sizes(void)
{
    static const char path[] = "/abc/./de/../fgh/%69j";
    const char *want = "abc/fgh/ij";
    char out[32];
    size_t out_len;
    bool dir;

    for (size_t size = 0; size < sizeof out; size++) {
        memset(out, 'X', sizeof out);
        enum webroot_path_result r = webroot_path_normalize(path, sizeof path - 1, out, size, &out_len, &dir);
        if (size > strlen(want)) {
            CHECK(r == WEBROOT_PATH_OK && strcmp(out, want) == 0);
        } else {
            CHECK(r == WEBROOT_PATH_TOO_LONG);
        }
        for (size_t k = size; k < sizeof out; k++)
            CHECK(out[k] == 'X'); /* nothing written past 'size' */
    }
}

/* Normalising a normalised path (with '/' in front) changes nothing: no second decoding
 * can happen downstream, since what comes out holds no escapes that mean anything. */
static void
test_normalize_idempotent(void)
{
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        const struct norm_case *c = &norm_cases[i];
        char once[256], again_in[260], again[256];
        size_t n1, n2;
        bool d1, d2;
        if (webroot_path_normalize(c->in, strlen(c->in), once, sizeof once, &n1, &d1) != WEBROOT_PATH_OK)
            continue;
        /* Re-encode '%' so the literal bytes survive one decoding. */
        size_t o = 0;
        again_in[o++] = '/';
        for (size_t k = 0; k < n1 && o + 4 < sizeof again_in; k++) {
            if (once[k] == '%') {
                memcpy(again_in + o, "%25", 3);
                o += 3;
            } else {
                again_in[o++] = once[k];
            }
        }
        CHECK(webroot_path_normalize(again_in, o, again, sizeof again, &n2, &d2) == WEBROOT_PATH_OK);
        CHECK(n2 == n1 && memcmp(again, once, n1) == 0);
    }
}

static void
test_result_statuses(void)
{
    CHECK(webroot_path_result_status(WEBROOT_PATH_ESCAPES) == 403);
    CHECK(webroot_path_result_status(WEBROOT_PATH_FORBIDDEN) == 403);
    CHECK(webroot_path_result_status(WEBROOT_PATH_BAD_ESCAPE) == 400);
    CHECK(webroot_path_result_status(WEBROOT_PATH_NOT_ABSOLUTE) == 400);
    CHECK(webroot_path_result_status(WEBROOT_PATH_TOO_LONG) == 414);
    for (int r = WEBROOT_PATH_OK; r <= WEBROOT_PATH_TOO_LONG; r++)
        CHECK(strcmp(webroot_path_result_str((enum webroot_path_result)r), "unknown") != 0);
}

static void
test_content_types(void)
{
    static const struct {
        const char *name, *type;
    } cases[] = {
        {"index.html", "text/html; charset=utf-8"},
        {"INDEX.HTM", "text/html; charset=utf-8"},
        {"style.css", "text/css; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"rfb.mjs", "text/javascript; charset=utf-8"},
        {"package.json", "application/json"},
        {"app.js.map", "application/json"},
        {"logo.svg", "image/svg+xml"},
        {"a.png", "image/png"},
        {"a.JPG", "image/jpeg"},
        {"a.jpeg", "image/jpeg"},
        {"a.gif", "image/gif"},
        {"favicon.ico", "image/vnd.microsoft.icon"},
        {"mod.wasm", "application/wasm"},
        {"notes.txt", "text/plain; charset=utf-8"},
        {"font.woff", "font/woff"},
        {"font.woff2", "font/woff2"},
        {"site.webmanifest", "application/manifest+json"},
        {"archive.tar.gz", "application/gzip"},
        {"README", "application/octet-stream"},
        {".htaccess", "application/octet-stream"},
        {"x.", "application/octet-stream"},
        {"x.unknownext", "application/octet-stream"},
        {"x.html.bak", "application/octet-stream"},
        {"", "application/octet-stream"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = webroot_content_type(cases[i].name, strlen(cases[i].name));
        CHECK(strcmp(got, cases[i].type) == 0);
        if (strcmp(got, cases[i].type) != 0)
            fprintf(stderr, "  %s: got %s\n", cases[i].name, got);
    }
}

static void
test_http_dates(void)
{
    char buf[WEBROOT_DATE_LEN + 1];
    int64_t t = 0;

    /* RFC 9110 §5.6.7's example */
    CHECK(webroot_http_date_format(784111777, buf) == WEBROOT_DATE_LEN);
    CHECK(strcmp(buf, "Sun, 06 Nov 1994 08:49:37 GMT") == 0);
    CHECK(webroot_http_date_parse(buf, strlen(buf), &t) && t == 784111777);
    webroot_http_date_format(0, buf);
    CHECK(strcmp(buf, "Thu, 01 Jan 1970 00:00:00 GMT") == 0);
    webroot_http_date_format(951782400, buf); /* a leap day */
    CHECK(strcmp(buf, "Tue, 29 Feb 2000 00:00:00 GMT") == 0);
    CHECK(webroot_http_date_parse(buf, strlen(buf), &t) && t == 951782400);

    /* Every day over a few centuries round-trips. */
    bool all = true;
    for (int64_t d = -40000; d < 80000 && all; d += 7) {
        int64_t when = d * 86400 + 45296, back = 0; /* 12:34:56 */
        webroot_http_date_format(when, buf);
        all = webroot_http_date_parse(buf, strlen(buf), &back) && back == when;
    }
    CHECK(all);

    static const char *const bad[] = {
        "Sunday, 06-Nov-94 08:49:37 GMT", /* RFC 850: obsolete, not accepted */
        "Sun Nov  6 08:49:37 1994",       /* asctime */
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 19a4 08:49:37 GMT",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!webroot_http_date_parse(bad[i], strlen(bad[i]), &t));
}

static void
test_etags(void)
{
    const char *tag = "\"1a-5f00-0\"";
    static const struct {
        const char *header;
        bool match;
    } cases[] = {
        {"\"1a-5f00-0\"", true},
        {"W/\"1a-5f00-0\"", true}, /* weak comparison */
        {"*", true},
        {"\"x\", \"1a-5f00-0\"", true},
        {"\"x\",\"1a-5f00-0\" , \"y\"", true},
        {"\"1a-5f00-1\"", false},
        {"1a-5f00-0", false}, /* not quoted: not an entity tag */
        {"\"1a-5f00-0", false},
        {"", false},
        {"\"\"", false},
        {"bogus, \"1a-5f00-0\"", true},
        {"W/", false},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = webroot_etag_matches(cases[i].header, strlen(cases[i].header), tag);
        CHECK(got == cases[i].match);
        if (got != cases[i].match)
            fprintf(stderr, "  If-None-Match: %s\n", cases[i].header);
    }
    CHECK(webroot_etag_matches("\"abc\"", 5, "W/\"abc\""));
}

int
main(void)
{
    test_normalize_table();
    test_normalize_raw_nul();
    test_normalize_sizes();
    test_normalize_idempotent();
    test_result_statuses();
    test_content_types();
    test_http_dates();
    test_etags();
    return check_report();
}
