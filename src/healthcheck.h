/* healthcheck.h - `wsplice --healthcheck URL`: one WebSocket opening handshake against a
 * running gateway, for container health checks. A short-lived client with blocking
 * sockets; it is not part of the gateway's event loop and shares no state with it. */
#ifndef WSPLICE_HEALTHCHECK_H
#define WSPLICE_HEALTHCHECK_H

#include <stdbool.h>

#define HEALTHCHECK_TIMEOUT_S 5 /* for each of connect, send and every read */

/* Connect to 'url' (ws://host[:port][/path], port 80 by default; IPv6 hosts in
 * brackets), send an upgrade request, and judge the answer:
 *   101 with the right Sec-WebSocket-Accept: healthy; a masked close 1000 follows.
 *   any other well-formed HTTP status (502/503/504 when the route's backend is down or
 *   full, 404 for an unrouted path): healthy, unless 'strict', which wants 101 only.
 *   no answer, a timeout, a malformed answer, or a 101 with a wrong accept key: unhealthy.
 * Prints one line: on stdout when healthy, on stderr otherwise, saying which status came
 * back. Returns the exit status: 0 healthy, 1 not. */
int healthcheck_run(const char *url, bool strict);

#endif
