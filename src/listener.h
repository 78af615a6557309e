/* listener.h - one listening socket per [listener:NAME]: accept, set socket options, hand
 * the connection to a new session. Pauses accepting on descriptor exhaustion. */
#ifndef WSPLICE_LISTENER_H
#define WSPLICE_LISTENER_H

#include "config.h"
#include "worker.h"

struct listener;

/* Bind and listen on cfg->bind (an empty host means every address: IPv6 and IPv4 when
 * the system has IPv6, else IPv4). Logs the bound address, including a kernel-chosen port.
 * 'index' is the listener's position in the config (routes refer to it). With several
 * workers each has a socket of its own: 'reuse_port' sets SO_REUSEPORT, and 'first' (the
 * first worker's socket; NULL for that one) gives the address to bind and the per-IP and
 * pending counts to share. Returns NULL after logging why. */
struct listener *listener_new(struct worker *w, const struct listener_config *cfg, unsigned index,
                              const struct listener *first, bool reuse_port);

/* Stop accepting; the socket is closed. Sessions already accepted are not affected. */
void listener_stop(struct listener *l);

void listener_free(struct listener *l);

/* Stop or resume accepting (connections wait in the kernel's backlog meanwhile). */
void listener_pause(struct listener *l, bool paused);

/* Take a reloaded config's handshake and per-IP limits and TLS contexts (certificates)
 * for new connections; open sessions keep what they started with, and per-IP counts carry
 * over. The bind address is not changed. */
void listener_update(struct listener *l, const struct listener_config *cfg);

#endif
