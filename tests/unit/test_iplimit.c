/* test_iplimit.c - per-address admission: address groups (IPv4, IPv4-mapped, IPv6
 * prefixes), concurrent counts freed on release, the token bucket with injected time,
 * bounded memory under floods of distinct addresses, and reloads. */
#include "iplimit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "check.h"

static const uint8_t seed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* The group of a textual address ("192.0.2.1" or "2001:db8::1") with an IPv6 prefix. */
static struct iplimit_key
key_of(const char *text, unsigned prefix)
{
    struct iplimit_key key;
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};

    memset(&key, 0xee, sizeof key);
    if (inet_pton(AF_INET, text, &in.sin_addr) == 1)
        CHECK(iplimit_key_from_sockaddr((struct sockaddr *)&in, sizeof in, prefix, &key));
    else if (inet_pton(AF_INET6, text, &in6.sin6_addr) == 1)
        CHECK(iplimit_key_from_sockaddr((struct sockaddr *)&in6, sizeof in6, prefix, &key));
    else
        CHECK(!"unparsable test address");
    return key;
}

static bool
same_group(const char *a, const char *b, unsigned prefix)
{
    struct iplimit_key ka = key_of(a, prefix), kb = key_of(b, prefix);

    return memcmp(&ka, &kb, sizeof ka) == 0;
}

