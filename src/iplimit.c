/* iplimit.c - per-address-group connection counts and token buckets in a chained hash
 * table keyed with SipHash-2-4, so every admit and release is O(1) on average whatever
 * addresses clients pick. Groups without connections wait in an LRU list until their
 * bucket is full again (then they carry no information and are freed) or the list is full. */
#include "iplimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define IPLIMIT_TOKEN           UINT64_C(1000000) /* bucket units per token */
#define IPLIMIT_INITIAL_BUCKETS 64
#define IPLIMIT_EXPIRE_PER_CALL 2 /* idle groups checked for a full bucket per admit */

struct iplimit_entry {
    struct iplimit_key key;
    struct iplimit_entry *next;                  /* hash chain */
    struct iplimit_entry *idle_prev, *idle_next; /* in the idle list while sessions == 0 */
    uint64_t units;                              /* tokens * IPLIMIT_TOKEN, as of refill_ms */
    uint64_t refill_ms;
    uint32_t sessions;
};

struct iplimit_table {
    struct iplimit_config cfg;
    struct iplimit_entry **buckets;
    size_t bucket_count; /* a power of two */
    size_t entry_count;
    struct iplimit_entry *idle_head, *idle_tail; /* least recently used first */
    size_t idle_count, max_idle;
    uint64_t k0, k1; /* SipHash key */
};

/* ---- SipHash-2-4 (Aumasson and Bernstein, 2012) of one 16-byte key ---- */

static uint64_t
iplimit_rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t
iplimit_load64(const uint8_t *p)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void
iplimit_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = iplimit_rotl(v[1], 13) ^ v[0];
    v[0] = iplimit_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = iplimit_rotl(v[3], 16) ^ v[2];
    v[0] += v[3];
    v[3] = iplimit_rotl(v[3], 21) ^ v[0];
    v[2] += v[1];
    v[1] = iplimit_rotl(v[1], 17) ^ v[2];
    v[2] = iplimit_rotl(v[2], 32);
}

