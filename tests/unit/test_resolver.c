/* test_resolver.c - the resolver's promises, on a real event loop: answers arrive on the
 * loop thread and never inside resolver_lookup(), a cancelled query never calls back, a
 * retired resolver answers what it took and then frees itself, and resolver_free() with
 * lookups in flight is safe. Names come from /etc/hosts ("localhost"); "bad..name" has an
 * empty label, so it fails without asking any name server. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "check.h"
#include "resolver.h"

struct answer {
    int calls;
    int err;
    int addr_count;
    bool has_loopback;
    bool in_lookup; /* set while resolver_lookup() runs: a callback then is a bug */
    bool early;
};

static void
answer_cb(int err, struct evutil_addrinfo *res, void *arg)
{
    struct answer *a = arg;

    a->calls++;
    a->err = err;
    a->early |= a->in_lookup;
    for (struct evutil_addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        a->addr_count++;
        if (ai->ai_family == AF_INET) {
            const unsigned char *ip = (const unsigned char *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
            a->has_loopback |= ip[0] == 127;
        }
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
}

/* Run the loop until every answer in 'a' has arrived, or 10 s pass. */
static void
wait_answers(struct event_base *base, struct answer *a, size_t n)
{
    for (int round = 0; round < 1000; round++) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += a[i].calls > 0;
        if (done == n)
            return;
        struct timeval tick = {0, 10000};
        event_base_loopexit(base, &tick);
        event_base_dispatch(base);
    }
}

static struct resolver_query *
lookup(struct resolver *r, const char *host, struct answer *a)
{
    a->in_lookup = true;
    struct resolver_query *q = resolver_lookup(r, host, 80, answer_cb, a);
    a->in_lookup = false;
    return q;
}

/* evdns asks name servers even for "bad..name": point it at a closed loopback port, and
 * give up quickly, so no test waits on the machine's real name servers. */
static char evdns_conf[] = "/tmp/wsplice-test-resolv-XXXXXX";

static void
write_evdns_conf(void)
{
    static const char text[] = "nameserver 127.0.0.1:1\noptions timeout:0.3 attempts:1\n";
    int fd = mkstemp(evdns_conf);

    CHECK(fd != -1 && write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
}

static void
test_kind(enum resolver_kind kind)
{
    struct event_base *base = event_base_new();
    const char *conf = kind == RESOLVER_EVDNS ? evdns_conf : NULL;
    struct resolver *r = resolver_new(base, kind, conf);
    struct answer a[3];

    memset(a, 0, sizeof a);
    CHECK(r != NULL);
    CHECK(resolver_matches(r, kind, conf));
    CHECK(!resolver_matches(r, kind == RESOLVER_SYSTEM ? RESOLVER_EVDNS : RESOLVER_SYSTEM, conf));

    /* localhost from /etc/hosts (evdns answers it at once: the callback must still wait). */
    CHECK(lookup(r, "localhost", &a[0]) != NULL);
    CHECK(a[0].calls == 0);
    CHECK(lookup(r, "bad..name", &a[1]) != NULL);
    struct resolver_query *q = lookup(r, "localhost", &a[2]);
    CHECK(q != NULL);
    resolver_cancel(q);
    wait_answers(base, a, 2);
    CHECK(a[0].calls == 1 && a[0].err == 0 && a[0].addr_count >= 1 && a[0].has_loopback);
    CHECK(a[1].calls == 1 && a[1].err != 0 && a[1].addr_count == 0);
    CHECK(!a[0].early && !a[1].early);
    /* Give the cancelled query time to come back: it must not call. */
    struct timeval settle = {0, 200000};
    event_base_loopexit(base, &settle);
    event_base_dispatch(base);
    CHECK(a[2].calls == 0);

    /* Retire with a lookup in flight: it still answers, then the resolver frees itself
     * (LeakSanitizer and valgrind see it if not); a retired resolver takes nothing new. */
    struct answer late = {0}, refused = {0};
    CHECK(lookup(r, "localhost", &late) != NULL);
    resolver_retire(r);
    CHECK(!resolver_matches(r, kind, conf));
    CHECK(lookup(r, "localhost", &refused) == NULL);
    wait_answers(base, &late, 1);
    CHECK(late.calls == 1 && late.err == 0);
    CHECK(refused.calls == 0);

    /* Hard stop with lookups queued and running: no callback, no crash. */
    struct resolver *r2 = resolver_new(base, kind, conf);
    struct answer dropped[8];
    memset(dropped, 0, sizeof dropped);
    CHECK(r2 != NULL);
    for (size_t i = 0; i < 8; i++)
        CHECK(lookup(r2, i % 2 ? "localhost" : "bad..name", &dropped[i]) != NULL);
    resolver_free(r2);
    event_base_loopexit(base, &settle);
    event_base_dispatch(base);
    for (size_t i = 0; i < 8; i++)
        CHECK(dropped[i].calls == 0);
    event_base_free(base);
}

static void
test_evdns_resolv_conf(void)
{
    struct event_base *base = event_base_new();
    struct resolver *r = resolver_new(base, RESOLVER_EVDNS, "/nonexistent/resolv.conf");

    CHECK(r != NULL); /* an unreadable file is logged; hosts-file names still work */
    CHECK(resolver_matches(r, RESOLVER_EVDNS, "/nonexistent/resolv.conf"));
    CHECK(!resolver_matches(r, RESOLVER_EVDNS, "/etc/resolv.conf"));
    CHECK(!resolver_matches(r, RESOLVER_EVDNS, NULL));
    struct answer a = {0};
    CHECK(lookup(r, "localhost", &a) != NULL);
    wait_answers(base, &a, 1);
    CHECK(a.calls == 1 && a.err == 0 && a.has_loopback);
    resolver_free(r);
    event_base_free(base);
}

static void
quiet_libevent(int severity, const char *msg)
{
    (void)severity;
    (void)msg;
}

int
main(void)
{
    event_set_log_callback(quiet_libevent); /* "nameserver has failed" is expected here */
    write_evdns_conf();
    test_kind(RESOLVER_SYSTEM);
    test_kind(RESOLVER_EVDNS);
    test_evdns_resolv_conf();
    unlink(evdns_conf);
    return check_report();
}
