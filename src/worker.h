/* worker.h - one event loop and the sessions it runs. Today the process has one; with
 * `workers = N` each thread gets its own, and nothing here is shared between them except
 * the route table (reference-counted) and the metrics (atomic). */
#ifndef WSPLICE_WORKER_H
#define WSPLICE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct resolver;
struct config;
struct session;

struct worker {
    struct event_base *base;   /* borrowed from main */
    struct resolver *resolver; /* owned; created on the first backend name to resolve */
    const struct config *cfg;  /* borrowed: the config new sessions start with */
    struct session *sessions;  /* owned: every live session, linked through session->next */
    size_t session_count;
    size_t max_sessions; /* the effective global limit: more get 503 */
    size_t accept_limit; /* connections (sessions and 503s in flight) at which to stop accepting */
    bool accept_paused;  /* at accept_limit: new connections wait in the kernel's backlog */
    void (*on_accept_pause)(struct worker *w, bool paused); /* tell the listeners */
    uint64_t next_session_id;
    bool draining;                      /* SIGTERM: no new sessions; break the loop when empty */
    void (*on_empty)(struct worker *w); /* called when draining and the last session ends */
};

#endif
