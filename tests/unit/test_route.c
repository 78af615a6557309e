/* test_route.c - the route table: path and host matching and their precedence, Host header
 * normalisation, listener masks, session limits, deep copies and reference counting. */
#include "route.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Add a route. 'pattern' is as in the config ("/vnc" or "/vnc*"); 'hosts' is a
 * NULL-terminated list, or NULL for any host. */
static const struct route *
add_route(struct route_table *t, const char *name, const char *pattern, const char *const *hosts,
          uint64_t mask, uint32_t max_sessions)
{
    char path[256];
    char *host_copies[8];
    struct route r;
    size_t len = strlen(pattern);

    memset(&r, 0, sizeof r);
    r.is_prefix = len > 0 && pattern[len - 1] == '*';
    memcpy(path, pattern, len + 1);
    if (r.is_prefix)
        path[--len] = '\0';
    r.name = (char *)(uintptr_t)name;
    r.path = path;
    r.path_len = len;
    while (hosts != NULL && hosts[r.host_count] != NULL && r.host_count < 8) {
        host_copies[r.host_count] = (char *)(uintptr_t)hosts[r.host_count];
        r.host_count++;
    }
    r.hosts = r.host_count ? host_copies : NULL;
    r.listener_mask = mask;
    r.limits.max_sessions = max_sessions;
    if (addr_parse("127.0.0.1:5900", 0, &r.target) != ADDR_OK)
        return NULL;
    if (route_table_add(t, &r) != 0)
        return NULL;
    return route_table_get(t, route_table_count(t) - 1);
}

static const char *
lookup_name(const struct route_table *t, unsigned listener, const char *host, const char *path)
{
    const struct route *r =
        route_lookup(t, listener, host, host ? strlen(host) : 0, path, path ? strlen(path) : 0);
    return r ? r->name : NULL;
}

static bool
name_is(const char *got, const char *want)
{
    if (want == NULL || got == NULL)
        return got == want;
    return strcmp(got, want) == 0;
}

/* ---- lookups ---- */

static const char *const example_hosts[] = {"example.com", NULL};
static const char *const wildcard_hosts[] = {"*.example.com", NULL};
static const char *const other_hosts[] = {"other.test", "www.other.test", NULL};
static const char *const v6_hosts[] = {"::1", NULL};

struct lookup_case {
    unsigned listener;
    const char *host;
    const char *path;
    const char *want; /* route name, or NULL */
};

