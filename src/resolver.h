/* resolver.h - backend host names to addresses, without blocking the event loop.
 *
 * Two kinds, chosen by [gateway] resolver:
 *   RESOLVER_SYSTEM  getaddrinfo() on a few helper threads: /etc/hosts, nsswitch, search
 *                    domains and the name servers of /etc/resolv.conf in order, exactly as
 *                    every other program on the machine (and in a container) resolves.
 *   RESOLVER_EVDNS   libevent's asynchronous resolver with its own resolv.conf; no threads,
 *                    but it rotates over the name servers and takes an answer of "no such
 *                    name" from any of them as final.
 *
 * A query's callback always runs later on the loop thread, never inside resolver_lookup(),
 * and never after resolver_cancel(). The callback owns 'res' (evutil_freeaddrinfo()). */
#ifndef WSPLICE_RESOLVER_H
#define WSPLICE_RESOLVER_H

#include <stdint.h>

#include <event2/util.h>

struct event_base;
struct resolver;
struct resolver_query;

enum resolver_kind {
    RESOLVER_SYSTEM = 0,
    RESOLVER_EVDNS,
};

/* err: 0 or an EVUTIL_EAI_* / EAI_* code (evutil_gai_strerror() names it). */
typedef void (*resolver_cb)(int err, struct evutil_addrinfo *res, void *arg);

/* resolv_conf is used by RESOLVER_EVDNS only. NULL on failure. */
struct resolver *resolver_new(struct event_base *base, enum resolver_kind kind, const char *resolv_conf);

/* Stop taking queries; the ones in flight still get their callbacks, then the resolver
 * frees itself. For a configuration reload. */
void resolver_retire(struct resolver *r);

/* Tear down (the event loop is ending): pending callbacks never run. Threads still inside
 * getaddrinfo() finish on their own and free what they hold. Returns 1 if libevent's
 * resolver still owes answers to cancelled lookups: run the loop (EVLOOP_NONBLOCK) until
 * they arrive, which frees the rest; 0 when all is released. */
int resolver_free(struct resolver *r);

/* Start a lookup of host:port for TCP. NULL if it could not start (no memory, no thread). */
struct resolver_query *resolver_lookup(struct resolver *r, const char *host, uint16_t port, resolver_cb cb,
                                       void *arg);

/* The callback will not run. 'q' must still be pending (its callback has not run). */
void resolver_cancel(struct resolver_query *q);

/* Does this resolver still answer for 'kind' and 'resolv_conf'? (false once retired) */
int resolver_matches(const struct resolver *r, enum resolver_kind kind, const char *resolv_conf);

#endif
