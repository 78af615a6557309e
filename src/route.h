/* route.h - the route table: which backend serves a request, by listener, Host and path.
 * Built once from the config, then immutable and shared by reference across reloads.
 * Pure: lookups never allocate or block. */
#ifndef WSPLICE_ROUTE_H
#define WSPLICE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* Per-route limits and timeouts; [gateway] gives the defaults. 0 disables a timeout. */
struct limits {
    uint32_t connect_timeout_ms; /* each backend address tried gets this long */
    uint32_t idle_timeout_ms;    /* no payload either way for this long: close 1001 */
    uint32_t close_timeout_ms;   /* bound on a close handshake and on flushing at close */
    uint32_t ping_interval_ms;   /* server pings; 0: none */
    uint32_t ping_timeout_ms;    /* no frame from the client this long after a ping: close */
    uint64_t max_frame_bytes;    /* largest client frame payload (1009 above) */
    uint64_t max_message_bytes;  /* largest client message, fragments summed (1009 above) */
    uint32_t buffer_bytes;       /* high-water mark of each direction's queue */
    uint32_t max_sessions;       /* concurrent sessions on this route; 0: no limit */
    uint32_t max_session_ms;     /* a session's lifetime from its 101: then close 1008; 0: none */
    uint32_t max_line_bytes;     /* lines mode: longest backend line, its end not counted (1009 above) */
    uint32_t splice_min_bytes; /* backend data queued at least this much is spliced to the client; 0: never */
};

/* How backend bytes become messages, and client messages bytes. */
enum route_frame_mode {
    ROUTE_FRAME_BINARY = 0, /* whatever arrives: one binary message (websockify's framing) */
    ROUTE_FRAME_TEXT,       /* whatever arrives: one text message of valid UTF-8 */
    ROUTE_FRAME_LINES,      /* each line one text message; each client message one line */
};

/* What text and lines modes do with backend bytes that are not UTF-8. */
enum route_text_invalid {
    ROUTE_TEXT_REPLACE = 0, /* U+FFFD for each ill-formed sequence */
    ROUTE_TEXT_CLOSE,       /* close 1011 */
};

#define ROUTE_ALL_LISTENERS UINT64_MAX
#define ROUTE_MAX_LISTENERS 64

struct route {
    char *name;
    char *path; /* the pattern without a trailing '*' */
    size_t path_len;
    bool is_prefix; /* pattern ended in '*' */
    char **hosts;   /* lower-case names, "*.example.com" wildcards; NULL: any host */
    size_t host_count;
    uint64_t listener_mask; /* bit i set: listener i serves this route */
    struct addr target;
    struct limits limits;
    char **cert_names; /* client certificate allow-list (CN or SAN); NULL: none */
    size_t cert_name_count;
    const struct tls_client *target_tls; /* TLS to the backend; NULL: plain TCP */
    enum route_frame_mode frame_mode;
    enum route_text_invalid text_invalid;
};

struct route_table;
struct tls_client;

/* A new, empty table with one reference. NULL on allocation failure. */
struct route_table *route_table_new(void);

/* Append a deep copy of 'route' (strings and host list are copied; path_len is taken
 * from the path). 0, or -1 on ENOMEM. */
int route_table_add(struct route_table *table, const struct route *route);

/* Hand 'object' to the table: 'free_fn(object)' runs when the table is freed. For things
 * routes point to (TLS contexts) that must live as long as any session using the table.
 * 0, or -1 on ENOMEM (the object is then not attached). */
int route_table_attach(struct route_table *table, void *object, void (*free_fn)(void *object));

void route_table_ref(struct route_table *table);
/* Drop a reference; the last one frees the table. NULL is ignored. */
void route_table_unref(struct route_table *table);

/* The [gateway] limits, which apply to a connection until a route is chosen. */
void route_table_set_defaults(struct route_table *table, const struct limits *defaults);
const struct limits *route_table_defaults(const struct route_table *table);

size_t route_table_count(const struct route_table *table);
const struct route *route_table_get(const struct route_table *table, size_t index);

/* Find the route for a request on listener 'listener_index' (< ROUTE_MAX_LISTENERS).
 * 'host' is the Host header value (port and brackets allowed, may be NULL), 'path' the
 * request path without query. An exact host name beats a "*." wildcard, which beats a
 * host-less route; then exact paths beat prefixes, longer prefixes beat shorter ones, and
 * among equals the earlier route wins. The result belongs to 'table' and stays valid
 * while the caller holds a reference. NULL if nothing matches. */
const struct route *route_lookup(const struct route_table *table, unsigned listener_index, const char *host,
                                 size_t host_len, const char *path, size_t path_len);

/* Count a new session on 'route' (which belongs to 'table'). Returns false, counting
 * nothing, when the route is at limits.max_sessions. Safe from any thread. */
bool route_session_acquire(struct route_table *table, const struct route *route);
void route_session_release(struct route_table *table, const struct route *route);
unsigned route_session_count(const struct route_table *table, const struct route *route);

/* Whether a route's host pattern ("example.com", "*.example.com") matches a bare,
 * lower-case host name. */
bool route_host_matches(const char *pattern, const char *host, size_t host_len);

/* Reduce a Host header value to its name: strip the port, brackets and a trailing dot,
 * and lower-case it into 'out' (size 'out_size'). Returns the length, or 0 if unusable. */
size_t route_normalize_host(const char *host, size_t host_len, char *out, size_t out_size);

#endif
