/* iplimit.h - per-client-address admission: how many connections an address group holds
 * at once, and a token bucket for how fast it may open new ones. A group is one IPv4
 * address or one IPv6 prefix (such as a /64). Pure: the caller passes the time in; nothing
 * here touches sockets or logs. Memory follows the groups that hold connections, plus at
 * most 'max_idle' groups whose bucket is still refilling; everything else is forgotten. */
#ifndef WSPLICE_IPLIMIT_H
#define WSPLICE_IPLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An address group: IPv4 as ::ffff:a.b.c.d, IPv6 with the bits past the prefix zeroed. */
struct iplimit_key {
    uint8_t bytes[16];
};

struct iplimit_config {
    uint32_t max_sessions; /* connections a group may hold at once; 0: no limit */
    uint32_t rate_milli;   /* tokens added per second, times 1000 (500 = one per 2 s); 0: no rate limit */
    uint32_t burst;        /* bucket size: connections a group may open at once (>= 1) */
};

enum iplimit_result {
    IPLIMIT_OK = 0,    /* admitted: *entry is counted and must be released once */
    IPLIMIT_TOO_MANY,  /* the group holds max_sessions connections already */
    IPLIMIT_RATE,      /* the group's bucket is empty: *retry_after_ms until the next token */
    IPLIMIT_NO_MEMORY, /* a new group could not be tracked */
};

struct iplimit_table;
struct iplimit_entry;

/* A table with 'cfg' that keeps at most 'max_idle' groups without connections (those
 * whose bucket is still refilling; the oldest is forgotten first). 'seed' keys the hash
 * so that clients cannot choose addresses that collide. NULL on ENOMEM. */
struct iplimit_table *iplimit_table_new(const struct iplimit_config *cfg, size_t max_idle,
                                        const uint8_t seed[16]);

/* Free the table and every group in it. NULL is ignored. */
void iplimit_table_free(struct iplimit_table *table);

/* Change the limits (a reload). Counted connections stay counted; buckets are capped at
 * the new burst as they refill. */
void iplimit_table_configure(struct iplimit_table *table, const struct iplimit_config *cfg);

/* Whether 'cfg' limits anything: if not, callers need not track connections at all. */
bool iplimit_config_enabled(const struct iplimit_config *cfg);

/* Admit a new connection from group 'key' at time 'now_ms' (a monotonic clock). Each
 * attempt takes a token when the rate is limited, refused or not. On IPLIMIT_OK '*entry'
 * is set; pass it to iplimit_release() when the connection ends. On IPLIMIT_RATE
 * '*retry_after_ms' is the wait until a token is back (at least 1). */
enum iplimit_result iplimit_admit(struct iplimit_table *table, const struct iplimit_key *key, uint64_t now_ms,
                                  struct iplimit_entry **entry, uint64_t *retry_after_ms);

/* A connection admitted with 'entry' ended. */
void iplimit_release(struct iplimit_table *table, struct iplimit_entry *entry, uint64_t now_ms);

const char *iplimit_result_str(enum iplimit_result result);

/* Groups tracked now (with connections or a refilling bucket), and the connections one
 * group holds (0 when it is not tracked). For tests and metrics. */
size_t iplimit_table_count(const struct iplimit_table *table);
uint32_t iplimit_sessions(const struct iplimit_table *table, const struct iplimit_key *key);

/* The group of a client address: IPv4 (and IPv4-mapped IPv6, as a dual-stack socket
 * reports IPv4 clients) by the whole address, IPv6 by its first 'v6_prefix_len' bits
 * (1-128). Returns false for other address families. */
bool iplimit_key_from_sockaddr(const struct sockaddr *sa, socklen_t sa_len, unsigned v6_prefix_len,
                               struct iplimit_key *key);

#endif
