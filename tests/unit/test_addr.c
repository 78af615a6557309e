/* test_addr.c - address parsing ("host:port", "[v6]:port", "port", "unix:/path") under each
 * flag, the errors for each kind of mistake, and formatting round trips. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "check.h"

static const char *
result_name(enum addr_parse_result r)
{
    static const char *const names[] = {"OK",           "EMPTY",          "NO_PORT", "BAD_PORT",
                                        "BAD_HOST",     "NEEDS_BRACKETS", "NO_HOST", "UNIX_NOT_ALLOWED",
                                        "BAD_UNIX_PATH"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}

#define ANY_FLAGS (ADDR_ALLOW_UNIX | ADDR_ALLOW_NO_HOST | ADDR_ALLOW_PORT_ZERO)

struct addr_case {
    const char *text;
    unsigned flags;
    enum addr_parse_result want;
    /* on ADDR_OK: */
    enum addr_kind kind;
    const char *host;
    uint16_t port;
    int family;            /* AF_INET, AF_INET6, AF_UNIX, or 0 for a name (not numeric) */
    const char *formatted; /* addr_format() */
};

static const struct addr_case cases[] = {
    /* host:port forms */
    {"example.com:80", 0, ADDR_OK, ADDR_INET, "example.com", 80, 0, "example.com:80"},
    {"localhost:6080", 0, ADDR_OK, ADDR_INET, "localhost", 6080, 0, "localhost:6080"},
    {"my_host-1.example:1", 0, ADDR_OK, ADDR_INET, "my_host-1.example", 1, 0, "my_host-1.example:1"},
    {"example.com.:443", 0, ADDR_OK, ADDR_INET, "example.com.", 443, 0, "example.com.:443"},
    {"1.2.3.4:65535", 0, ADDR_OK, ADDR_INET, "1.2.3.4", 65535, AF_INET, "1.2.3.4:65535"},
    {"127.0.0.1:5900", 0, ADDR_OK, ADDR_INET, "127.0.0.1", 5900, AF_INET, "127.0.0.1:5900"},
    {"[::1]:80", 0, ADDR_OK, ADDR_INET, "::1", 80, AF_INET6, "[::1]:80"},
    {"[2001:db8::1]:443", 0, ADDR_OK, ADDR_INET, "2001:db8::1", 443, AF_INET6, "[2001:db8::1]:443"},
    {"[::ffff:1.2.3.4]:80", 0, ADDR_OK, ADDR_INET, "::ffff:1.2.3.4", 80, AF_INET6, "[::ffff:1.2.3.4]:80"},
    {"host:0080", 0, ADDR_OK, ADDR_INET, "host", 80, 0, "host:80"},

    /* port 0 */
    {"host:0", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"127.0.0.1:0", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"127.0.0.1:0", ADDR_ALLOW_PORT_ZERO, ADDR_OK, ADDR_INET, "127.0.0.1", 0, AF_INET, "127.0.0.1:0"},
    {"[::1]:0", ADDR_ALLOW_PORT_ZERO, ADDR_OK, ADDR_INET, "::1", 0, AF_INET6, "[::1]:0"},

    /* no host: every address */
    {"6080", 0, ADDR_NO_HOST, 0, NULL, 0, 0, NULL},
    {":6080", 0, ADDR_NO_HOST, 0, NULL, 0, 0, NULL},
    {"*:6080", 0, ADDR_NO_HOST, 0, NULL, 0, 0, NULL},
    {"6080", ADDR_ALLOW_NO_HOST, ADDR_OK, ADDR_INET, "", 6080, AF_INET6, "*:6080"},
    {":6080", ADDR_ALLOW_NO_HOST, ADDR_OK, ADDR_INET, "", 6080, AF_INET6, "*:6080"},
    {"*:6080", ADDR_ALLOW_NO_HOST, ADDR_OK, ADDR_INET, "", 6080, AF_INET6, "*:6080"},
    {"0", ADDR_ALLOW_NO_HOST, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"0", ADDR_ALLOW_NO_HOST | ADDR_ALLOW_PORT_ZERO, ADDR_OK, ADDR_INET, "", 0, AF_INET6, "*:0"},
    {"*", ADDR_ALLOW_NO_HOST, ADDR_NO_PORT, 0, NULL, 0, 0, NULL},

    /* IPv6 needs brackets */
    {"::1:80", 0, ADDR_NEEDS_BRACKETS, 0, NULL, 0, 0, NULL},
    {"2001:db8::1:443", 0, ADDR_NEEDS_BRACKETS, 0, NULL, 0, 0, NULL},
    {"fe80::1", ANY_FLAGS, ADDR_NEEDS_BRACKETS, 0, NULL, 0, 0, NULL},
    {"[::1]", 0, ADDR_NO_PORT, 0, NULL, 0, 0, NULL},
    {"[::1]:", 0, ADDR_NO_PORT, 0, NULL, 0, 0, NULL},
    {"[::1]80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"[::1:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"[]:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"[1.2.3.4]:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"[example.com]:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"[::g]:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},

    /* bad ports */
    {"host:65536", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"host:99999999999999999999", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"host:-1", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"host:+80", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"host:8o", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"host:80 ", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"host: 80", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"host:http", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"[::1]:65536", 0, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"65536", ADDR_ALLOW_NO_HOST, ADDR_BAD_PORT, 0, NULL, 0, 0, NULL},
    {"host:", 0, ADDR_NO_PORT, 0, NULL, 0, 0, NULL},
    {"host", 0, ADDR_NO_PORT, 0, NULL, 0, 0, NULL},
    {"example.com", ANY_FLAGS, ADDR_NO_PORT, 0, NULL, 0, 0, NULL},
    {"", 0, ADDR_EMPTY, 0, NULL, 0, 0, NULL},
    {"", ANY_FLAGS, ADDR_EMPTY, 0, NULL, 0, 0, NULL},

    /* bad hosts */
    {"a b:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"999.1.1.1:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"1.2.3:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"1.2.3.4.5:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"a..b:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {".example.com:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"exa$mple.com:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"exa/mple:80", 0, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    {"*.example.com:80", ANY_FLAGS, ADDR_BAD_HOST, 0, NULL, 0, 0, NULL},
    /* 63-character label: the longest allowed */
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example:80", 0, ADDR_OK, ADDR_INET,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", 80, 0,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example:80"},
    /* 64-character label */
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example:80", 0, ADDR_BAD_HOST, 0, NULL,
     0, 0, NULL},

    /* unix sockets */
    {"unix:/run/vnc.sock", 0, ADDR_UNIX_NOT_ALLOWED, 0, NULL, 0, 0, NULL},
    {"unix:/run/vnc.sock", ADDR_ALLOW_NO_HOST | ADDR_ALLOW_PORT_ZERO, ADDR_UNIX_NOT_ALLOWED, 0, NULL, 0, 0,
     NULL},
    {"unix:/run/vnc.sock", ADDR_ALLOW_UNIX, ADDR_OK, ADDR_UNIX, "/run/vnc.sock", 0, AF_UNIX,
     "unix:/run/vnc.sock"},
    {"unix:/tmp/a:b", ADDR_ALLOW_UNIX, ADDR_OK, ADDR_UNIX, "/tmp/a:b", 0, AF_UNIX, "unix:/tmp/a:b"},
    {"unix:", ADDR_ALLOW_UNIX, ADDR_BAD_UNIX_PATH, 0, NULL, 0, 0, NULL},
};

static void
test_parse(void)
{
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const struct addr_case *c = &cases[t];
        struct addr a;
        char buf[ADDR_STR_MAX];

        memset(&a, 0x5a, sizeof a);
        enum addr_parse_result r = addr_parse(c->text, c->flags, &a);
        CHECK(r == c->want);
        if (r != c->want) {
            fprintf(stderr, "  addr_parse(\"%s\", %#x): got %s, want %s\n", c->text, c->flags, result_name(r),
                    result_name(c->want));
            continue;
        }
        if (r != ADDR_OK)
            continue;
        CHECK(a.kind == c->kind);
        CHECK(strcmp(a.host, c->host) == 0);
        if (c->kind == ADDR_INET)
            CHECK(a.port == c->port);
        CHECK(a.is_numeric == (c->family != 0));
        if (c->family != 0) {
            CHECK(a.sa.ss_family == c->family);
            if (c->family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)&a.sa;
                struct in_addr want;
                CHECK(a.sa_len == sizeof *sin);
                CHECK(ntohs(sin->sin_port) == c->port);
                CHECK(inet_pton(AF_INET, c->host, &want) == 1 &&
                      memcmp(&sin->sin_addr, &want, sizeof want) == 0);
            } else if (c->family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)&a.sa;
                struct in6_addr want;
                CHECK(a.sa_len == sizeof *sin6);
                CHECK(ntohs(sin6->sin6_port) == c->port);
                if (c->host[0] == '\0') /* any address */
                    CHECK(memcmp(&sin6->sin6_addr, &in6addr_any, sizeof in6addr_any) == 0);
                else
                    CHECK(inet_pton(AF_INET6, c->host, &want) == 1 &&
                          memcmp(&sin6->sin6_addr, &want, sizeof want) == 0);
            } else {
                const struct sockaddr_un *un = (const struct sockaddr_un *)(const void *)&a.sa;
                CHECK(strcmp(un->sun_path, c->host) == 0);
                CHECK(a.sa_len >= offsetof(struct sockaddr_un, sun_path) + strlen(c->host));
            }
        }
        CHECK(strcmp(addr_format(&a, buf, sizeof buf), c->formatted) == 0);
    }
}