static void
test_groups(void)
{
    static const struct {
        const char *a, *b;
        unsigned prefix;
        bool same;
    } cases[] = {
        {"192.0.2.1", "192.0.2.1", 64, true},
        {"192.0.2.1", "192.0.2.2", 64, false}, /* IPv4: always the whole address */
        {"192.0.2.1", "192.0.2.1", 8, true},
        {"192.0.2.1", "192.0.3.1", 8, false},         /* the IPv6 prefix never widens IPv4 */
        {"192.0.2.1", "::ffff:192.0.2.1", 64, true},  /* a dual-stack socket's IPv4 client */
        {"192.0.2.1", "::ffff:192.0.2.2", 64, false}, /* ... is not lumped into ::ffff:0:0/64 */
        {"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", 64, true},
        {"2001:db8:1:2::1", "2001:db8:1:3::1", 64, false},
        {"2001:db8:1:2::1", "2001:db8:1:3::1", 48, true},
        {"2001:db8:1:2::1", "2001:db8:2:2::1", 48, false},
        {"2001:db8::1", "2001:db8::2", 128, false},
        {"2001:db8::1", "2001:db8::1", 128, true},
        {"2001:db8:0:10::1", "2001:db8:0:1f::1", 60, true}, /* a prefix inside a byte */
        {"2001:db8:0:10::1", "2001:db8:0:20::1", 60, false},
        {"::1", "::1", 64, true},
        {"::1", "::2", 64, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool same = same_group(cases[i].a, cases[i].b, cases[i].prefix);
        CHECK(same == cases[i].same);
        if (same != cases[i].same)
            fprintf(stderr, "  %s vs %s /%u\n", cases[i].a, cases[i].b, cases[i].prefix);
    }

    /* The bits past the prefix are zero, so equal groups are equal keys. */
    struct iplimit_key k = key_of("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", 64);
    static const uint8_t want[16] = {0x20, 0x01, 0x0d, 0xb8, 0xaa, 0xaa, 0xbb, 0xbb};
    CHECK(memcmp(k.bytes, want, 16) == 0);

    /* Unix sockets and truncated addresses have no group. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    CHECK(!iplimit_key_from_sockaddr((struct sockaddr *)&un, sizeof un, 64, &k));
    CHECK(!iplimit_key_from_sockaddr((struct sockaddr *)&in6, sizeof(struct sockaddr_in), 64, &k));
}

static void
test_concurrent_sessions(void)
{
    struct iplimit_config cfg = {.max_sessions = 2};
    struct iplimit_table *t = iplimit_table_new(&cfg, 100, seed);
    struct iplimit_key a = key_of("192.0.2.1", 64), b = key_of("192.0.2.2", 64);
    struct iplimit_entry *ea[3] = {0}, *eb = NULL;
    uint64_t retry = 0;

    CHECK(iplimit_config_enabled(&cfg));
    CHECK(iplimit_admit(t, &a, 0, &ea[0], &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a, 0, &ea[1], &retry) == IPLIMIT_OK);
    CHECK(ea[0] != NULL && ea[0] == ea[1]);
    CHECK(iplimit_sessions(t, &a) == 2);
    CHECK(iplimit_admit(t, &a, 0, &ea[2], &retry) == IPLIMIT_TOO_MANY);
    CHECK(iplimit_sessions(t, &a) == 2);                       /* a refusal is not counted */
    CHECK(iplimit_admit(t, &b, 0, &eb, &retry) == IPLIMIT_OK); /* other addresses are not affected */
    CHECK(iplimit_table_count(t) == 2);

    iplimit_release(t, ea[0], 10);
    CHECK(iplimit_sessions(t, &a) == 1);
    CHECK(iplimit_admit(t, &a, 10, &ea[2], &retry) == IPLIMIT_OK); /* freed on close */
    iplimit_release(t, ea[1], 20);
    iplimit_release(t, ea[2], 20);
    iplimit_release(t, eb, 20);
    /* Without a rate limit an address without sessions carries nothing: it is gone. */
    CHECK(iplimit_sessions(t, &a) == 0);
    CHECK(iplimit_table_count(t) == 0);
    iplimit_table_free(t);

    struct iplimit_config off = {0};
    CHECK(!iplimit_config_enabled(&off));
}

static void
test_token_bucket(void)
{
    /* One new connection per second, bursts of three. */
    struct iplimit_config cfg = {.rate_milli = 1000, .burst = 3};
    struct iplimit_table *t = iplimit_table_new(&cfg, 100, seed);
    struct iplimit_key a = key_of("2001:db8::1", 64), a2 = key_of("2001:db8::2", 64);
    struct iplimit_entry *e[8] = {0};
    uint64_t retry = 0;
    uint64_t t0 = 1000000; /* a monotonic clock does not start at zero */

    CHECK(iplimit_admit(t, &a, t0, &e[0], &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a, t0, &e[1], &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a2, t0, &e[2], &retry) == IPLIMIT_OK); /* the same /64 */
    CHECK(iplimit_admit(t, &a, t0, &e[3], &retry) == IPLIMIT_RATE);
    CHECK(retry == 1000);
    CHECK(iplimit_admit(t, &a, t0 + 400, &e[3], &retry) == IPLIMIT_RATE);
    CHECK(retry == 600);
    CHECK(iplimit_admit(t, &a, t0 + 999, &e[3], &retry) == IPLIMIT_RATE);
    CHECK(retry == 1);
    CHECK(iplimit_admit(t, &a, t0 + 1000, &e[3], &retry) == IPLIMIT_OK); /* one token back */
    CHECK(iplimit_admit(t, &a, t0 + 1000, &e[4], &retry) == IPLIMIT_RATE);
    CHECK(iplimit_sessions(t, &a) == 4);

    /* A long pause refills to the burst, never beyond. */
    CHECK(iplimit_admit(t, &a, t0 + 3600000, &e[4], &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a, t0 + 3600000, &e[5], &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a, t0 + 3600000, &e[6], &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a, t0 + 3600000, &e[7], &retry) == IPLIMIT_RATE);
    for (int i = 0; i < 7; i++)
        iplimit_release(t, e[i], t0 + 3600000);

    /* The bucket is empty: the group is remembered after its last session ends ... */
    CHECK(iplimit_table_count(t) == 1);
    CHECK(iplimit_admit(t, &a, t0 + 3600500, &e[0], &retry) == IPLIMIT_RATE);
    CHECK(retry == 500);
    /* ... until it has refilled; then the next admit of anyone forgets it. */
    struct iplimit_key other = key_of("198.51.100.1", 64);
    CHECK(iplimit_admit(t, &other, t0 + 3603000, &e[1], &retry) == IPLIMIT_OK);
    CHECK(iplimit_table_count(t) == 1);
    CHECK(iplimit_sessions(t, &other) == 1);
    iplimit_release(t, e[1], t0 + 3603000);
    iplimit_table_free(t);

    /* Fractional rates: one every two seconds. */
    struct iplimit_config slow = {.rate_milli = 500, .burst = 1};
    t = iplimit_table_new(&slow, 100, seed);
    CHECK(iplimit_admit(t, &a, 0, &e[0], &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a, 0, &e[1], &retry) == IPLIMIT_RATE);
    CHECK(retry == 2000);
    CHECK(iplimit_admit(t, &a, 1999, &e[1], &retry) == IPLIMIT_RATE);
    CHECK(iplimit_admit(t, &a, 2000, &e[1], &retry) == IPLIMIT_OK);
    iplimit_release(t, e[0], 2000);
    iplimit_release(t, e[1], 2000);
    iplimit_table_free(t); /* frees the remembered group too */

    /* The slowest rate the config allows (0.001/s) and a huge burst do not overflow. */
    struct iplimit_config extreme = {.rate_milli = 1, .burst = 1000000};
    t = iplimit_table_new(&extreme, 100, seed);
    CHECK(iplimit_admit(t, &a, 0, &e[0], &retry) == IPLIMIT_OK);
    iplimit_release(t, e[0], 0);
    CHECK(iplimit_admit(t, &a, UINT64_MAX / 2, &e[0], &retry) == IPLIMIT_OK);
    iplimit_release(t, e[0], UINT64_MAX / 2);
    iplimit_table_free(t);
}

static void
test_both_limits(void)
{
    /* Attempts over the session limit still take tokens: hammering does not pay. */
    struct iplimit_config cfg = {.max_sessions = 1, .rate_milli = 1000, .burst = 3};
    struct iplimit_table *t = iplimit_table_new(&cfg, 100, seed);
    struct iplimit_key a = key_of("192.0.2.9", 64);
    struct iplimit_entry *e = NULL, *x = NULL;
    uint64_t retry = 0;

    CHECK(iplimit_admit(t, &a, 0, &e, &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a, 0, &x, &retry) == IPLIMIT_TOO_MANY);
    CHECK(iplimit_admit(t, &a, 0, &x, &retry) == IPLIMIT_TOO_MANY);
    CHECK(iplimit_admit(t, &a, 0, &x, &retry) == IPLIMIT_RATE);
    iplimit_release(t, e, 0);
    CHECK(iplimit_admit(t, &a, 0, &x, &retry) == IPLIMIT_RATE); /* free slot, empty bucket */
    CHECK(iplimit_admit(t, &a, 1000, &x, &retry) == IPLIMIT_OK);
    iplimit_release(t, x, 1000);
    iplimit_table_free(t);
}

static struct iplimit_key
key_n(uint32_t n)
{
    struct iplimit_key k = {{0x20, 0x01, 0x0d, 0xb8}};

    /* Distinct /64s that differ only in a few bits, as one attacker's /32 would give. */
    k.bytes[4] = (uint8_t)(n >> 24);
    k.bytes[5] = (uint8_t)(n >> 16);
    k.bytes[6] = (uint8_t)(n >> 8);
    k.bytes[7] = (uint8_t)n;
    return k;
}

static void
test_flood_is_bounded(void)
{
    enum { FLOOD = 200000, MAX_IDLE = 1000, LIVE = 50000 };
    struct iplimit_config cfg = {.max_sessions = 1, .rate_milli = 1000, .burst = 1};
    struct iplimit_table *t = iplimit_table_new(&cfg, MAX_IDLE, seed);
    struct iplimit_entry *e = NULL;
    uint64_t retry = 0;
    size_t peak = 0;
    int ok = 0;

    /* Each address connects once and leaves at once: its bucket is empty, so it is kept,
     * but never more than MAX_IDLE of them. */
    for (uint32_t i = 0; i < FLOOD; i++) {
        struct iplimit_key k = key_n(i);
        if (iplimit_admit(t, &k, 1, &e, &retry) == IPLIMIT_OK) {
            ok++;
            iplimit_release(t, e, 1);
        }
        if (iplimit_table_count(t) > peak)
            peak = iplimit_table_count(t);
    }
    CHECK(ok == FLOOD);
    CHECK(peak <= MAX_IDLE);
    /* The most recent ones are the ones remembered. */
    struct iplimit_key last = key_n(FLOOD - 1);
    CHECK(iplimit_admit(t, &last, 1, &e, &retry) == IPLIMIT_RATE);

    /* Live sessions are never forgotten, however many addresses hold them. */
    struct iplimit_entry **live = calloc(LIVE, sizeof *live);
    CHECK(live != NULL);
    if (live == NULL)
        return;
    ok = 0;
    for (uint32_t i = 0; i < LIVE; i++) {
        struct iplimit_key k = key_n(0x80000000u + i);
        ok += iplimit_admit(t, &k, 5000, &live[i], &retry) == IPLIMIT_OK;
    }
    CHECK(ok == LIVE);
    CHECK(iplimit_table_count(t) >= LIVE && iplimit_table_count(t) <= LIVE + MAX_IDLE);
    int counted = 0;
    for (uint32_t i = 0; i < LIVE; i++) {
        struct iplimit_key k = key_n(0x80000000u + i);
        counted += iplimit_sessions(t, &k) == 1;
    }
    CHECK(counted == LIVE);
    /* Releasing everything an hour later leaves nothing behind but what refilled lazily. */
    for (uint32_t i = 0; i < LIVE; i++)
        iplimit_release(t, live[i], 3600000);
    CHECK(iplimit_table_count(t) <= MAX_IDLE);
    free(live);
    iplimit_table_free(t);
}

static void
test_reconfigure(void)
{
    struct iplimit_config cfg = {.rate_milli = 1000, .burst = 10};
    struct iplimit_table *t = iplimit_table_new(&cfg, 100, seed);
    struct iplimit_key a = key_of("192.0.2.1", 64);
    struct iplimit_entry *e[4] = {0};
    uint64_t retry = 0;

    CHECK(iplimit_admit(t, &a, 0, &e[0], &retry) == IPLIMIT_OK); /* 9 tokens left */
    /* A reload lowers the burst to 2 and adds a session limit of 2: the bucket is capped. */
    struct iplimit_config lower = {.max_sessions = 2, .rate_milli = 1000, .burst = 2};
    iplimit_table_configure(t, &lower);
    CHECK(iplimit_admit(t, &a, 0, &e[1], &retry) == IPLIMIT_OK);
    CHECK(iplimit_admit(t, &a, 0, &e[2], &retry) == IPLIMIT_TOO_MANY); /* the old session counts */
    CHECK(iplimit_admit(t, &a, 0, &e[2], &retry) == IPLIMIT_RATE);
    iplimit_release(t, e[0], 0);
    iplimit_release(t, e[1], 0);
    CHECK(iplimit_table_count(t) == 1); /* remembered for its bucket */
    /* Turning the rate off forgets idle groups at once. */
    struct iplimit_config off = {0};
    iplimit_table_configure(t, &off);
    CHECK(iplimit_table_count(t) == 0);
    CHECK(iplimit_admit(t, &a, 0, &e[3], &retry) == IPLIMIT_OK);
    iplimit_release(t, e[3], 0);
    CHECK(iplimit_table_count(t) == 0);
    iplimit_table_free(t);

    CHECK(strcmp(iplimit_result_str(IPLIMIT_RATE), "too many new connections from this address") == 0);
    CHECK(strcmp(iplimit_result_str(IPLIMIT_TOO_MANY), "too many sessions from this address") == 0);
    iplimit_table_free(NULL);
}

int
main(void)
{
    test_groups();
    test_concurrent_sessions();
    test_token_bucket();
    test_both_limits();
    test_flood_is_bounded();
    test_reconfigure();
    return check_report();
}
