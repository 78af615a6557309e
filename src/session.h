/* session.h - one client <-> backend pipe: the upgrade handshake, the backend connect,
 * the frame relay with backpressure, and the close ordering of RFC 6455 §7. */
#ifndef WSPLICE_SESSION_H
#define WSPLICE_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "config.h"
#include "worker.h"

struct session;

struct tls_server;
struct iplimit_table;
struct webroot;

/* What every worker's socket for one listener shares: per-IP counts and buckets (under
 * 'lock') and the pending handshakes. The first worker's listener owns it. */
struct admission_counts {
    pthread_mutex_t lock;
    struct iplimit_table *clients; /* owned; NULL: never tracked */
    atomic_size_t pending;         /* connections accepted and neither upgraded nor refused yet */
};

/* What a listener shares with the connections it accepts: its limits and TLS contexts,
 * and the counters its connections keep themselves in. The listener owns it and outlives
 * every session it started. */
struct session_admission {
    unsigned listener_index;
    struct listener_limits limits;
    struct tls_server *tls;          /* counted reference; NULL: plain only */
    struct webroot *web;             /* counted reference; NULL: no static files */
    struct admission_counts *counts; /* shared with the other workers' sockets */
};

/* Take ownership of an accepted connection 'fd' from the listener of 'adm' and start
 * reading its upgrade request, unless a limit refuses it: then a plain connection gets
 * 429 or 503 (with Retry-After), and on a TLS listener it is closed at once. With
 * adm->tls (the session takes a reference) the first byte decides between TLS and plain.
 * With adm->web (the session takes a reference) requests without a WebSocket upgrade are
 * answered from it, and the connection may carry several of them before an upgrade. On
 * any failure the fd is closed and the reason logged. */
void session_start(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, socklen_t peer_len,
                   struct session_admission *adm);

/* SIGTERM: answer pending handshakes with 503 and send close 1001 to open sessions.
 * Sessions end on their own; w->on_empty runs when the last one is gone. */
void session_drain_all(struct worker *w);

/* Free every session now, without any goodbye (the drain time ran out, or exit). */
void session_free_all(struct worker *w);

#endif
