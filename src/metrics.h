/* metrics.h - the process's counters, bumped where each event happens. Read as a
 * snapshot (SIGUSR1 logs one). Relaxed atomics: exact totals, no ordering promises. */
#ifndef WSPLICE_METRICS_H
#define WSPLICE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct metrics {
    atomic_uint_fast64_t sessions_current;         /* past accept, not yet freed */
    atomic_uint_fast64_t sessions_total;           /* accepted connections */
    atomic_uint_fast64_t sessions_open;            /* upgraded, not yet freed */
    atomic_uint_fast64_t upgrades_total;           /* 101 sent */
    atomic_uint_fast64_t handshakes_rejected;      /* answered with an HTTP error */
    atomic_uint_fast64_t backend_connect_failures; /* 502 and 504 */
    atomic_uint_fast64_t protocol_errors;          /* sessions failed with 1002/1007/1009 */
    atomic_uint_fast64_t bytes_up;                 /* payload client -> backend */
    atomic_uint_fast64_t bytes_down;               /* payload backend -> client */
    atomic_uint_fast64_t bytes_down_spliced;       /* of which moved by splice(2), never copied */
    atomic_uint_fast64_t web_requests;             /* requests answered from a web root */
    atomic_uint_fast64_t web_bytes;                /* response bodies sent from web roots */
};

extern struct metrics metrics;

#define METRICS_ADD(field, n) atomic_fetch_add_explicit(&metrics.field, (n), memory_order_relaxed)
#define METRICS_SUB(field, n) atomic_fetch_sub_explicit(&metrics.field, (n), memory_order_relaxed)
#define METRICS_GET(field)    atomic_load_explicit(&metrics.field, memory_order_relaxed)

/* Log every counter on one info line. */
void metrics_log_snapshot(void);

#endif