/* Addresses at the size limits. */
static void
test_limits(void)
{
    struct addr a;
    char text[ADDR_STR_MAX + 200];
    size_t path_max = sizeof((struct sockaddr_un *)0)->sun_path - 1; /* and a NUL */

    /* the longest unix path that fits sun_path, and one byte more */
    memcpy(text, "unix:/", 6);
    memset(text + 6, 'p', path_max - 1);
    text[5 + path_max] = '\0';
    CHECK(addr_parse(text, ADDR_ALLOW_UNIX, &a) == ADDR_OK);
    CHECK(strlen(a.host) == path_max);
    text[5 + path_max] = 'p';
    text[6 + path_max] = '\0';
    CHECK(addr_parse(text, ADDR_ALLOW_UNIX, &a) == ADDR_BAD_UNIX_PATH);
    memset(text + 6, 'p', 300);
    text[306] = '\0';
    CHECK(addr_parse(text, ADDR_ALLOW_UNIX, &a) == ADDR_BAD_UNIX_PATH);

    /* a 253-character name (labels of 63) fits; 254 does not */
    size_t len = 0;
    for (int label = 0; label < 4; label++) {
        if (label > 0)
            text[len++] = '.';
        size_t n = label < 3 ? 63 : 253 - 3 * 64;
        memset(text + len, 'a' + label, n);
        len += n;
    }
    CHECK(len == 253);
    memcpy(text + len, ":80", 4);
    CHECK(addr_parse(text, 0, &a) == ADDR_OK);
    CHECK(strlen(a.host) == 253);
    char buf[ADDR_STR_MAX];
    CHECK(strlen(addr_format(&a, buf, sizeof buf)) == 256); /* fits in ADDR_STR_MAX */
    memmove(text + len + 1, text + len, 4);                 /* one more character in the last label */
    text[len] = 'd';
    CHECK(addr_parse(text, 0, &a) == ADDR_BAD_HOST);
    /* and far too long, bracketed or not, is an error, not an overflow */
    memset(text, 'a', 400);
    memcpy(text + 400, ":80", 4);
    CHECK(addr_parse(text, 0, &a) == ADDR_BAD_HOST);
    text[0] = '[';
    memcpy(text + 400, "]:80", 5);
    CHECK(addr_parse(text, 0, &a) == ADDR_BAD_HOST);
}

