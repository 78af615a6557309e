/* session.h - one client <-> backend pipe: the upgrade handshake, the backend connect,
 * the frame relay with backpressure, and the close ordering of RFC 6455 §7. */
#ifndef WSPLICE_SESSION_H
#define WSPLICE_SESSION_H

#include <sys/socket.h>

#include <event2/util.h>

#include "config.h"
#include "worker.h"

struct session;

struct tls_server;
struct webroot;

/* Take ownership of an accepted connection 'fd' from listener 'listener_index' and start
 * reading its upgrade request. With 'tls' (the listener's contexts; the session takes a
 * reference) the first byte decides between TLS and plain. With 'web' (the listener's web
 * root; the session takes a reference) requests without a WebSocket upgrade are answered
 * from it, and the connection may carry several of them before an upgrade. On any failure
 * the fd is closed and the reason logged. */
void session_start(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, socklen_t peer_len,
                   unsigned listener_index, const struct listener_limits *limits, struct tls_server *tls,
                   struct webroot *web);

/* SIGTERM: answer pending handshakes with 503 and send close 1001 to open sessions.
 * Sessions end on their own; w->on_empty runs when the last one is gone. */
void session_drain_all(struct worker *w);

/* Free every session now, without any goodbye (the drain time ran out, or exit). */
void session_free_all(struct worker *w);

#endif