static void
test_lookup(void)
{
    struct route_table *t = route_table_new();

    if (t == NULL) {
        CHECK(!"route_table_new failed");
        return;
    }
    CHECK(route_table_count(t) == 0);
    CHECK(lookup_name(t, 0, "example.com", "/") == NULL);

    add_route(t, "root-prefix", "/*", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "vnc-prefix", "/vnc*", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "vnc-deep-prefix", "/vnc/deep/*", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "vnc-exact", "/vnc", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "exact-only", "/exact", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "host-vnc", "/vnc", example_hosts, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "host-prefix", "/app*", example_hosts, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "app-exact", "/app", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "wild", "/w", wildcard_hosts, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "other", "/w", other_hosts, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "v6", "/w", v6_hosts, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "listener1", "/l", NULL, UINT64_C(1) << 1, 0);
    add_route(t, "listener0-2", "/l", NULL, UINT64_C(1) | UINT64_C(1) << 2, 0);
    add_route(t, "listener63", "/l63", NULL, UINT64_C(1) << 63, 0);
    add_route(t, "first", "/dup", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "second", "/dup", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "first-prefix", "/same/*", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "second-prefix", "/same/*", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "only-h", "/h-only", example_hosts, ROUTE_ALL_LISTENERS, 0);
    CHECK(route_table_count(t) == 19);

    static const struct lookup_case cases[] = {
        /* exact vs prefix */
        {0, "any.test", "/vnc", "vnc-exact"},
        {0, "any.test", "/vnc/", "vnc-prefix"},
        {0, "any.test", "/vnc/x", "vnc-prefix"},
        {0, "any.test", "/vncfoo", "vnc-prefix"},
        {0, "any.test", "/vn", "root-prefix"},
        {0, "any.test", "/", "root-prefix"},
        {0, "any.test", "/exact", "exact-only"},
        {0, "any.test", "/exact/", "root-prefix"},
        {0, "any.test", "/exac", "root-prefix"},
        {0, "any.test", "/EXACT", "root-prefix"}, /* paths are case-sensitive */
        /* the longest prefix wins */
        {0, "any.test", "/vnc/deep/", "vnc-deep-prefix"},
        {0, "any.test", "/vnc/deep/er", "vnc-deep-prefix"},
        {0, "any.test", "/vnc/deep", "vnc-prefix"},
        /* host-specific beats host-less; exact beats prefix only within the same host class */
        {0, "example.com", "/vnc", "host-vnc"},
        {0, "example.com", "/vnc/x", "vnc-prefix"},
        {0, "example.com", "/app", "host-prefix"},
        {0, "example.com", "/app/x", "host-prefix"},
        {0, "any.test", "/app", "app-exact"},
        {0, "any.test", "/app/x", "root-prefix"},
        /* Host normalisation: port, case, trailing dot, brackets */
        {0, "example.com:8080", "/vnc", "host-vnc"},
        {0, "EXAMPLE.Com", "/vnc", "host-vnc"},
        {0, "Example.COM.:443", "/vnc", "host-vnc"},
        {0, "example.com.", "/vnc", "host-vnc"},
        {0, "[::1]:6080", "/w", "v6"},
        {0, "[::1]", "/w", "v6"},
        {0, "example.comx", "/vnc", "vnc-exact"},
        {0, "xexample.com", "/vnc", "vnc-exact"},
        {0, "www.example.com", "/vnc", "vnc-exact"},
        /* wildcards */
        {0, "a.example.com", "/w", "wild"},
        {0, "a.b.example.com", "/w", "wild"},
        {0, "A.Example.Com:80", "/w", "wild"},
        {0, "example.com", "/w", "root-prefix"},
        {0, "aexample.com", "/w", "root-prefix"},
        {0, ".example.com", "/w", "root-prefix"},
        /* a route with several hosts */
        {0, "other.test", "/w", "other"},
        {0, "www.other.test", "/w", "other"},
        {0, "x.other.test", "/w", "root-prefix"},
        /* no usable Host: only host-less routes */
        {0, NULL, "/vnc", "vnc-exact"},
        {0, "", "/vnc", "vnc-exact"},
        {0, ":80", "/vnc", "vnc-exact"},
        {0, "[::1", "/w", "root-prefix"},
        {0, NULL, "/h-only", "root-prefix"},
        /* listener masks */
        {0, "any.test", "/l", "listener0-2"},
        {1, "any.test", "/l", "listener1"},
        {2, "any.test", "/l", "listener0-2"},
        {3, "any.test", "/l", "root-prefix"},
        {63, "any.test", "/l63", "listener63"},
        {62, "any.test", "/l63", "root-prefix"},
        /* among equals, the earlier route */
        {0, "any.test", "/dup", "first"},
        {0, "any.test", "/same/x", "first-prefix"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = lookup_name(t, cases[i].listener, cases[i].host, cases[i].path);
        CHECK(name_is(got, cases[i].want));
        if (!name_is(got, cases[i].want))
            fprintf(stderr, "  listener %u, host \"%s\", path \"%s\": got %s, want %s\n", cases[i].listener,
                    cases[i].host ? cases[i].host : "(null)", cases[i].path, got ? got : "NULL",
                    cases[i].want ? cases[i].want : "NULL");
    }

    /* The lengths are honoured: no NUL needed after host or path. */
    const struct route *r = route_lookup(t, 0, "example.com:80xyz", 14, "/vnc/xyz", 4);
    CHECK(r != NULL && strcmp(r->name, "host-vnc") == 0);

    route_table_unref(t);
}

/* Nothing matches: NULL, from an empty table and from one without a catch-all. */
static void
test_no_match(void)
{
    struct route_table *t = route_table_new();

    if (t == NULL)
        return;
    add_route(t, "a", "/a", NULL, ROUTE_ALL_LISTENERS, 0);
    add_route(t, "b", "/b*", example_hosts, ROUTE_ALL_LISTENERS, 0);
    CHECK(lookup_name(t, 0, "x.test", "/") == NULL);
    CHECK(lookup_name(t, 0, "x.test", "/a/") == NULL);
    CHECK(lookup_name(t, 0, "x.test", "/b") == NULL);
    CHECK(lookup_name(t, 0, "x.test", "") == NULL);
    CHECK(name_is(lookup_name(t, 0, "example.com", "/b"), "b"));
    CHECK(name_is(lookup_name(t, 0, "x.test", "/a"), "a"));
    route_table_unref(t);
}

/* ---- host helpers ---- */

static void
test_normalize_host(void)
{
    static const struct {
        const char *in;
        const char *want; /* NULL: unusable (0) */
    } cases[] = {
        {"example.com", "example.com"},
        {"Example.COM", "example.com"},
        {"example.com:8080", "example.com"},
        {"example.com.", "example.com"},
        {"EXAMPLE.COM.:443", "example.com"},
        {"[::1]:6080", "::1"},
        {"[::1]", "::1"},
        {"[2001:DB8::1]:443", "2001:db8::1"},
        {"1.2.3.4:80", "1.2.3.4"},
        {"", NULL},
        {":80", NULL},
        {".", NULL},
        {"[]:80", NULL},
        {"[::1", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        size_t n = route_normalize_host(cases[i].in, strlen(cases[i].in), out, sizeof out);
        if (cases[i].want == NULL) {
            CHECK(n == 0);
            if (n != 0)
                fprintf(stderr, "  route_normalize_host(\"%s\") = %zu, want 0\n", cases[i].in, n);
        } else {
            CHECK(n == strlen(cases[i].want) && strcmp(out, cases[i].want) == 0);
            if (n != strlen(cases[i].want))
                fprintf(stderr, "  route_normalize_host(\"%s\") = %zu\n", cases[i].in, n);
        }
    }
    char out[8];
    CHECK(route_normalize_host(NULL, 0, out, sizeof out) == 0);
    /* A name that does not fit 'out' (with its NUL) is unusable, never cut. */
    CHECK(route_normalize_host("abcdefg", 7, out, sizeof out) == 7);
    CHECK(route_normalize_host("abcdefgh", 8, out, sizeof out) == 0);
    CHECK(route_normalize_host("abcdefgh:80", 11, out, sizeof out) == 0);
}

static void
test_host_matches(void)
{
    static const struct {
        const char *pattern, *host;
        bool want;
    } cases[] = {
        {"example.com", "example.com", true},      {"example.com", "www.example.com", false},
        {"example.com", "example.co", false},      {"example.com", "example.comm", false},
        {"*.example.com", "a.example.com", true},  {"*.example.com", "a.b.example.com", true},
        {"*.example.com", "example.com", false},   {"*.example.com", ".example.com", false},
        {"*.example.com", "aexample.com", false},  {"*.example.com", "a.example.com.evil", false},
        {"*.example.com", "a.example.org", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = route_host_matches(cases[i].pattern, cases[i].host, strlen(cases[i].host));
        CHECK(got == cases[i].want);
        if (got != cases[i].want)
            fprintf(stderr, "  route_host_matches(\"%s\", \"%s\") = %d\n", cases[i].pattern, cases[i].host,
                    got);
    }
}

/* ---- the table object ---- */

static void
test_table(void)
{
    struct route_table *t = route_table_new();
    char name[16] = "mutable";
    char path[16] = "/mutable";
    char host0[32] = "example.com";
    char *hosts[1] = {host0};
    struct route r;

    if (t == NULL)
        return;
    /* route_table_add() makes a deep copy: changing or freeing the source changes nothing. */
    memset(&r, 0, sizeof r);
    r.name = name;
    r.path = path;
    r.path_len = strlen(path);
    r.hosts = hosts;
    r.host_count = 1;
    r.listener_mask = ROUTE_ALL_LISTENERS;
    r.limits.max_sessions = 3;
    r.limits.max_frame_bytes = 12345;
    CHECK(addr_parse("[::1]:5901", 0, &r.target) == ADDR_OK);
    CHECK(route_table_add(t, &r) == 0);
    memset(name, 'X', sizeof name - 1);
    memset(path, 'X', sizeof path - 1);
    memset(host0, 'X', sizeof host0 - 1);
    const struct route *got = route_table_get(t, 0);
    CHECK(got != NULL);
    if (got == NULL)
        return;
    CHECK(strcmp(got->name, "mutable") == 0 && got->name != name);
    CHECK(strcmp(got->path, "/mutable") == 0 && got->path_len == 8);
    CHECK(got->host_count == 1 && got->hosts != hosts && strcmp(got->hosts[0], "example.com") == 0);
    CHECK(got->target.port == 5901 && strcmp(got->target.host, "::1") == 0);
    CHECK(got->limits.max_frame_bytes == 12345 && got->limits.max_sessions == 3);
    CHECK(route_table_get(t, 1) == NULL);
    CHECK(name_is(lookup_name(t, 0, "example.com", "/mutable"), "mutable"));

    /* Many routes: the table grows, and earlier results stay right. */
    char nm[32], pt[32];
    for (int i = 0; i < 100; i++) {
        snprintf(nm, sizeof nm, "r%d", i);
        snprintf(pt, sizeof pt, "/p%d", i);
        add_route(t, nm, pt, NULL, ROUTE_ALL_LISTENERS, 0);
    }
    CHECK(route_table_count(t) == 101);
    CHECK(name_is(lookup_name(t, 0, "x", "/p0"), "r0"));
    CHECK(name_is(lookup_name(t, 0, "x", "/p99"), "r99"));
    CHECK(name_is(lookup_name(t, 0, "example.com", "/mutable"), "mutable"));

    /* Defaults */
    struct limits d;
    memset(&d, 0, sizeof d);
    d.idle_timeout_ms = 4242;
    d.buffer_bytes = 65536;
    route_table_set_defaults(t, &d);
    d.idle_timeout_ms = 1; /* a copy was kept */
    CHECK(route_table_defaults(t)->idle_timeout_ms == 4242);
    CHECK(route_table_defaults(t)->buffer_bytes == 65536);

    /* References: the table lives until the last unref (ASan reports a use after free). */
    route_table_ref(t);
    route_table_ref(t);
    route_table_unref(t);
    route_table_unref(t);
    CHECK(route_table_count(t) == 101);
    CHECK(name_is(lookup_name(t, 0, "x", "/p50"), "r50"));
    route_table_unref(t); /* the last: freed */
    route_table_unref(NULL);
}

static void
test_sessions(void)
{
    struct route_table *t = route_table_new();

    if (t == NULL)
        return;
    add_route(t, "limited", "/limited", NULL, ROUTE_ALL_LISTENERS, 2);
    add_route(t, "one", "/one", NULL, ROUTE_ALL_LISTENERS, 1);
    add_route(t, "unlimited", "/unlimited", NULL, ROUTE_ALL_LISTENERS, 0);
    const struct route *limited = route_table_get(t, 0);
    const struct route *one = route_table_get(t, 1);
    const struct route *unlimited = route_table_get(t, 2);
    CHECK(limited != NULL && one != NULL && unlimited != NULL);
    if (limited == NULL || one == NULL || unlimited == NULL)
        return;

    CHECK(route_session_count(t, limited) == 0);
    CHECK(route_session_acquire(t, limited));
    CHECK(route_session_acquire(t, limited));
    CHECK(route_session_count(t, limited) == 2);
    CHECK(!route_session_acquire(t, limited)); /* at the limit: refused, nothing counted */
    CHECK(route_session_count(t, limited) == 2);
    /* counts are per route */
    CHECK(route_session_count(t, one) == 0);
    CHECK(route_session_acquire(t, one));
    CHECK(!route_session_acquire(t, one));
    CHECK(route_session_count(t, one) == 1);
    /* a release makes room again */
    route_session_release(t, limited);
    CHECK(route_session_count(t, limited) == 1);
    CHECK(route_session_acquire(t, limited));
    CHECK(!route_session_acquire(t, limited));
    route_session_release(t, limited);
    route_session_release(t, limited);
    CHECK(route_session_count(t, limited) == 0);
    route_session_release(t, one);
    CHECK(route_session_count(t, one) == 0);

    /* 0 means no limit */
    bool all = true;
    for (int i = 0; i < 10000; i++)
        all = all && route_session_acquire(t, unlimited);
    CHECK(all);
    CHECK(route_session_count(t, unlimited) == 10000);
    for (int i = 0; i < 10000; i++)
        route_session_release(t, unlimited);
    CHECK(route_session_count(t, unlimited) == 0);

    route_table_unref(t);
}

/* route_session_acquire() is safe from any thread: many threads racing for a limited
 * route get exactly the limit between them, never more. */
static atomic_int race_go; /* the threads spin on it, so that they all start at once */

struct race {
    struct route_table *table;
    const struct route *route;
    unsigned got;
    unsigned over_limit;
};

static void *
race_acquire(void *arg)
{
    struct race *r = arg;

    while (!atomic_load(&race_go))
        ;
    for (int i = 0; i < 20000; i++)
        if (route_session_acquire(r->table, r->route))
            r->got++;
    return NULL;
}

static void *
race_churn(void *arg)
{
    struct race *r = arg;

    while (!atomic_load(&race_go))
        ;
    for (int i = 0; i < 200000; i++) {
        if (route_session_acquire(r->table, r->route)) {
            if (route_session_count(r->table, r->route) > r->route->limits.max_sessions)
                r->over_limit++;
            r->got++;
            route_session_release(r->table, r->route);
        }
    }
    return NULL;
}

static void
test_sessions_threads(void)
{
    enum { THREADS = 4 };
    struct route_table *t = route_table_new();
    pthread_t th[THREADS];
    struct race races[THREADS];

    if (t == NULL)
        return;
    add_route(t, "tight", "/tight", NULL, ROUTE_ALL_LISTENERS, 2); /* 4 threads contend for 2 */
    add_route(t, "limited", "/limited", NULL, ROUTE_ALL_LISTENERS, 1000);
    const struct route *tight = route_table_get(t, 0);
    const struct route *limited = route_table_get(t, 1);
    CHECK(tight != NULL && limited != NULL);
    if (tight == NULL || limited == NULL)
        return;

    for (int phase = 0; phase < 2; phase++) {
        int started = 0;
        atomic_store(&race_go, 0);
        const struct route *route = phase == 0 ? tight : limited;
        for (int i = 0; i < THREADS; i++) {
            races[i] = (struct race){t, route, 0, 0};
            if (pthread_create(&th[i], NULL, phase == 0 ? race_churn : race_acquire, &races[i]) == 0)
                started++;
        }
        CHECK(started == THREADS);
        atomic_store(&race_go, 1);
        unsigned got = 0, over = 0;
        for (int i = 0; i < started; i++) {
            pthread_join(th[i], NULL);
            got += races[i].got;
            over += races[i].over_limit;
        }
        if (phase == 0) {
            CHECK(over == 0);
            CHECK(got > 0);
            CHECK(route_session_count(t, route) == 0);
        } else {
            CHECK(got == 1000);
            CHECK(route_session_count(t, route) == 1000);
        }
    }
    route_table_unref(t);
}

int
main(void)
{
    test_lookup();
    test_no_match();
    test_normalize_host();
    test_host_matches();
    test_table();
    test_sessions();
    test_sessions_threads();
    return check_report();
}