static uint64_t
iplimit_hash(const struct iplimit_table *t, const struct iplimit_key *key)
{
    uint64_t v[4] = {
        t->k0 ^ UINT64_C(0x736f6d6570736575),
        t->k1 ^ UINT64_C(0x646f72616e646f6d),
        t->k0 ^ UINT64_C(0x6c7967656e657261),
        t->k1 ^ UINT64_C(0x7465646279746573),
    };
    /* Two whole words, then the final word, which holds only the length (16) in its top byte. */
    uint64_t words[3] = {iplimit_load64(key->bytes), iplimit_load64(key->bytes + 8), UINT64_C(16) << 56};

    for (unsigned w = 0; w < 3; w++) {
        v[3] ^= words[w];
        iplimit_sipround(v);
        iplimit_sipround(v);
        v[0] ^= words[w];
    }
    v[2] ^= 0xff;
    for (unsigned r = 0; r < 4; r++)
        iplimit_sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* ---- buckets of tokens ---- */

static bool
iplimit_rate_limited(const struct iplimit_table *t)
{
    return t->cfg.rate_milli != 0;
}

static uint64_t
iplimit_capacity(const struct iplimit_table *t)
{
    return (uint64_t)(t->cfg.burst ? t->cfg.burst : 1) * IPLIMIT_TOKEN;
}

/* Bring a bucket up to 'now_ms'. One token is IPLIMIT_TOKEN units and the rate is
 * rate_milli / 1000 tokens per second, so each millisecond adds rate_milli units. */
static void
iplimit_refill(const struct iplimit_table *t, struct iplimit_entry *e, uint64_t now_ms)
{
    uint64_t cap = iplimit_capacity(t);

    if (now_ms > e->refill_ms && iplimit_rate_limited(t)) {
        uint64_t elapsed = now_ms - e->refill_ms;
        uint64_t missing = e->units < cap ? cap - e->units : 0;
        if (elapsed >= missing / t->cfg.rate_milli + 1)
            e->units = cap;
        else
            e->units += elapsed * t->cfg.rate_milli;
    }
    if (e->units > cap)
        e->units = cap; /* the burst was lowered by a reload */
    if (now_ms > e->refill_ms)
        e->refill_ms = now_ms;
}

static bool
iplimit_bucket_full(const struct iplimit_table *t, const struct iplimit_entry *e)
{
    return !iplimit_rate_limited(t) || e->units >= iplimit_capacity(t);
}

/* ---- the table ---- */

static struct iplimit_entry **
iplimit_slot(const struct iplimit_table *t, const struct iplimit_key *key)
{
    return &t->buckets[iplimit_hash(t, key) & (t->bucket_count - 1)];
}

static struct iplimit_entry *
iplimit_lookup(const struct iplimit_table *t, const struct iplimit_key *key)
{
    for (struct iplimit_entry *e = *iplimit_slot(t, key); e != NULL; e = e->next)
        if (memcmp(e->key.bytes, key->bytes, sizeof key->bytes) == 0)
            return e;
    return NULL;
}

/* Double the bucket array; on ENOMEM the table keeps working with longer chains. */
static void
iplimit_grow(struct iplimit_table *t)
{
    size_t n = t->bucket_count * 2;
    struct iplimit_entry **b = calloc(n, sizeof *b);

    if (b == NULL)
        return;
    for (size_t i = 0; i < t->bucket_count; i++) {
        struct iplimit_entry *e = t->buckets[i];
        while (e != NULL) {
            struct iplimit_entry *next = e->next;
            size_t j = iplimit_hash(t, &e->key) & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->bucket_count = n;
}

static void
iplimit_idle_unlink(struct iplimit_table *t, struct iplimit_entry *e)
{
    if (e->idle_prev != NULL)
        e->idle_prev->idle_next = e->idle_next;
    else
        t->idle_head = e->idle_next;
    if (e->idle_next != NULL)
        e->idle_next->idle_prev = e->idle_prev;
    else
        t->idle_tail = e->idle_prev;
    e->idle_prev = e->idle_next = NULL;
    t->idle_count--;
}

static void
iplimit_idle_append(struct iplimit_table *t, struct iplimit_entry *e)
{
    e->idle_prev = t->idle_tail;
    e->idle_next = NULL;
    if (t->idle_tail != NULL)
        t->idle_tail->idle_next = e;
    else
        t->idle_head = e;
    t->idle_tail = e;
    t->idle_count++;
}

/* Forget a group (it holds no connection, and is not in the idle list). */
static void
iplimit_forget(struct iplimit_table *t, struct iplimit_entry *e)
{
    struct iplimit_entry **p = iplimit_slot(t, &e->key);

    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    t->entry_count--;
    free(e);
}

static void
iplimit_forget_oldest_idle(struct iplimit_table *t)
{
    struct iplimit_entry *e = t->idle_head;

    iplimit_idle_unlink(t, e);
    iplimit_forget(t, e);
}

/* A group just lost its last connection, or was refused while it had none: keep it while
 * its bucket refills, as the most recently used idle group. */
static void
iplimit_park(struct iplimit_table *t, struct iplimit_entry *e)
{
    if (iplimit_bucket_full(t, e)) {
        iplimit_forget(t, e);
        return;
    }
    iplimit_idle_append(t, e);
    while (t->idle_count > t->max_idle)
        iplimit_forget_oldest_idle(t);
}

/* Free the oldest idle groups whose buckets have refilled, a few per call. */
static void
iplimit_expire(struct iplimit_table *t, uint64_t now_ms)
{
    for (unsigned i = 0; i < IPLIMIT_EXPIRE_PER_CALL && t->idle_head != NULL; i++) {
        iplimit_refill(t, t->idle_head, now_ms);
        if (!iplimit_bucket_full(t, t->idle_head))
            break;
        iplimit_forget_oldest_idle(t);
    }
}

struct iplimit_table *
iplimit_table_new(const struct iplimit_config *cfg, size_t max_idle, const uint8_t seed[16])
{
    struct iplimit_table *t = calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    t->buckets = calloc(IPLIMIT_INITIAL_BUCKETS, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->bucket_count = IPLIMIT_INITIAL_BUCKETS;
    t->cfg = *cfg;
    t->max_idle = max_idle;
    t->k0 = iplimit_load64(seed);
    t->k1 = iplimit_load64(seed + 8);
    return t;
}

void
iplimit_table_free(struct iplimit_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->bucket_count; i++) {
        struct iplimit_entry *e = t->buckets[i];
        while (e != NULL) {
            struct iplimit_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    free(t);
}

void
iplimit_table_configure(struct iplimit_table *t, const struct iplimit_config *cfg)
{
    t->cfg = *cfg;
    if (!iplimit_rate_limited(t)) {
        while (t->idle_head != NULL) /* without a rate an idle group means nothing */
            iplimit_forget_oldest_idle(t);
    }
}

bool
iplimit_config_enabled(const struct iplimit_config *cfg)
{
    return cfg->max_sessions != 0 || cfg->rate_milli != 0;
}

enum iplimit_result
iplimit_admit(struct iplimit_table *t, const struct iplimit_key *key, uint64_t now_ms,
              struct iplimit_entry **entry, uint64_t *retry_after_ms)
{
    struct iplimit_entry *e;
    enum iplimit_result result = IPLIMIT_OK;

    iplimit_expire(t, now_ms);
    e = iplimit_lookup(t, key);
    if (e == NULL) {
        e = calloc(1, sizeof *e);
        if (e == NULL)
            return IPLIMIT_NO_MEMORY;
        e->key = *key;
        e->units = iplimit_capacity(t);
        e->refill_ms = now_ms;
        struct iplimit_entry **slot = iplimit_slot(t, key);
        e->next = *slot;
        *slot = e;
        t->entry_count++;
        if (t->entry_count > t->bucket_count)
            iplimit_grow(t);
    } else if (e->sessions == 0) {
        iplimit_idle_unlink(t, e); /* parked again below if it stays without connections */
    }
    iplimit_refill(t, e, now_ms);
    if (iplimit_rate_limited(t)) {
        if (e->units < IPLIMIT_TOKEN) {
            uint64_t r = t->cfg.rate_milli;
            *retry_after_ms = (IPLIMIT_TOKEN - e->units + r - 1) / r;
            result = IPLIMIT_RATE;
        } else {
            e->units -= IPLIMIT_TOKEN;
        }
    }
    if (result == IPLIMIT_OK && t->cfg.max_sessions != 0 && e->sessions >= t->cfg.max_sessions)
        result = IPLIMIT_TOO_MANY;
    if (result == IPLIMIT_OK) {
        e->sessions++;
        *entry = e;
    } else if (e->sessions == 0) {
        iplimit_park(t, e);
    }
    return result;
}

void
iplimit_release(struct iplimit_table *t, struct iplimit_entry *e, uint64_t now_ms)
{
    if (--e->sessions > 0)
        return;
    iplimit_refill(t, e, now_ms);
    iplimit_park(t, e);
}

const char *
iplimit_result_str(enum iplimit_result result)
{
    switch (result) {
    case IPLIMIT_OK:
        return "admitted";
    case IPLIMIT_TOO_MANY:
        return "too many sessions from this address";
    case IPLIMIT_RATE:
        return "too many new connections from this address";
    case IPLIMIT_NO_MEMORY:
        return "out of memory";
    }
    return "?";
}

size_t
iplimit_table_count(const struct iplimit_table *t)
{
    return t->entry_count;
}

uint32_t
iplimit_sessions(const struct iplimit_table *t, const struct iplimit_key *key)
{
    const struct iplimit_entry *e = iplimit_lookup(t, key);

    return e != NULL ? e->sessions : 0;
}

/* ---- address groups ---- */

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}; /* ::ffff:0:0/96 */

bool
iplimit_key_from_sockaddr(const struct sockaddr *sa, socklen_t sa_len, unsigned v6_prefix_len,
                          struct iplimit_key *key)
{
    memset(key, 0, sizeof *key);
    if (sa->sa_family == AF_INET && sa_len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(key->bytes, v4_mapped, sizeof v4_mapped);
        memcpy(key->bytes + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family != AF_INET6 || sa_len < (socklen_t)sizeof(struct sockaddr_in6))
        return false;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    memcpy(key->bytes, &in6->sin6_addr, 16);
    if (memcmp(key->bytes, v4_mapped, sizeof v4_mapped) == 0)
        return true; /* an IPv4 client of a dual-stack socket: the whole address */
    if (v6_prefix_len == 0 || v6_prefix_len > 128)
        v6_prefix_len = 128;
    for (unsigned bit = v6_prefix_len; bit < 128; bit++)
        key->bytes[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    return true;
}