/* '*out' is filled only on ADDR_OK. */
static void
test_out_untouched(void)
{
    static const struct {
        const char *text;
        unsigned flags;
    } bad[] = {
        {"", 0},         {"host:0", 0},     {"a b:80", 0}, {"999.1.1.1:80", 0},
        {"[::g]:80", 0}, {"*:6080", 0},     {":6080", 0},  {"unix:", ADDR_ALLOW_UNIX},
        {"::1:80", 0},   {"host:65536", 0},
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        struct addr a, before;
        memset(&a, 0x5a, sizeof a);
        before = a;
        enum addr_parse_result r = addr_parse(bad[t].text, bad[t].flags, &a);
        CHECK(r != ADDR_OK);
        CHECK(memcmp(&a, &before, sizeof a) == 0);
        if (memcmp(&a, &before, sizeof a) != 0)
            fprintf(stderr, "  addr_parse(\"%s\") -> %s changed *out\n", bad[t].text, result_name(r));
    }
}

/* addr_format_sockaddr() of a parsed numeric address gives back the text, which parses
 * to the same socket address. */
static void
test_format_sockaddr(void)
{
    static const struct {
        const char *text;
        const char *formatted;
    } cases_fs[] = {
        {"1.2.3.4:65535", "1.2.3.4:65535"},
        {"127.0.0.1:80", "127.0.0.1:80"},
        {"0.0.0.0:1", "0.0.0.0:1"},
        {"[::1]:80", "[::1]:80"},
        {"[2001:DB8:0:0:0:0:0:1]:443", "[2001:db8::1]:443"}, /* canonical form */
        {"[::ffff:10.0.0.1]:8080", "[::ffff:10.0.0.1]:8080"},
        {"unix:/run/wsplice/backend.sock", "unix:/run/wsplice/backend.sock"},
        {"*:6080", "[::]:6080"},
    };
    for (size_t t = 0; t < sizeof cases_fs / sizeof cases_fs[0]; t++) {
        struct addr a, b;
        char buf[ADDR_STR_MAX];

        CHECK(addr_parse(cases_fs[t].text, ADDR_ALLOW_UNIX | ADDR_ALLOW_NO_HOST, &a) == ADDR_OK);
        CHECK(addr_format_sockaddr((const struct sockaddr *)&a.sa, a.sa_len, buf, sizeof buf) == buf);
        CHECK(strcmp(buf, cases_fs[t].formatted) == 0);
        if (strcmp(buf, cases_fs[t].formatted) != 0)
            fprintf(stderr, "  addr_format_sockaddr(%s) = \"%s\"\n", cases_fs[t].text, buf);
        /* and back */
        CHECK(addr_parse(buf, ADDR_ALLOW_UNIX, &b) == ADDR_OK);
        CHECK(b.sa_len == a.sa_len && memcmp(&b.sa, &a.sa, a.sa_len) == 0);
    }

    /* Formatting into a short buffer truncates, and terminates. */
    struct addr a;
    char small[8];
    memset(small, '#', sizeof small);
    CHECK(addr_parse("[2001:db8::1]:443", 0, &a) == ADDR_OK);
    addr_format_sockaddr((const struct sockaddr *)&a.sa, a.sa_len, small, sizeof small);
    CHECK(memchr(small, '\0', sizeof small) != NULL);
    memset(small, '#', sizeof small);
    addr_format(&a, small, sizeof small);
    CHECK(memchr(small, '\0', sizeof small) != NULL);

    /* An unknown family is named, not misread. */
    struct sockaddr_storage ss;
    char buf[ADDR_STR_MAX];
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNSPEC;
    addr_format_sockaddr((const struct sockaddr *)&ss, sizeof ss, buf, sizeof buf);
    CHECK(buf[0] != '\0' && strchr(buf, ':') == NULL);
}

/* Formatting round trips: parse, format, parse again, same result. */
static void
test_round_trip(void)
{
    static const char *const texts[] = {"example.com:80", "1.2.3.4:65535", "[::1]:80", "unix:/tmp/s",
                                        "*:6080",         "6080",          "0"};
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        struct addr a, b;
        char buf[ADDR_STR_MAX], buf2[ADDR_STR_MAX];
        CHECK(addr_parse(texts[t], ADDR_ALLOW_UNIX | ADDR_ALLOW_NO_HOST | ADDR_ALLOW_PORT_ZERO, &a) ==
              ADDR_OK);
        addr_format(&a, buf, sizeof buf);
        CHECK(addr_parse(buf, ADDR_ALLOW_UNIX | ADDR_ALLOW_NO_HOST | ADDR_ALLOW_PORT_ZERO, &b) == ADDR_OK);
        CHECK(strcmp(addr_format(&b, buf2, sizeof buf2), buf) == 0);
        CHECK(a.kind == b.kind && a.port == b.port && strcmp(a.host, b.host) == 0);
        CHECK(a.is_numeric == b.is_numeric);
        if (a.is_numeric)
            CHECK(a.sa_len == b.sa_len && memcmp(&a.sa, &b.sa, a.sa_len) == 0);
    }
}

static void
test_strings(void)
{
    for (int r = ADDR_OK; r <= ADDR_BAD_UNIX_PATH; r++) {
        const char *s = addr_parse_result_str((enum addr_parse_result)r);
        CHECK(s != NULL && *s != '\0' && strcmp(s, "unknown") != 0);
        for (int q = ADDR_OK; q < r; q++)
            CHECK(strcmp(s, addr_parse_result_str((enum addr_parse_result)q)) != 0);
    }
}

int
main(void)
{
    test_parse();
    test_limits();
    test_out_untouched();
    test_format_sockaddr();
    test_round_trip();
    test_strings();
    return check_report();
}
