/* session.c - one client <-> backend pipe. States: HANDSHAKE (reading the upgrade
 * request) -> CONNECTING (backend connect, before any 101) -> OPEN (relaying) -> CLOSING
 * (each side flushes, shuts its write side and lingers until EOF). Callbacks are fixed;
 * the state and each side's phase decide what they do. Payload moves between evbuffers
 * without copies; client payload is unmasked in place. */
#define _GNU_SOURCE /* splice(2) */
#include "session.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include <openssl/err.h>

#include "base64.h"
#include "http_upgrade.h"
#include "iplimit.h"
#include "log.h"
#include "metrics.h"
#include "resolver.h"
#include "route.h"
#include "tls.h"
#include "utf8.h"
#include "webroot.h"
#include "ws_frame.h"

#define SESSION_MAX_READ         (64 * 1024)  /* one read from the client: about one large frame */
#define SESSION_MAX_READ_BACKEND (256 * 1024) /* one read from the backend: all of it becomes one frame */
#define SESSION_MAX_WRITE        (256 * 1024) /* one write() to either side */
#define SESSION_TLS_READ         (256 * 1024) /* one read() from a TLS side, fed to OpenSSL */
#define SESSION_TLS_CHUNK        (64 * 1024)  /* input buffer space taken at a time for SSL_read */
#define SESSION_PEEK_EXTENTS     16
#define SESSION_PEER_MAX         56           /* "[" IPv6 "]:" port */
#define BASE64_CHUNK             (3 * 1024)   /* raw bytes encoded per step: a multiple of 3 */
#define SESSION_BUSY_RETRY_S     5            /* Retry-After when a refusal's end cannot be known */
#define SESSION_REJECT_LINGER_MS 1000         /* how long a refusal at accept waits for the client's EOF */
#define SESSION_WEB_CHUNK        (128 * 1024) /* file bytes queued per step of a web response */
#define SESSION_WEB_QUEUE        (256 * 1024) /* a web response's queue is refilled up to this */

enum session_state {
    SESSION_HANDSHAKE = 0,
    SESSION_CONNECTING,
    SESSION_OPEN,
    SESSION_CLOSING,
    SESSION_WEB, /* answering a plain HTTP request from the web root; then HANDSHAKE again */
};

/* How far one side of the session has got in ending. */
enum side_phase {
    SIDE_ACTIVE = 0, /* relaying */
    SIDE_FLUSH,      /* writing what is queued, input discarded; then shutdown(SHUT_WR) */
    SIDE_LINGER,     /* write side shut; input discarded until EOF, so close() sends no RST */
};

enum close_by {
    BY_NONE = 0,
    BY_CLIENT,
    BY_BACKEND,
    BY_GATEWAY,
};

struct session {
    struct session *prev, *next;        /* in worker->sessions */
    struct worker *worker;              /* borrowed */
    struct session_admission *adm;      /* borrowed: the listener's, which outlives the session */
    struct iplimit_entry *client_entry; /* counted in adm->counts->clients; NULL: not counted */
    uint64_t id;                        /* "s=42" in every log line */
    enum session_state state;           /* change only via session_set_state() */
    struct bufferevent *client;         /* owned; NULL once that side has ended */
    struct bufferevent *backend;        /* owned; NULL until CONNECTING and after that side ended */
    struct route_table *routes;         /* counted reference, taken at accept */
    const struct route *route;          /* borrowed from routes; NULL until routed */
    const struct limits *limits;        /* borrowed from routes: the route's, or the defaults */
    struct event timer;                 /* the deadline of the current state */

    enum side_phase client_phase, backend_phase;
    bool close_sent;     /* we queued a close frame: no data frames may follow */
    bool close_received; /* the client's close frame arrived */
    bool backend_eof;    /* the backend shut its write side */
    bool awaiting_pong;  /* a ping is out and nothing came back yet */
    bool route_counted;  /* route_session_acquire() succeeded */
    bool connect_timed_out;
    bool tried_literal; /* the target's IP literal (or unix path) was tried */
    bool opened;        /* 101 was sent */
    bool is_head;       /* the request was HEAD: error replies carry no body */
    bool pending;       /* counted in adm->counts->pending: accepted, not yet upgraded or refused */
    enum http_subprotocol proto;
    uint8_t listener_index;
    uint16_t close_code; /* the code that ended the session, for the log */
    enum close_by closed_by;
    const char *close_reason;

    /* The client frame being relayed: its payload streams through as it arrives. */
    bool in_frame;
    bool frame_fin;
    uint8_t frame_mask[4];
    uint64_t frame_remaining, frame_offset;
    struct ws_message msg;
    uint8_t utf8_state;
    struct base64_decoder b64;
    enum route_frame_mode frame_mode; /* the route's, once routed */
    uint8_t msg_last_byte;            /* lines mode: the client message's last byte so far */
    size_t line_scanned;              /* lines mode: backend input already searched for '\n' */

    uint32_t max_request_bytes, handshake_timeout_ms;
    uint64_t started_ms, state_since_ms, opened_ms, last_data_ms, last_client_ms, ping_sent_ms;
    uint64_t head_since_ms; /* the request head being read started here: its deadline counts from it */

    /* A refusal decided at accept, answered once the connection is set up (plain only). */
    int refuse_status;
    const char *refuse_reason;
    unsigned refuse_retry_s;
    size_t closing_backlog; /* bytes still queued at the last CLOSING check */
    uint64_t bytes_up, bytes_down;
    uint64_t bytes_spliced; /* of bytes_down: moved with splice(2) */
    bool no_splice;         /* the backend socket cannot be spliced from (EINVAL once) */
    bool down_bulk;         /* the last backend read was at least splice_min_bytes */

    struct tls_server *tls;   /* counted reference: the listener's contexts; NULL: plain listener */
    struct event *probe;      /* owned: waits for the first byte on a TLS listener */
    evutil_socket_t probe_fd; /* owned until the client bufferevent takes it; -1 after */
    bool client_tls, backend_tls, backend_tls_failed;
    bool no_descriptors; /* a backend socket could not be created: EMFILE and the like */
    /* Once relaying, sides are read here in large reads (see session_read_socket and
     * session_read_tls); NULL while the bufferevent reads (handshake). */
    struct event *client_rd, *backend_rd;
    /* Owned, TLS sides once relaying: wait until the socket takes the rest of a write
     * batch (see session_tls_unsent). */
    struct event *client_wr, *backend_wr;

    struct webroot *web;          /* counted reference: the listener's web root; NULL: none */
    struct webroot_body web_body; /* the file of the response in SESSION_WEB */
    bool web_keep_alive;          /* after this response, read the next request */
    bool web_answered;            /* a request was answered from the web root */
    uint64_t web_progress_ms;     /* the response last moved: a stalled client is dropped */

    struct evutil_addrinfo *addrs, *next_addr; /* owned: resolved backend addresses */
    struct resolver_query *dns;                /* pending backend name lookup, or NULL */

    char accept[HTTP_ACCEPT_LEN + 1];
    char peer[SESSION_PEER_MAX];
};

/* Stop caring about a pending lookup: its callback will not run. */
static void
session_dns_abandon(struct session *s)
{
    if (s->dns == NULL)
        return;
    resolver_cancel(s->dns);
    s->dns = NULL;
}

/* The TLS error a bufferevent collected, as text, or NULL. libevent 2.1 stores
 * SSL_get_error()'s small code (library 0) among OpenSSL's real errors and hands them back
 * newest first, so the reason is the oldest entry from a real library. */
static const char *
session_tls_error(struct bufferevent *bev, char *buf, size_t size)
{
    unsigned long e, reason = 0;

    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (ERR_GET_LIB(e) != 0)
            reason = e;
    /* A failed SSL_read of our own (session_read_tls) left its reasons in the thread's
     * queue instead, oldest first. */
    while (reason == 0 && (e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) != 0)
            reason = e;
    ERR_clear_error(); /* nothing may leak into the next connection's queue */
    if (reason == 0)
        return NULL;
    ERR_error_string_n(reason, buf, size);
    return buf;
}

static void session_free(struct session *s);
static void session_backend_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_read_remaining(struct bufferevent *bev, struct event *rd, struct session *s,
                                   void (*relay)(struct session *s));
static void session_client_frames(struct session *s);
static void session_backend_data(struct session *s);
static void session_connect_next(struct session *s);

static uint64_t
session_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *
session_state_str(enum session_state st)
{
    switch (st) {
    case SESSION_HANDSHAKE:
        return "HANDSHAKE";
    case SESSION_CONNECTING:
        return "CONNECTING";
    case SESSION_OPEN:
        return "OPEN";
    case SESSION_CLOSING:
        return "CLOSING";
    case SESSION_WEB:
        return "WEB";
    }
    return "?";
}

static const char *
session_by_str(enum close_by by)
{
    switch (by) {
    case BY_CLIENT:
        return "client";
    case BY_BACKEND:
        return "backend";
    case BY_GATEWAY:
        return "gateway";
    case BY_NONE:
        break;
    }
    return "none";
}

/* ---- timers ---- */

static void
session_arm_timer(struct session *s)
{
    uint64_t now = session_now_ms(), deadline = UINT64_MAX;
    const struct limits *lim = s->limits;

    switch (s->state) {
    case SESSION_HANDSHAKE:
        deadline = s->head_since_ms + s->handshake_timeout_ms;
        break;
    case SESSION_WEB:
        deadline = s->web_progress_ms + s->handshake_timeout_ms;
        break;
    case SESSION_CONNECTING:
        deadline = s->state_since_ms + lim->connect_timeout_ms;
        break;
    case SESSION_OPEN:
        if (lim->max_session_ms)
            deadline = s->opened_ms + lim->max_session_ms;
        if (lim->idle_timeout_ms && s->last_data_ms + lim->idle_timeout_ms < deadline)
            deadline = s->last_data_ms + lim->idle_timeout_ms;
        if (lim->ping_interval_ms) {
            uint64_t p = s->awaiting_pong ? s->ping_sent_ms + lim->ping_timeout_ms
                                          : s->last_client_ms + lim->ping_interval_ms;
            if (p < deadline)
                deadline = p;
        }
        break;
    case SESSION_CLOSING:
        deadline = s->state_since_ms + lim->close_timeout_ms;
        /* A client refused at accept gets a short linger: otherwise one that never closes
         * holds a descriptor for the whole close timeout, and a flood of them from an
         * address over its limit would fill the gateway all the same. */
        if (s->refuse_status != 0 && lim->close_timeout_ms > SESSION_REJECT_LINGER_MS)
            deadline = s->state_since_ms + SESSION_REJECT_LINGER_MS;
        break;
    }
    if (deadline == UINT64_MAX) {
        event_del(&s->timer);
        return;
    }
    uint64_t delay = deadline > now ? deadline - now : 0;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)(delay % 1000) * 1000};
    event_add(&s->timer, &tv);
}

/* The connection is no longer a pending handshake: upgraded, refused or ending. */
static void
session_pending_done(struct session *s)
{
    if (s->pending) {
        s->pending = false;
        atomic_fetch_sub(&s->adm->counts->pending, 1);
    }
}

static void
session_set_state(struct session *s, enum session_state next)
{
    static const bool legal[5][5] = {
        [SESSION_HANDSHAKE] = {[SESSION_CONNECTING] = true, [SESSION_CLOSING] = true, [SESSION_WEB] = true},
        [SESSION_CONNECTING] = {[SESSION_OPEN] = true, [SESSION_CLOSING] = true},
        [SESSION_OPEN] = {[SESSION_CLOSING] = true},
        [SESSION_WEB] = {[SESSION_HANDSHAKE] = true, [SESSION_CLOSING] = true},
    };

    assert(legal[s->state][next]);
    log_debug("session s=%" PRIu64 " %s -> %s", s->id, session_state_str(s->state), session_state_str(next));
    if (next == SESSION_OPEN || next == SESSION_CLOSING)
        session_pending_done(s);
    s->state = next;
    s->state_since_ms = session_now_ms();
    session_arm_timer(s);
}

/* ---- flow control ---- */

/* Start or stop reading a side: through its own read event when it has one, else
 * through the bufferevent. */
static void
session_set_read(struct bufferevent *bev, struct event *rd, bool want)
{
    bool on = rd != NULL ? event_pending(rd, EV_READ | EV_WRITE, NULL) != 0
                         : (bufferevent_get_enabled(bev) & EV_READ) != 0;

    if (want == on)
        return;
    if (rd == NULL) {
        want ? bufferevent_enable(bev, EV_READ) : bufferevent_disable(bev, EV_READ);
        return;
    }
    if (!want) {
        event_del(rd);
        return;
    }
    event_add(rd, NULL);
    /* Input already read from the socket will not make it readable again. */
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl != NULL && tls_feed_pending(ssl))
        event_active(rd, EV_READ, 1);
}

/* bufferevent_openssl writes each TLS record (at most 16 KiB) with a write(2) of its own;
 * a relaying TLS side holds them in a batch (tls_relay_start) that goes out in one write
 * when the side's queue runs empty, from session_output_cb. Returns true if part of the
 * batch waits for the socket to be writable, and arms 'wr' for it. Plain sides, and a
 * socket that failed (its error shows on the next read), hold nothing. */
static bool
session_tls_unsent(struct bufferevent *bev, struct event *wr)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);

    if (ssl == NULL || wr == NULL || tls_batch_flush(ssl) != 0)
        return false;
    event_add(wr, NULL);
    return true;
}

static void
session_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct session *s = arg;

    if (info->n_deleted == 0 || evbuffer_get_length(buf) != 0)
        return; /* the bufferevent goes on writing: the batch fills up further */
    if (s->client != NULL && buf == bufferevent_get_output(s->client))
        session_tls_unsent(s->client, s->client_wr);
    else if (s->backend != NULL && buf == bufferevent_get_output(s->backend))
        session_tls_unsent(s->backend, s->backend_wr);
}

/* Whether backend reads may be spliced to the client (session_splice_down): binary frames
 * between plain sockets, while both sides relay. */
static bool
session_splice_possible(const struct session *s)
{
    return s->limits->splice_min_bytes != 0 && !s->no_splice && s->state == SESSION_OPEN &&
           s->frame_mode == ROUTE_FRAME_BINARY && s->proto != HTTP_SUBPROTOCOL_BASE64 && s->client != NULL &&
           s->client_phase == SIDE_ACTIVE && !s->close_sent && !s->client_tls && s->backend != NULL &&
           !s->backend_tls && s->backend_phase == SIDE_ACTIVE;
}

/* ... and the next one may: nothing is queued for the client that a spliced frame would
 * overtake. */
static bool
session_splice_ready(const struct session *s)
{
    return session_splice_possible(s) && evbuffer_get_length(bufferevent_get_output(s->client)) == 0 &&
           evbuffer_get_length(bufferevent_get_input(s->backend)) == 0;
}

/* Read from a side only while the queue its data feeds is under the high-water mark.
 * Sides that are ending always read: their input is discarded until EOF. A backend
 * streaming in bulk to a client that could take it by splice waits until the client's
 * queue is empty instead: the next read is then spliced, not copied behind the queue. */
static void
session_update_flow(struct session *s)
{
    size_t hw = s->limits->buffer_bytes;
    bool client_takes_data = s->client != NULL && s->client_phase == SIDE_ACTIVE && !s->close_sent;
    bool backend_takes_data = s->backend != NULL && s->backend_phase == SIDE_ACTIVE;

    if (s->state != SESSION_OPEN && s->state != SESSION_CLOSING)
        return;
    if (s->client != NULL) {
        bool want = true;
        if (s->client_phase == SIDE_ACTIVE) {
            /* Pongs and closes queue on the client's own output: bound that too. */
            want = evbuffer_get_length(bufferevent_get_output(s->client)) < hw &&
                   (!backend_takes_data || evbuffer_get_length(bufferevent_get_output(s->backend)) < hw);
        }
        session_set_read(s->client, s->client_rd, want);
    }
    if (s->backend != NULL) {
        bool want = !s->backend_eof;
        if (want && s->backend_phase == SIDE_ACTIVE && client_takes_data) {
            size_t out = evbuffer_get_length(bufferevent_get_output(s->client));
            want = out < hw && !(out > 0 && s->down_bulk && session_splice_possible(s));
        }
        session_set_read(s->backend, s->backend_rd, want);
    }
}

/* ---- ending ---- */

static void
session_log_close(struct session *s)
{
    char target[ADDR_STR_MAX];
    uint64_t dur = session_now_ms() - s->started_ms;

    log_info("session s=%" PRIu64 " close client=%s route=%s target=%s up=%" PRIu64 " down=%" PRIu64
             " dur=%" PRIu64 ".%03us code=%u by=%s reason=\"%s\"",
             s->id, s->peer, s->route->name, addr_format(&s->route->target, target, sizeof target),
             s->bytes_up, s->bytes_down, dur / 1000, (unsigned)(dur % 1000), s->close_code,
             session_by_str(s->closed_by), s->close_reason ? s->close_reason : "");
}

/* Free a side's own read and write events, if it has them. */
static void
session_events_free(struct event **rd, struct event **wr)
{
    if (*rd != NULL)
        event_free(*rd);
    if (*wr != NULL)
        event_free(*wr);
    *rd = *wr = NULL;
}

/* Tear everything down now. 's' is gone afterwards. */
static void
session_free(struct session *s)
{
    struct worker *w = s->worker;

    if (s->opened) {
        session_log_close(s);
        METRICS_SUB(sessions_open, 1);
    } else {
        log_debug("session s=%" PRIu64 " end state=%s", s->id, session_state_str(s->state));
    }
    session_events_free(&s->client_rd, &s->client_wr);
    session_events_free(&s->backend_rd, &s->backend_wr);
    if (s->client != NULL)
        bufferevent_free(s->client);
    if (s->backend != NULL)
        bufferevent_free(s->backend);
    if (s->probe != NULL)
        event_free(s->probe);
    if (s->probe_fd >= 0)
        evutil_closesocket(s->probe_fd);
    tls_server_unref(s->tls);
    webroot_body_cleanup(&s->web_body);
    webroot_unref(s->web);
    session_dns_abandon(s); /* the lookup frees the ticket when it returns */
    if (s->addrs != NULL)
        evutil_freeaddrinfo(s->addrs);
    event_del(&s->timer);
    session_pending_done(s);
    if (s->client_entry != NULL) {
        struct admission_counts *c = s->adm->counts;
        pthread_mutex_lock(&c->lock);
        iplimit_release(c->clients, s->client_entry, session_now_ms());
        pthread_mutex_unlock(&c->lock);
    }
    if (s->route_counted)
        route_session_release(s->routes, s->route);
    route_table_unref(s->routes);
    METRICS_ADD(bytes_up, s->bytes_up);
    METRICS_ADD(bytes_down, s->bytes_down);
    METRICS_ADD(bytes_down_spliced, s->bytes_spliced);
    METRICS_SUB(sessions_current, 1);

    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    w->session_count--;
    size_t connections = atomic_fetch_sub(&w->group->connections, 1) - 1;
    free(s);
    if (w->accept_paused && connections < atomic_load(&w->group->accept_limit))
        worker_resume_accepting(w);
    if (w->draining && w->session_count == 0)
        worker_on_empty(w);
}

/* The client side is finished: release it, and the session if nothing is left. */
static void
session_client_done(struct session *s)
{
    session_events_free(&s->client_rd, &s->client_wr);
    bufferevent_free(s->client);
    s->client = NULL;
    if (s->backend == NULL || s->state == SESSION_CONNECTING)
        session_free(s);
}

static void
session_backend_done(struct session *s)
{
    session_events_free(&s->backend_rd, &s->backend_wr);
    bufferevent_free(s->backend);
    s->backend = NULL;
    if (s->client == NULL)
        session_free(s);
}

/* The write side of a side has flushed: send close_notify (TLS) and FIN, and wait for the
 * peer's EOF. FIN waits while the end of a TLS write batch waits for the socket. */
static void
session_client_shutdown(struct session *s)
{
    s->client_phase = SIDE_LINGER;
    session_set_read(s->client, s->client_rd, true);
    if (s->client_tls)
        SSL_shutdown(bufferevent_openssl_get_ssl(s->client)); /* close_notify; the queue is empty */
    if (!session_tls_unsent(s->client, s->client_wr))         /* else session_client_wr_cb shuts */
        shutdown(bufferevent_getfd(s->client), SHUT_WR);
}

/* FIN to the backend, once everything before it went out. May free 's'. */
static void
session_backend_fin(struct session *s)
{
    shutdown(bufferevent_getfd(s->backend), SHUT_WR);
    if (s->backend_eof) {
        session_backend_done(s); /* the backend already closed its side: nothing to wait for */
        return;
    }
    session_set_read(s->backend, s->backend_rd, true);
}

/* May free 's'. */
static void
session_backend_shutdown(struct session *s)
{
    s->backend_phase = SIDE_LINGER;
    if (s->backend_tls)
        SSL_shutdown(bufferevent_openssl_get_ssl(s->backend));
    if (!session_tls_unsent(s->backend, s->backend_wr)) /* else session_backend_wr_cb goes on */
        session_backend_fin(s);
}

/* Stop relaying to the client: flush what is queued (a close frame or an HTTP reply),
 * then shut down and linger. */
static void
session_client_finish(struct session *s)
{
    if (s->client == NULL || s->client_phase != SIDE_ACTIVE)
        return;
    s->client_phase = SIDE_FLUSH;
    bufferevent_setwatermark(s->client, EV_WRITE, 0, 0);
    evbuffer_drain(bufferevent_get_input(s->client), evbuffer_get_length(bufferevent_get_input(s->client)));
    bufferevent_enable(s->client, EV_WRITE);
    session_set_read(s->client, s->client_rd, true);
    if (evbuffer_get_length(bufferevent_get_output(s->client)) == 0 &&
        !session_tls_unsent(s->client, s->client_wr))
        session_client_shutdown(s);
}

/* Stop relaying to the backend: every byte already queued for it is written first.
 * May free 's' (when the client is already gone). */
static void
session_backend_finish(struct session *s)
{
    if (s->backend == NULL || s->backend_phase != SIDE_ACTIVE)
        return;
    s->backend_phase = SIDE_FLUSH;
    bufferevent_setwatermark(s->backend, EV_WRITE, 0, 0);
    evbuffer_drain(bufferevent_get_input(s->backend), evbuffer_get_length(bufferevent_get_input(s->backend)));
    if (evbuffer_get_length(bufferevent_get_output(s->backend)) == 0 &&
        !session_tls_unsent(s->backend, s->backend_wr))
        session_backend_shutdown(s);
}

static void
session_enter_closing(struct session *s)
{
    if (s->state != SESSION_CLOSING) {
        session_set_state(s, SESSION_CLOSING);
        s->closing_backlog = SIZE_MAX;
    }
}

/* Record why the session ends; the first reason wins. */
static void
session_note_close(struct session *s, uint16_t code, enum close_by by, const char *reason)
{
    if (s->closed_by != BY_NONE)
        return;
    s->close_code = code;
    s->closed_by = by;
    s->close_reason = reason;
}

/* Queue a close frame to the client, once (§5.5.1). */
static void
session_send_close(struct session *s, uint16_t code, const char *reason)
{
    uint8_t frame[2 + WS_MAX_CONTROL_PAYLOAD];

    if (s->close_sent || s->client == NULL || s->client_phase != SIDE_ACTIVE)
        return;
    size_t n = ws_close_encode(frame, code, reason, strlen(reason));
    bufferevent_write(s->client, frame, n);
    s->close_sent = true;
}

/* Fail the WebSocket connection (§7.1.7): close frame with 'code', then drop the TCP
 * connection without waiting for the reply. Bytes the client sent before the error still
 * reach the backend. May free 's'. */
static void
session_fail(struct session *s, uint16_t code, const char *reason)
{
    METRICS_ADD(protocol_errors, 1);
    log_debug("session s=%" PRIu64 " fail code=%u reason=\"%s\"", s->id, code, reason);
    session_note_close(s, code, BY_GATEWAY, reason);
    session_send_close(s, code, reason);
    session_enter_closing(s);
    session_client_finish(s);
    session_backend_finish(s);
}

/* Start a close handshake from our side ('code' 1001 for idle timeouts and shutdown):
 * the backend is flushed and closed, the client gets close_timeout to answer. May free 's'. */
static void
session_close_gracefully(struct session *s, uint16_t code, const char *reason)
{
    session_note_close(s, code, BY_GATEWAY, reason);
    session_send_close(s, code, reason);
    session_enter_closing(s);
    session_backend_finish(s);
}

/* Answer the handshake with an HTTP error and close; a nonzero 'retry_after_s' tells the
 * client when to come back (429, and 503 for limits). */
static void
session_refuse(struct session *s, int status, const char *reason, unsigned retry_after_s)
{
    char reply[HTTP_REPLY_MAX];
    size_t n = http_upgrade_format_error(reply, status, reason, retry_after_s);

    if (s->client == NULL) { /* still waiting for the first byte: nothing to answer on */
        log_debug("session s=%" PRIu64 " closed before its first byte: %s", s->id, reason);
        session_free(s);
        return;
    }
    if (s->is_head) { /* a reply to HEAD has no content (RFC 9110 §9.3.2) */
        const char *end = strstr(reply, "\r\n\r\n");
        if (end != NULL)
            n = (size_t)(end - reply) + 4;
    }
    log_info("session s=%" PRIu64 " reject client=%s status=%d reason=\"%s\" retry_after=%u", s->id, s->peer,
             status, reason, retry_after_s);
    METRICS_ADD(handshakes_rejected, 1);
    session_dns_abandon(s); /* a late answer must not restart the connect */
    if (s->backend != NULL) {
        bufferevent_free(s->backend);
        s->backend = NULL;
    }
    bufferevent_write(s->client, reply, n);
    session_enter_closing(s);
    session_client_finish(s);
}

static void
session_reject(struct session *s, int status, const char *reason)
{
    session_refuse(s, status, reason, 0);
}

/* ---- client -> backend ---- */

static void
session_send_control(struct session *s, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t frame[WS_MAX_SERVER_HEADER_LEN + WS_MAX_CONTROL_PAYLOAD];
    size_t h = ws_frame_encode_header(frame, true, opcode, len);

    if (len > 0)
        memcpy(frame + h, payload, len);
    bufferevent_write(s->client, frame, h + len);
}

/* A whole control frame, unmasked. Returns -1 when the session stopped reading frames. */
static int
session_client_control(struct session *s, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint16_t code = 0;
    enum ws_close_result cr;

    switch (opcode) {
    case WS_OP_PING:
        if (!s->close_sent)
            session_send_control(s, WS_OP_PONG, payload, len); /* §5.5.3: same payload */
        return 0;
    case WS_OP_PONG:
        return 0; /* liveness is noted for every frame */
    case WS_OP_CLOSE:
        cr = ws_close_parse(payload, len, &code);
        if (cr != WS_CLOSE_OK) {
            session_fail(s, cr == WS_CLOSE_BAD_REASON ? WS_CLOSE_INVALID_DATA : WS_CLOSE_PROTOCOL_ERROR,
                         ws_close_result_str(cr));
            return -1;
        }
        s->close_received = true;
        session_note_close(s, code, BY_CLIENT, "client close");
        /* Echo the code (§5.5.1); the server then closes TCP first (§7.1.1). */
        session_send_close(s, code, "");
        session_enter_closing(s);
        session_client_finish(s);
        session_backend_finish(s); /* the client is still there: 's' survives */
        return -1;
    default:
        return 0;
    }
}

/* Queue 'hlen' bytes of 'hdr' (none if 0) and then the first 'n' bytes of 'in' for a side.
 * With 'now', a plain side with nothing queued yet is offered them first in one writev, so
 * a message leaves at once instead of on the event loop's next turn, and the side's write
 * event is not armed and disarmed for it; what the socket does not take is queued in
 * order. A failed writev queues everything: the bufferevent's own write then reports it. */
static void
session_send(struct bufferevent *bev, bool now, uint8_t *hdr, size_t hlen, struct evbuffer *in, size_t n)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t sent = 0;

    if (now && evbuffer_get_length(out) == 0 && bufferevent_openssl_get_ssl(bev) == NULL) {
        struct evbuffer_iovec vec[SESSION_PEEK_EXTENTS];
        struct iovec iov[SESSION_PEEK_EXTENTS + 1];
        int cnt = evbuffer_peek(in, (ev_ssize_t)n, NULL, vec, SESSION_PEEK_EXTENTS), k = 0;
        if (cnt >= 0 && cnt <= SESSION_PEEK_EXTENTS) { /* else: too scattered, queue it */
            size_t left = n;
            if (hlen > 0)
                iov[k++] = (struct iovec){.iov_base = hdr, .iov_len = hlen};
            for (int i = 0; i < cnt && left > 0; i++) {
                size_t len = vec[i].iov_len < left ? vec[i].iov_len : left;
                iov[k++] = (struct iovec){.iov_base = vec[i].iov_base, .iov_len = len};
                left -= len;
            }
        }
        ssize_t r = 0;
        if (k > 0) {
            do
                r = writev(bufferevent_getfd(bev), iov, k);
            while (r == -1 && errno == EINTR);
        }
        sent = r > 0 ? (size_t)r : 0;
    }
    if (sent < hlen) {
        evbuffer_add(out, hdr + sent, hlen - sent);
        sent = hlen;
    }
    evbuffer_drain(in, sent - hlen);
    evbuffer_remove_buffer(in, out, n - (sent - hlen));
}

/* Relay 'n' payload bytes (n > 0, all in 'in') of the current data frame. Returns -1 on
 * a fatal payload error (session failed). */
static int
session_client_payload(struct session *s, struct evbuffer *in, size_t n)
{
    struct evbuffer_iovec vec[SESSION_PEEK_EXTENTS];
    struct evbuffer *out;
    size_t done = 0;
    int cnt;

    if (s->backend == NULL || s->backend_phase != SIDE_ACTIVE) {
        evbuffer_drain(in, n); /* nowhere to deliver it: the backend side has ended */
        done = n;
        goto out;
    }
    out = bufferevent_get_output(s->backend);
    cnt = evbuffer_peek(in, (ev_ssize_t)n, NULL, vec, SESSION_PEEK_EXTENTS);
    if (cnt > SESSION_PEEK_EXTENTS)
        cnt = SESSION_PEEK_EXTENTS; /* the rest goes on the next pass */
    for (int i = 0; i < cnt && done < n; i++) {
        uint8_t *p = vec[i].iov_base;
        size_t len = vec[i].iov_len < n - done ? vec[i].iov_len : n - done;

        ws_frame_unmask(p, len, s->frame_mask, s->frame_offset + done);
        if (s->proto == HTTP_SUBPROTOCOL_BASE64) {
            struct evbuffer_iovec space;
            size_t out_len = 0;
            if (evbuffer_reserve_space(out, (ev_ssize_t)(len / 4 * 3 + 3), &space, 1) != 1) {
                session_fail(s, WS_CLOSE_INTERNAL_ERROR, "out of memory");
                return -1;
            }
            if (base64_decode_update(&s->b64, p, len, space.iov_base, &out_len) != BASE64_OK) {
                session_fail(s, WS_CLOSE_INVALID_DATA, "invalid base64 payload");
                return -1;
            }
            space.iov_len = out_len;
            evbuffer_commit_space(out, &space, 1);
            s->bytes_up += out_len;
        } else if (s->msg.opcode == WS_OP_TEXT && utf8_validate(&s->utf8_state, p, len) == UTF8_INVALID) {
            session_fail(s, WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
            return -1;
        }
        if (s->frame_mode == ROUTE_FRAME_LINES && len > 0)
            s->msg_last_byte = p[len - 1];
        done += len;
    }
    if (s->proto == HTTP_SUBPROTOCOL_BASE64) {
        evbuffer_drain(in, done);
    } else {
        /* Written at once only when it is the last of what the client sent: a read full
         * of small frames is queued and goes out in one write. */
        session_send(s->backend, evbuffer_get_length(in) == done, NULL, 0, in, done);
        s->bytes_up += done;
    }
out:
    s->frame_offset += done;
    s->frame_remaining -= done;
    return 0;
}

/* The current data frame is complete. Returns -1 if the session failed. */
static int
session_client_frame_end(struct session *s)
{
    s->in_frame = false;
    if (!s->frame_fin)
        return 0;
    if (s->proto == HTTP_SUBPROTOCOL_BASE64) {
        if (base64_decode_final(&s->b64) != BASE64_OK) {
            session_fail(s, WS_CLOSE_INVALID_DATA, "base64 message not padded to a whole quantum");
            return -1;
        }
    } else if (s->msg.opcode == WS_OP_TEXT && s->utf8_state != UTF8_STATE_INIT) {
        session_fail(s, WS_CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence");
        return -1;
    }
    if (s->frame_mode == ROUTE_FRAME_LINES && s->backend != NULL && s->backend_phase == SIDE_ACTIVE &&
        s->msg_last_byte != '\n') {
        /* Each message is one line: end it with CRLF, or complete a CR it ends with. */
        const char *end = s->msg_last_byte == '\r' ? "\n" : "\r\n";
        evbuffer_add(bufferevent_get_output(s->backend), end, strlen(end));
        s->bytes_up += strlen(end);
    }
    ws_message_end(&s->msg);
    return 0;
}

/* Parse and relay every complete piece of client input. */
static void
session_client_frames(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client);
    bool got_any = false;

    while (s->client != NULL && s->client_phase == SIDE_ACTIVE) {
        size_t avail = evbuffer_get_length(in);
        uint8_t hb[WS_MAX_HEADER_LEN];
        struct ws_frame_header h;

        if (avail == 0)
            break;
        got_any = true;
        if (s->in_frame) {
            size_t n = avail < s->frame_remaining ? avail : (size_t)s->frame_remaining;
            if (n > 0 && session_client_payload(s, in, n) < 0)
                return;
            if (s->frame_remaining == 0 && session_client_frame_end(s) < 0)
                return;
            continue;
        }
        size_t hn = evbuffer_copyout(in, hb, avail < sizeof hb ? avail : sizeof hb);
        enum ws_parse_result r = ws_frame_parse_header(hb, hn, s->limits->max_frame_bytes, &h);
        if (r == WS_PARSE_NEED_MORE)
            break;
        if (r != WS_PARSE_OK) {
            session_fail(s, ws_parse_result_close_code(r), ws_parse_result_str(r));
            return;
        }
        if (h.opcode & 0x8) {
            uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
            if (avail < h.header_len + h.payload_len)
                break; /* control frames are acted on whole; they are at most 139 bytes */
            evbuffer_drain(in, h.header_len);
            evbuffer_remove(in, payload, (size_t)h.payload_len);
            ws_frame_unmask(payload, (size_t)h.payload_len, h.mask, 0);
            if (session_client_control(s, h.opcode, payload, (size_t)h.payload_len) < 0)
                break;
            continue;
        }
        r = ws_message_add_frame(&s->msg, &h, s->limits->max_message_bytes);
        if (r != WS_PARSE_OK) {
            session_fail(s, ws_parse_result_close_code(r), ws_parse_result_str(r));
            return;
        }
        if (h.opcode != WS_OP_CONT) {
            s->utf8_state = UTF8_STATE_INIT;
            base64_decoder_init(&s->b64);
            s->msg_last_byte = 0;
        }
        evbuffer_drain(in, h.header_len);
        s->in_frame = true;
        s->frame_fin = h.fin;
        memcpy(s->frame_mask, h.mask, sizeof s->frame_mask);
        s->frame_remaining = h.payload_len;
        s->frame_offset = 0;
        if (h.payload_len == 0 && session_client_frame_end(s) < 0)
            return;
    }
    if (got_any) {
        uint64_t now = session_now_ms();
        s->last_client_ms = now;
        s->last_data_ms = now;
        if (s->awaiting_pong) {
            /* The ping deadline was armed; the next one is an interval from now. */
            s->awaiting_pong = false;
            session_arm_timer(s);
        }
    }
}

/* ---- backend -> client ---- */

/* Frame 'n' bytes of 'in' as one base64 text message: header and payload are written
 * into a single reservation, so a failed allocation leaves 'out' untouched. */
static int
session_backend_base64(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    uint8_t raw[BASE64_CHUNK];
    struct evbuffer_iovec space;
    size_t enc_len = BASE64_ENCODED_LEN(n);

    if (evbuffer_reserve_space(out, (ev_ssize_t)(enc_len + WS_MAX_SERVER_HEADER_LEN), &space, 1) != 1)
        return -1;
    size_t o = ws_frame_encode_header(space.iov_base, true, WS_OP_TEXT, enc_len);
    while (n > 0) {
        size_t chunk = n < sizeof raw ? n : sizeof raw;
        evbuffer_remove(in, raw, chunk);
        o += base64_encode(raw, chunk, (char *)space.iov_base + o);
        n -= chunk;
    }
    space.iov_len = o;
    return evbuffer_commit_space(out, &space, 1);
}

/* Where the first 'n' bytes of 'in' (valid so far) end inside a code point: how many
 * bytes of it they hold. */
static size_t
session_utf8_tail(struct evbuffer *in, size_t n)
{
    uint8_t last[3];
    size_t k = n < sizeof last ? n : sizeof last;
    struct evbuffer_ptr pos;

    evbuffer_ptr_set(in, &pos, n - k, EVBUFFER_PTR_SET);
    evbuffer_copyout_from(in, &pos, last, k);
    for (size_t i = k; i-- > 0;)
        if ((last[i] & 0xc0) == 0xc0) /* the lead byte */
            return k - i;
    return 0;
}

/* Check the first 'n' bytes of 'in' as UTF-8 where they lie, or pulled into one piece
 * when they are spread over many chains. */
static enum utf8_result
session_utf8_check(struct evbuffer *in, size_t n)
{
    struct evbuffer_iovec vec[SESSION_PEEK_EXTENTS];
    uint8_t st = UTF8_STATE_INIT;
    enum utf8_result r = UTF8_OK;
    int cnt = evbuffer_peek(in, (ev_ssize_t)n, NULL, vec, SESSION_PEEK_EXTENTS);
    size_t seen = 0;

    if (cnt > SESSION_PEEK_EXTENTS) {
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
        return p != NULL ? utf8_validate(&st, p, n) : UTF8_INVALID;
    }
    for (int i = 0; i < cnt && seen < n && r != UTF8_INVALID; i++) {
        size_t len = vec[i].iov_len < n - seen ? vec[i].iov_len : n - seen;
        r = utf8_validate(&st, vec[i].iov_base, len);
        seen += len;
    }
    return r;
}

/* Move the first 'n' bytes of 'in' (valid UTF-8) to 'out' as one text message. */
static void
session_text_message(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    uint8_t hdr[WS_MAX_SERVER_HEADER_LEN];

    evbuffer_add(out, hdr, ws_frame_encode_header(hdr, true, WS_OP_TEXT, n));
    evbuffer_remove_buffer(in, out, n);
}

/* Text and lines modes: the first 'n' bytes of 'in' become one text message of valid
 * UTF-8 (in text mode an empty one is not sent). A code point that 'n' cuts short stays in
 * 'in' for the next read, unless 'final'. Bytes that are not UTF-8 are replaced with
 * U+FFFD, or fail the session with 1011 (after the valid text before them, in text mode),
 * as the route says. Returns the bytes taken from 'in', or -1 if the session failed. */
static long
session_send_text(struct session *s, struct evbuffer *in, struct evbuffer *out, size_t n, bool final)
{
    enum utf8_result r = session_utf8_check(in, n);
    struct evbuffer_iovec space;
    size_t bad, used;

    if (r == UTF8_OK || (r == UTF8_INCOMPLETE && !final)) {
        size_t take = r == UTF8_OK ? n : n - session_utf8_tail(in, n);
        if (take > 0 || s->frame_mode == ROUTE_FRAME_LINES)
            session_text_message(in, out, take);
        return (long)take;
    }
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)n);
    if (p == NULL) {
        session_fail(s, WS_CLOSE_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    if (s->route->text_invalid == ROUTE_TEXT_CLOSE) {
        size_t valid = utf8_valid_prefix(p, n, &bad);
        if (valid > 0 && s->frame_mode == ROUTE_FRAME_TEXT) {
            session_text_message(in, out, valid);
            s->bytes_down += valid;
        }
        session_fail(s, WS_CLOSE_INTERNAL_ERROR, "backend sent invalid UTF-8");
        return -1;
    }
    size_t len = utf8_repair(p, n, final, NULL, &used);
    if (evbuffer_reserve_space(out, (ev_ssize_t)(len + WS_MAX_SERVER_HEADER_LEN), &space, 1) != 1) {
        session_fail(s, WS_CLOSE_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    size_t o = ws_frame_encode_header(space.iov_base, true, WS_OP_TEXT, len);
    utf8_repair(p, n, final, (uint8_t *)space.iov_base + o, &used);
    space.iov_len = o + len;
    evbuffer_commit_space(out, &space, 1);
    evbuffer_drain(in, used);
    return (long)used;
}

/* Lines mode: each complete line in 'in' (up to '\n'; a '\r' before it is dropped) becomes
 * one text message, and so does what is left when the stream ends ('final'). A line over
 * max_line_bytes fails the session with 1009. */
static void
session_backend_lines(struct session *s, struct evbuffer *in, struct evbuffer *out, bool final)
{
    size_t max = s->limits->max_line_bytes;

    for (;;) {
        size_t avail = evbuffer_get_length(in), line, end;
        struct evbuffer_ptr from, eol;
        uint8_t cr = 0;

        if (avail == 0)
            return;
        /* Search only what came since the last look: a long line arriving in small reads
         * is scanned once. */
        evbuffer_ptr_set(in, &from, s->line_scanned, EVBUFFER_PTR_SET);
        eol = evbuffer_search(in, "\n", 1, &from);
        if (eol.pos == -1) {
            s->line_scanned = avail;
            if (avail > max + 1) /* + 1: room for the '\r' of a CRLF still to come */
                break;
            if (!final)
                return;
            line = end = avail;
        } else {
            line = (size_t)eol.pos;
            end = line + 1;
        }
        s->line_scanned = 0;
        if (line > 0) {
            evbuffer_ptr_set(in, &from, line - 1, EVBUFFER_PTR_SET);
            evbuffer_copyout_from(in, &from, &cr, 1);
            line -= cr == '\r';
        }
        if (line > max)
            break;
        if (session_send_text(s, in, out, line, true) < 0)
            return;
        evbuffer_drain(in, end - line);
        s->bytes_down += end;
    }
    session_fail(s, WS_CLOSE_TOO_BIG, "backend line longer than max_line_bytes");
}

/* What the backend sent so far becomes messages to the client: one binary message (or one
 * base64 text message), or in the text modes as the route says. 'final': the backend's
 * stream has ended, so nothing held back can be completed any more. */
static void
session_backend_relay(struct session *s, bool final)
{
    struct evbuffer *in = bufferevent_get_input(s->backend);
    size_t n = evbuffer_get_length(in);
    uint8_t hdr[WS_MAX_SERVER_HEADER_LEN];

    if (n == 0)
        return;
    if (s->client == NULL || s->client_phase != SIDE_ACTIVE || s->close_sent) {
        evbuffer_drain(in, n); /* after our close frame no data frame may follow (§5.5.1) */
        return;
    }
    struct evbuffer *out = bufferevent_get_output(s->client);
    if (s->frame_mode != ROUTE_FRAME_BINARY) {
        if (s->frame_mode == ROUTE_FRAME_LINES) {
            session_backend_lines(s, in, out, final);
        } else {
            long took = session_send_text(s, in, out, n, final);
            s->bytes_down += took > 0 ? (uint64_t)took : 0;
        }
        s->last_data_ms = session_now_ms();
        return;
    }
    if (s->proto == HTTP_SUBPROTOCOL_BASE64) {
        if (session_backend_base64(in, out, n) == -1) {
            evbuffer_drain(in, n);
            session_fail(s, WS_CLOSE_INTERNAL_ERROR, "out of memory");
            return;
        }
    } else {
        session_send(s->client, true, hdr, ws_frame_encode_header(hdr, true, WS_OP_BINARY, n), in, n);
    }
    s->bytes_down += n;
    s->last_data_ms = session_now_ms();
}

static void
session_backend_data(struct session *s)
{
    session_backend_relay(s, false);
}

/* ---- callbacks ---- */

static void session_client_read_cb(struct bufferevent *bev, void *arg);

/* ---- static files ---- */

/* Between two requests on a connection that has served files: nothing of the next one
 * has arrived, so it can end without an answer (as HTTP/1.1 allows for idle connections). */
static bool
session_web_idle(const struct session *s)
{
    return s->state == SESSION_HANDSHAKE && s->web_answered && s->client != NULL &&
           evbuffer_get_length(bufferevent_get_input(s->client)) == 0;
}

/* End a connection that carried only plain HTTP: flush what is queued, then close. */
static void
session_web_close(struct session *s)
{
    session_enter_closing(s);
    session_client_finish(s);
}

/* Keep the response's queue filled from its file. Once everything is queued, close the
 * connection, or go back to reading requests when the queue is short. Returns true when
 * back in HANDSHAKE with input waiting. */
static bool
session_web_pump(struct session *s)
{
    struct evbuffer *out = bufferevent_get_output(s->client);

    s->web_progress_ms = session_now_ms();
    while (s->web_body.has_file && evbuffer_get_length(out) < SESSION_WEB_QUEUE) {
        if (webroot_body_fill(&s->web_body, out, SESSION_WEB_CHUNK) == -1) {
            log_warn("web s=%" PRIu64 " client=%s cannot read the file: %s", s->id, s->peer, strerror(errno));
            s->web_keep_alive = false; /* the body is short: only the connection's end can say so */
        }
    }
    if (!s->web_body.has_file && !s->web_keep_alive) {
        session_web_close(s);
        return false;
    }
    if (s->web_body.has_file || evbuffer_get_length(out) > SESSION_WEB_QUEUE - SESSION_WEB_CHUNK) {
        session_arm_timer(s);
        return false; /* session_client_write_cb comes back as the queue drains */
    }
    bufferevent_setwatermark(s->client, EV_WRITE, 0, 0);
    s->head_since_ms = session_now_ms();
    session_set_state(s, SESSION_HANDSHAKE);
    bufferevent_enable(s->client, EV_READ);
    return evbuffer_get_length(bufferevent_get_input(s->client)) > 0;
}

/* Answer a request without a WebSocket upgrade from the web root. Returns what
 * session_web_pump() returns. */
static bool
session_web_request(struct session *s, const struct http_request *req)
{
    struct webroot_reply reply;
    char method[LOG_ESCAPE_MAX], path[LOG_ESCAPE_MAX];

    webroot_answer(s->web, req, bufferevent_get_output(s->client), &reply);
    /* The path only: query strings carry passwords and tokens (noVNC's ?password=). */
    log_info("web s=%" PRIu64 " client=%s method=%s path=%s status=%d bytes=%" PRIu64, s->id, s->peer,
             log_escape(method, sizeof method, req->method.ptr, req->method.len),
             log_escape(path, sizeof path, req->path.ptr, req->path.len), reply.status, reply.body_len);
    METRICS_ADD(web_requests, 1);
    METRICS_ADD(web_bytes, reply.body_len);
    evbuffer_drain(bufferevent_get_input(s->client), req->head_len); /* 'req' pointed into it */
    s->web_answered = true;
    s->web_body = reply.body;
    s->web_keep_alive = reply.keep_alive && !s->worker->draining;
    /* A pipelined request waits in the input until this response is queued. */
    bufferevent_disable(s->client, EV_READ);
    bufferevent_setwatermark(s->client, EV_WRITE, SESSION_WEB_QUEUE - SESSION_WEB_CHUNK, 0);
    bufferevent_set_max_single_write(s->client, SESSION_MAX_WRITE);
    session_set_state(s, SESSION_WEB);
    return session_web_pump(s);
}

/* Read one request head and act on it. Returns true when it was answered from the web
 * root and the connection is ready for the next request, which has begun to arrive. */
static bool
session_request(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client);
    size_t len = evbuffer_get_length(in);
    size_t want = len < s->max_request_bytes ? len : s->max_request_bytes;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
    struct http_request req;
    enum http_parse_result pr = http_upgrade_parse(buf, want, s->max_request_bytes, &req);
    enum http_upgrade_verdict verdict;
    char path[LOG_ESCAPE_MAX], host[LOG_ESCAPE_MAX], origin[LOG_ESCAPE_MAX];

    if (pr == HTTP_PARSE_NEED_MORE)
        return false;
    s->is_head = false; /* until this head says otherwise; a kept connection's last may have been */
    if (pr == HTTP_PARSE_TOO_BIG) {
        session_reject(s, 431, http_parse_result_str(pr));
        return false;
    }
    if (pr != HTTP_PARSE_OK) {
        session_reject(s, 400, http_parse_result_str(pr));
        return false;
    }
    s->is_head = req.method.len == 4 && memcmp(req.method.ptr, "HEAD", 4) == 0;
    if (s->web != NULL && !req.upgrade_websocket)
        return session_web_request(s, &req);
    verdict = http_upgrade_validate(&req);
    log_debug("session s=%" PRIu64 " request path=%s host=%s origin=%s verdict=%d", s->id,
              log_escape(path, sizeof path, req.path.ptr, req.path.len),
              log_escape(host, sizeof host, req.host.ptr, req.host.len),
              log_escape(origin, sizeof origin, req.origin.ptr, req.origin.len), (int)verdict);
    if (verdict != HTTP_UPGRADE_OK) {
        session_reject(s, http_upgrade_verdict_status(verdict), http_upgrade_verdict_str(verdict));
        return false;
    }
    s->route =
        route_lookup(s->routes, s->listener_index, req.host.ptr, req.host.len, req.path.ptr, req.path.len);
    if (s->route == NULL) {
        log_info("session s=%" PRIu64 " no route path=%s host=%s", s->id,
                 log_escape(path, sizeof path, req.path.ptr, req.path.len),
                 log_escape(host, sizeof host, req.host.ptr, req.host.len));
        session_reject(s, 404, "no route for this path");
        return false;
    }
    s->limits = &s->route->limits;
    if (s->tls != NULL || s->route->cert_name_count > 0) {
        char why[256];
        enum tls_verify_client mode = s->tls ? tls_server_verify_client(s->tls) : TLS_VERIFY_NONE;
        const char *deny =
            tls_client_cert_check(s->client_tls ? bufferevent_openssl_get_ssl(s->client) : NULL, mode,
                                  s->route->cert_names, s->route->cert_name_count, why, sizeof why);
        if (deny != NULL) {
            log_info("session s=%" PRIu64 " client certificate refused client=%s route=%s", s->id, s->peer,
                     s->route->name);
            session_reject(s, 403, deny);
            return false;
        }
    }
    if (!route_session_acquire(s->routes, s->route)) {
        session_refuse(s, 503, "route at its session limit", SESSION_BUSY_RETRY_S);
        return false;
    }
    s->route_counted = true;
    if (http_upgrade_accept_key(req.key.ptr, req.key.len, s->accept) == -1) {
        session_reject(s, 500, "cannot compute the accept key");
        return false;
    }
    /* binary and base64 are websockify's framings of raw bytes; a route in a text mode has
     * its own, so it never agrees to them (the client may still go on without one). */
    s->frame_mode = s->route->frame_mode;
    s->proto =
        s->frame_mode == ROUTE_FRAME_BINARY ? http_upgrade_choose_subprotocol(&req) : HTTP_SUBPROTOCOL_NONE;
    evbuffer_drain(in, req.head_len);
    /* Frames the client sends early wait in the input buffer until the 101 is out. */
    session_set_read(s->client, s->client_rd, false);
    session_set_state(s, SESSION_CONNECTING);
    session_connect_next(s);
    return false;
}

static void
session_handshake(struct session *s)
{
    while (session_request(s))
        ; /* pipelined requests, one at a time */
}

static void
session_client_read_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;

    if (s->client_phase != SIDE_ACTIVE) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    switch (s->state) {
    case SESSION_HANDSHAKE:
        session_handshake(s);
        return;
    case SESSION_CONNECTING:
    case SESSION_WEB:
        return;
    case SESSION_OPEN:
    case SESSION_CLOSING:
        session_client_frames(s); /* never frees the client: closes only start FLUSH */
        session_update_flow(s);
        return;
    }
}

static void
session_client_write_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;

    if (s->client_phase == SIDE_FLUSH) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !session_tls_unsent(bev, s->client_wr))
            session_client_shutdown(s);
        return;
    }
    if (s->state == SESSION_WEB) {
        if (session_web_pump(s))
            session_handshake(s);
        return;
    }
    session_update_flow(s);
}

static void
session_client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;

    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (s->client_tls && (what & BEV_EVENT_ERROR)) {
        char why[256];
        if (session_tls_error(bev, why, sizeof why) != NULL)
            log_info("session s=%" PRIu64 " tls error client=%s state=%s reason=\"%s\"", s->id, s->peer,
                     session_state_str(s->state), why);
    }
    if ((what & BEV_EVENT_WRITING) && s->client_phase == SIDE_ACTIVE &&
        (s->state == SESSION_OPEN || s->state == SESSION_CLOSING))
        session_read_remaining(bev, s->client_rd, s, session_client_frames);
    if (s->state == SESSION_OPEN || (s->state == SESSION_CLOSING && s->client_phase == SIDE_ACTIVE)) {
        session_note_close(s, WS_CLOSE_ABNORMAL, BY_CLIENT,
                           (what & BEV_EVENT_ERROR) ? "client connection reset" : "client closed TCP");
    } else if (s->state == SESSION_HANDSHAKE || s->state == SESSION_WEB) {
        log_debug("session s=%" PRIu64 " client left during %s", s->id,
                  s->state == SESSION_WEB ? "a web response" : "handshake");
    }
    bool relaying = s->backend != NULL && s->backend_phase == SIDE_ACTIVE && s->state != SESSION_CONNECTING;
    if (relaying)
        session_enter_closing(s);
    session_client_done(s);
    /* The client is gone; if the session lives on, deliver what it sent, then close. */
    if (relaying)
        session_backend_finish(s);
}

static void
session_backend_read_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;

    if (s->backend_phase != SIDE_ACTIVE) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    session_backend_data(s);
    session_update_flow(s);
}

static void
session_backend_write_cb(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;

    if (s->backend_phase == SIDE_FLUSH) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !session_tls_unsent(bev, s->backend_wr))
            session_backend_shutdown(s);
        return;
    }
    session_update_flow(s);
}

/* One readv(2) of at most 'max' bytes from 'fd' onto the end of 'buf', straight into its
 * space. The reservation may be larger (a chain's spare room plus a new chain); no more
 * than 'max' is read, so on the client side a chain rarely holds more than one large
 * frame's payload and evbuffer_remove_buffer() can move it whole instead of copying.
 * Returns what readv returned (-1 with errno; ENOMEM if there was no space). */
static ssize_t
session_readv_into(struct evbuffer *buf, int fd, size_t max)
{
    struct evbuffer_iovec vec[2];
    struct iovec iov[2];
    ssize_t r;
    int n = evbuffer_reserve_space(buf, (ev_ssize_t)max, vec, 2);

    if (n <= 0) {
        errno = ENOMEM;
        return -1;
    }
    size_t room = max;
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = vec[i].iov_base;
        iov[i].iov_len = vec[i].iov_len < room ? vec[i].iov_len : room;
        room -= iov[i].iov_len;
    }
    do
        r = readv(fd, iov, n);
    while (r == -1 && errno == EINTR);
    int err = errno;
    size_t left = r > 0 ? (size_t)r : 0;
    int used = 0;
    for (; used < n && left > 0; used++) {
        if (vec[used].iov_len > left)
            vec[used].iov_len = left;
        left -= vec[used].iov_len;
    }
    if (evbuffer_commit_space(buf, vec, used) == -1 && r > 0) {
        errno = ENOMEM;
        return -1;
    }
    errno = err;
    return r;
}

/* libevent 2.1 reads a socket at most 4 KiB at a time, after a FIONREAD ioctl each time
 * (EVBUFFER_MAX_READ in buffer.c), which caps a relay far below what loopback can carry.
 * Relaying plain sockets are therefore read here, in one readv of up to SESSION_MAX_READ
 * straight into the bufferevent's input buffer; writes, write callbacks and error events
 * stay with the bufferevent (TLS sides: see session_read_tls).
 * Returns the bytes read, 0 at EOF, -1 on an error, -2 when nothing was ready. */
/* session_read_socket() when the kernel reports nothing queued: one small read on the
 * stack, so an EOF or an error costs no buffer memory. Same returns. */
static ssize_t
session_read_socket_small(struct bufferevent *bev, evutil_socket_t fd)
{
    char small[512];
    ssize_t r;

    do
        r = read(fd, small, sizeof small);
    while (r == -1 && errno == EINTR);
    if (r > 0) {
        struct evbuffer *in = bufferevent_get_input(bev);
        int err = 0;
        evbuffer_unfreeze(in, 0);
        if (evbuffer_add(in, small, (size_t)r) == -1)
            err = ENOMEM;
        evbuffer_freeze(in, 0);
        if (err != 0) {
            errno = err;
            return -1;
        }
        return r;
    }
    if (r == 0)
        return 0;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? -2 : -1;
}

static ssize_t
session_read_socket(struct bufferevent *bev, evutil_socket_t fd, size_t max, int queued)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    /* Reserve only what the kernel holds: a reservation becomes a buffer chain, and a
     * 256 KiB chain kept for a 10-byte message (or for an EOF) would cost megabytes
     * when thousands of sessions wake at once, as on a broadcast or a drain. 'queued' is
     * what the caller already asked the kernel, or -1. */
    if (queued < 0 && ioctl(fd, FIONREAD, &queued) != 0)
        queued = -1;
    if (queued >= 0 && (size_t)queued < max) {
        if (queued == 0) /* EOF, an error, or data racing in: no chain for that */
            return session_read_socket_small(bev, fd);
        max = (size_t)queued;
    }
    /* A bufferevent freezes the end of its input so that only it adds there; do what its
     * own read does: unfreeze, read, freeze again. */
    evbuffer_unfreeze(in, 0);
    ssize_t r = session_readv_into(in, fd, max);
    int err = errno;
    evbuffer_freeze(in, 0);
    if (r > 0)
        return r;
    if (r == 0)
        return 0;
    errno = err;
    return (err == EAGAIN || err == EWOULDBLOCK) ? -2 : -1;
}

/* Point a side's read event at readability or (while SSL_read waits to write)
 * writability of its socket; whether it is added stays as it was. */
static void
session_read_event_set(struct event *rd, short what)
{
    if ((event_get_events(rd) & (EV_READ | EV_WRITE)) == what)
        return;
    bool added = event_pending(rd, EV_READ | EV_WRITE, NULL) != 0;
    event_del(rd);
    event_assign(rd, event_get_base(rd), event_get_fd(rd), what | EV_PERSIST, event_get_callback(rd),
                 event_get_callback_arg(rd));
    if (added)
        event_add(rd, NULL);
}

/* How a failed SSL_read ends a side, as bufferevent_openssl reports it: close_notify, or
 * a TCP close without one (allowed on every TLS side here), is EOF; anything else is an
 * error, whose reasons stay in OpenSSL's error queue for session_tls_error(). */
static short
session_tls_read_end(int ssl_err, int ret)
{
    if (ssl_err == SSL_ERROR_ZERO_RETURN)
        return BEV_EVENT_EOF;
    if (ssl_err == SSL_ERROR_SYSCALL && (ret == 0 || ret == -1) && ERR_peek_error() == 0)
        return BEV_EVENT_EOF;
    return BEV_EVENT_ERROR;
}

/* Relaying TLS sides are read here too. libevent 2.1's bufferevent_openssl asks SSL_read
 * for 4 KiB at a time and goes back to the event loop once a record is used up, and
 * OpenSSL reads each record with two read(2) calls (header, body). Here one read(2) of up
 * to SESSION_TLS_READ bytes is fed to OpenSSL (tls_feed_*), and SSL_read runs until it
 * has used all of it, straight into the bufferevent's input. The handshake, writes and
 * close_notify stay with the bufferevent. SSL_read may need to write (a TLS 1.3
 * KeyUpdate answer); if the socket is full, 'rd' waits for it to drain instead.
 * Returns the bytes read; *end is set to BEV_EVENT_EOF or BEV_EVENT_ERROR if the side
 * ended (after those bytes), else 0. */
static size_t
session_read_tls(struct session *s, struct bufferevent *bev, struct event *rd, short *end)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t got = 0, room = 0;
    int ret = 1, ssl_err = SSL_ERROR_NONE;
    uint8_t *space = tls_feed_space(ssl, SESSION_TLS_READ, &room);

    *end = 0;
    if (space == NULL) {
        *end = BEV_EVENT_ERROR; /* no memory */
        return 0;
    }
    if (room > 0) {
        ssize_t r;
        do
            r = read(bufferevent_getfd(bev), space, room);
        while (r == -1 && errno == EINTR);
        if (r > 0)
            tls_feed_commit(ssl, (size_t)r);
        else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            tls_feed_end(ssl, r == 0 ? 0 : errno); /* SSL_read reports it after the data */
    }
    evbuffer_unfreeze(in, 0);
    ERR_clear_error(); /* SSL_get_error() reads the queue: nothing older may be in it */
    while (ssl_err == SSL_ERROR_NONE) {
        struct evbuffer_iovec vec[2];
        int n = evbuffer_reserve_space(in, SESSION_TLS_CHUNK, vec, 2), used = 0;
        if (n <= 0) {
            ssl_err = SSL_ERROR_SSL; /* no memory for the input */
            break;
        }
        for (int i = 0; i < n && ssl_err == SSL_ERROR_NONE; i++) {
            size_t off = 0;
            while (off < vec[i].iov_len) {
                size_t want = vec[i].iov_len - off < INT_MAX ? vec[i].iov_len - off : INT_MAX;
                ret = SSL_read(ssl, (uint8_t *)vec[i].iov_base + off, (int)want);
                if (ret <= 0) {
                    ssl_err = SSL_get_error(ssl, ret);
                    break;
                }
                off += (size_t)ret;
            }
            vec[i].iov_len = off;
            got += off;
            if (off > 0)
                used = i + 1;
        }
        evbuffer_commit_space(in, vec, used);
    }
    evbuffer_freeze(in, 0);
    tls_feed_trim(ssl);
    switch (ssl_err) {
    case SSL_ERROR_WANT_READ: /* everything fed is used: wait for the socket */
        session_read_event_set(rd, EV_READ);
        break;
    case SSL_ERROR_WANT_WRITE:
        if (!(event_get_events(rd) & EV_WRITE))
            log_debug("session s=%" PRIu64 " tls read waits until the socket takes a write", s->id);
        session_read_event_set(rd, EV_WRITE);
        break;
    default:
        *end = session_tls_read_end(ssl_err, ret);
        break;
    }
    return got;
}

/* One readiness of a side's own read event: the bytes it brought into the side's input
 * (for the caller to relay), and in *end the event that ends the side (0 if none).
 * 'queued': see session_read_socket. */
static size_t
session_read_side(struct session *s, struct bufferevent *bev, struct event *rd, size_t max, int queued,
                  short *end)
{
    if (bufferevent_openssl_get_ssl(bev) != NULL)
        return session_read_tls(s, bev, rd, end);
    ssize_t r = session_read_socket(bev, bufferevent_getfd(bev), max, queued);
    *end = r == 0 ? BEV_EVENT_EOF : r == -1 ? BEV_EVENT_ERROR : 0;
    return r > 0 ? (size_t)r : 0;
}

/* Neither read callback frees its side, so the end (if any) is reported after the data. */
static void
session_client_sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    short end;

    (void)fd;
    (void)what;
    if (session_read_side(s, s->client, s->client_rd, SESSION_MAX_READ, -1, &end) > 0)
        session_client_read_cb(s->client, s);
    if (end != 0)
        session_client_event_cb(s->client, BEV_EVENT_READING | end, s);
}

/* ---- splice: backend bytes to the client without a copy ---- */

/* Read 'n' bytes that wait in pipe 'fd' onto the end of 'out'. -1: no memory, or the pipe
 * failed; some of the bytes may still be in it. */
static int
session_pipe_to_buffer(int fd, struct evbuffer *out, size_t n)
{
    while (n > 0) {
        ssize_t r = session_readv_into(out, fd, n);
        if (r <= 0)
            return -1;
        n -= (size_t)r;
    }
    return 0;
}

/* About how much the client socket takes now without a short write: its send buffer less
 * what waits in it, with a margin for the kernel's accounting per packet. 0 if unknown. */
static size_t
session_send_room(evutil_socket_t fd)
{
    int sndbuf = 0, outq = 0;
    socklen_t len = sizeof sndbuf;

    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0 || ioctl(fd, SIOCOUTQ, &outq) != 0 ||
        sndbuf <= outq)
        return 0;
    return (size_t)(sndbuf - outq) / 4 * 3;
}

/* Relay what the backend sent as one binary frame without copying it: splice(2) moves it
 * from the backend socket into the worker's pipe, the frame header goes to the client
 * with MSG_MORE, and splice(2) moves the payload on from the pipe to the client socket.
 * What the client socket does not take now (header or payload) is read back from the
 * pipe onto the client's queue, so the bufferevent sends it in order and the pipe is
 * empty for the next session. 'queued': what FIONREAD reported on the backend socket.
 * Returns the bytes relayed; 0: nothing was taken (read the normal way instead); -1: the
 * frame could not be completed (no memory), and the stream to the client is broken. */
static ssize_t
session_splice_down(struct session *s, size_t queued)
{
    struct worker *w = s->worker;
    const int *pipe_fds = worker_splice_pipe(w);
    uint8_t hdr[WS_MAX_SERVER_HEADER_LEN];

    if (pipe_fds == NULL)
        return 0;
    /* One frame takes what waits, up to the pipe's size; more than buffer_bytes only as
     * far as the client socket has room, so what it cannot take at once (and is queued
     * in memory) stays within buffer_bytes as for a copied read. */
    evutil_socket_t cfd = bufferevent_getfd(s->client);
    size_t want = queued, cap = s->limits->buffer_bytes;
    if (want > cap) {
        size_t room = session_send_room(cfd);
        cap = room > cap ? room : cap;
    }
    if (want > cap)
        want = cap;
    if (want > w->splice_pipe_bytes)
        want = w->splice_pipe_bytes;
    ssize_t got;
    do
        got = splice(bufferevent_getfd(s->backend), NULL, pipe_fds[1], NULL, want,
                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    while (got == -1 && errno == EINTR);
    if (got <= 0) {
        if (got == -1 && errno == EINVAL)
            s->no_splice = true; /* a socket type splice(2) cannot read */
        return 0;                /* the normal read sees the EOF or error */
    }
    size_t m = (size_t)got, done = 0;
    size_t hlen = ws_frame_encode_header(hdr, true, WS_OP_BINARY, m);
    ssize_t sent;
    do
        sent = send(cfd, hdr, hlen, MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
    while (sent == -1 && errno == EINTR);
    if (sent == (ssize_t)hlen) {
        while (done < m) {
            ssize_t k = splice(pipe_fds[0], NULL, cfd, NULL, m - done, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (k > 0)
                done += (size_t)k;
            else if (k == 0 || errno != EINTR)
                break; /* full, or failed: the bufferevent's write reports an error */
        }
    }
    if (done < m) {
        struct evbuffer *out = bufferevent_get_output(s->client);
        size_t hsent = sent > 0 ? (size_t)sent : 0;
        if ((hsent < hlen && evbuffer_add(out, hdr + hsent, hlen - hsent) == -1) ||
            session_pipe_to_buffer(pipe_fds[0], out, m - done) == -1) {
            worker_splice_pipe_reset(w);
            return -1;
        }
    }
    s->bytes_down += m;
    s->bytes_spliced += done;
    s->last_data_ms = session_now_ms();
    return got;
}

static void
session_backend_sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    short end;
    int queued = -1;

    (void)what;
    if (session_splice_ready(s)) {
        if (ioctl(fd, FIONREAD, &queued) != 0)
            queued = -1;
        else if ((size_t)queued >= s->limits->splice_min_bytes) { /* splice_min_bytes > 0 here */
            ssize_t r = session_splice_down(s, (size_t)queued);
            if (r != 0) {
                s->down_bulk = r > 0;
                if (r == -1)
                    session_fail(s, WS_CLOSE_INTERNAL_ERROR, "out of memory");
                session_update_flow(s);
                return;
            }
            queued = -1; /* nothing was taken: ask again */
        }
    }
    size_t got = session_read_side(s, s->backend, s->backend_rd, SESSION_MAX_READ_BACKEND, queued, &end);
    s->down_bulk = s->limits->splice_min_bytes != 0 && got >= s->limits->splice_min_bytes;
    if (got > 0)
        session_backend_read_cb(s->backend, s);
    if (end != 0)
        session_backend_event_cb(s->backend, BEV_EVENT_READING | end, s);
}

/* The socket of a TLS side took (part of) the rest of its write batch: go on with the
 * shutdown that waited for it. */
static void
session_client_wr_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;

    (void)what;
    if (session_tls_unsent(s->client, s->client_wr))
        return;
    if (s->client_phase == SIDE_FLUSH && evbuffer_get_length(bufferevent_get_output(s->client)) == 0)
        session_client_shutdown(s);
    else if (s->client_phase == SIDE_LINGER)
        shutdown(fd, SHUT_WR);
}

static void
session_backend_wr_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;

    (void)fd;
    (void)what;
    if (session_tls_unsent(s->backend, s->backend_wr))
        return;
    if (s->backend_phase == SIDE_FLUSH && evbuffer_get_length(bufferevent_get_output(s->backend)) == 0)
        session_backend_shutdown(s);
    else if (s->backend_phase == SIDE_LINGER)
        session_backend_fin(s);
}

/* A persistent read event for a side's socket, not yet added; the bufferevent stops
 * reading that socket. A TLS side also gets tls_relay_start()'s BIOs, the event that waits
 * to send the rest of a write batch (*wr, with 'wr_cb') and the flush at the end of each
 * run of writes (session_output_cb). NULL on ENOMEM, or for a TLS 1.2 side that may
 * renegotiate: the bufferevent then keeps reading, and writes without a batch. */
static struct event *
session_read_event_new(struct session *s, struct bufferevent *bev, event_callback_fn cb,
                       event_callback_fn wr_cb, struct event **wr)
{
    struct event_base *base = s->worker->base;
    evutil_socket_t fd = bufferevent_getfd(bev);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct event *ev = event_new(base, fd, EV_READ | EV_PERSIST, cb, s);

    if (ev == NULL)
        return NULL;
    if (ssl != NULL) {
        struct evbuffer_cb_entry *flush = evbuffer_add_cb(bufferevent_get_output(bev), session_output_cb, s);
        *wr = flush != NULL ? event_new(base, fd, EV_WRITE, wr_cb, s) : NULL;
        if (*wr == NULL || tls_relay_start(ssl) == -1) {
            if (flush != NULL)
                evbuffer_remove_cb_entry(bufferevent_get_output(bev), flush);
            if (*wr != NULL)
                event_free(*wr);
            *wr = NULL;
            event_free(ev);
            return NULL;
        }
    }
    bufferevent_disable(bev, EV_READ);
    return ev;
}

/* A side failed while writing (the peer reset): what it sent before may still wait
 * unread in the socket, and the relay promises it to the other side. Read it out (at
 * most the kernel's receive buffer) and hand it to 'relay' before the side is ended. */
static void
session_read_remaining(struct bufferevent *bev, struct event *rd, struct session *s,
                       void (*relay)(struct session *s))
{
    if (rd == NULL || bufferevent_openssl_get_ssl(bev) != NULL)
        return; /* TLS: after a failed SSL_write no more I/O is allowed on the connection */
    for (int i = 0; i < 1024; i++) {
        if (session_read_socket(bev, bufferevent_getfd(bev), SESSION_MAX_READ_BACKEND, -1) <= 0)
            break;
        relay(s);
    }
}

static void
session_backend_connected(struct session *s)
{
    char reply[HTTP_REPLY_MAX];
    char target[ADDR_STR_MAX];
    size_t lw = s->limits->buffer_bytes / 2;
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(s->backend);

    if (s->route->target.kind == ADDR_INET)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (s->addrs != NULL) {
        evutil_freeaddrinfo(s->addrs);
        s->addrs = s->next_addr = NULL;
    }
    /* Backpressure: each write callback fires when a queue drains to half the mark. */
    bufferevent_setwatermark(s->client, EV_WRITE, lw, 0);
    bufferevent_setwatermark(s->backend, EV_WRITE, lw, 0);
    bufferevent_set_max_single_read(s->client, SESSION_MAX_READ);
    bufferevent_set_max_single_read(s->backend, SESSION_MAX_READ);
    bufferevent_set_max_single_write(s->client, SESSION_MAX_WRITE);
    bufferevent_set_max_single_write(s->backend, SESSION_MAX_WRITE);

    bufferevent_write(s->client, reply, http_upgrade_format_101(reply, s->accept, s->proto));
    s->opened = true;
    METRICS_ADD(upgrades_total, 1);
    METRICS_ADD(sessions_open, 1);
    s->opened_ms = s->last_data_ms = s->last_client_ms = session_now_ms();
    session_set_state(s, SESSION_OPEN);
    char tls[160] = "";
    if (s->client_tls) {
        char desc[140];
        snprintf(tls, sizeof tls, " tls=%s",
                 tls_describe(bufferevent_openssl_get_ssl(s->client), desc, sizeof desc));
    }
    log_info("session s=%" PRIu64 " open client=%s route=%s target=%s proto=%s%s worker=%u", s->id, s->peer,
             s->route->name, addr_format(&s->route->target, target, sizeof target),
             http_subprotocol_str(s->proto), tls, s->worker->index);
    bufferevent_enable(s->backend, EV_WRITE);
    s->client_rd = session_read_event_new(s, s->client, session_client_sock_read_cb, session_client_wr_cb,
                                          &s->client_wr);
    s->backend_rd = session_read_event_new(s, s->backend, session_backend_sock_read_cb, session_backend_wr_cb,
                                           &s->backend_wr);
    session_set_read(s->backend, s->backend_rd, true);
    session_client_frames(s); /* anything the client sent before the 101 */
    session_update_flow(s);
}

static void
session_connect_failed(struct session *s)
{
    char target[ADDR_STR_MAX];
    bool timeout = s->connect_timed_out;
    const char *why = timeout                 ? "timeout"
                      : s->no_descriptors     ? "out_of_descriptors"
                      : s->backend_tls_failed ? "tls_handshake_failed"
                                              : "refused_or_unreachable";

    METRICS_ADD(backend_connect_failures, 1);
    log_warn("session s=%" PRIu64 " backend connect failed route=%s target=%s reason=%s", s->id,
             s->route->name, addr_format(&s->route->target, target, sizeof target), why);
    if (s->no_descriptors && !timeout)
        session_refuse(s, 503, "gateway out of file descriptors: try again later", SESSION_BUSY_RETRY_S);
    else if (timeout)
        session_reject(s, 504, "backend did not answer in time");
    else
        session_reject(s, 502,
                       s->backend_tls_failed ? "backend TLS handshake failed"
                                             : "backend refused or unreachable");
}

/* TCP to the backend is up: continue over TLS on the same socket. Returns -1 (the
 * backend bufferevent freed) if that cannot start. */
static int
session_backend_start_tls(struct session *s)
{
    evutil_socket_t fd = bufferevent_getfd(s->backend);
    SSL *ssl;

    bufferevent_setfd(s->backend, -1); /* keep the socket when the plain bufferevent goes */
    bufferevent_free(s->backend);
    s->backend = NULL;
    ssl = tls_client_ssl_new(s->route->target_tls);
    if (ssl != NULL)
        s->backend = bufferevent_openssl_socket_new(s->worker->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (s->backend == NULL) {
        if (ssl != NULL)
            SSL_free(ssl);
        evutil_closesocket(fd);
        return -1;
    }
    s->backend_tls = true;
    bufferevent_openssl_set_allow_dirty_shutdown(s->backend, 1);
    bufferevent_setcb(s->backend, session_backend_read_cb, session_backend_write_cb, session_backend_event_cb,
                      s);
    bufferevent_enable(s->backend, EV_READ | EV_WRITE);
    return 0;
}

static void
session_backend_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;

    if (s->state == SESSION_CONNECTING) {
        if ((what & BEV_EVENT_CONNECTED) && s->route->target_tls != NULL && !s->backend_tls) {
            if (session_backend_start_tls(s) == 0)
                return; /* the TLS handshake's CONNECTED event comes next */
        } else if (what & BEV_EVENT_CONNECTED) {
            session_backend_connected(s);
            return;
        } else if (s->backend_tls) {
            char why[256];
            char target[ADDR_STR_MAX];
            s->backend_tls_failed = true;
            log_warn("session s=%" PRIu64 " backend tls handshake failed route=%s target=%s reason=\"%s\"",
                     s->id, s->route->name, addr_format(&s->route->target, target, sizeof target),
                     session_tls_error(bev, why, sizeof why) ? why : "connection closed");
        }
        /* This address failed: try the next one. */
        if (s->backend != NULL)
            bufferevent_free(s->backend);
        s->backend = NULL;
        session_connect_next(s);
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (s->backend_tls && (what & BEV_EVENT_ERROR)) {
        char why[256];
        if (session_tls_error(bev, why, sizeof why) != NULL)
            log_info("session s=%" PRIu64 " backend tls error route=%s reason=\"%s\"", s->id, s->route->name,
                     why);
    }
    if (s->backend_phase != SIDE_ACTIVE) {
        if ((what & BEV_EVENT_EOF) && s->backend_phase == SIDE_FLUSH) {
            s->backend_eof = true; /* half-closed: keep writing what is queued */
            return;
        }
        session_backend_done(s);
        return;
    }
    /* The backend ended while relaying: every byte it sent goes out before the close. */
    if (what & BEV_EVENT_WRITING)
        session_read_remaining(bev, s->backend_rd, s, session_backend_data);
    if (what & BEV_EVENT_EOF)
        s->backend_eof = true; /* before the last data: if it fails the session, no EOF is awaited */
    session_backend_relay(s, true);
    if (s->backend_phase != SIDE_ACTIVE)
        return; /* the last bytes failed the session (text modes): it is closing already */
    if (what & BEV_EVENT_EOF) {
        session_note_close(s, WS_CLOSE_NORMAL, BY_BACKEND, "backend closed");
        session_send_close(s, WS_CLOSE_NORMAL, "backend closed");
        session_enter_closing(s);
        if (s->client == NULL)
            session_backend_done(s);
        else
            session_update_flow(s); /* the client may still send until it answers the close */
        return;
    }
    session_note_close(s, WS_CLOSE_BAD_GATEWAY, BY_BACKEND, "backend connection reset");
    session_send_close(s, WS_CLOSE_BAD_GATEWAY, "backend connection reset");
    session_enter_closing(s);
    session_backend_done(s);
}

static void
session_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct session *s = arg;

    s->dns = NULL;
    if (result != 0 || res == NULL) {
        char target[ADDR_STR_MAX];
        METRICS_ADD(backend_connect_failures, 1);
        log_warn("session s=%" PRIu64 " backend name lookup failed route=%s target=%s reason=\"%s\"", s->id,
                 s->route->name, addr_format(&s->route->target, target, sizeof target),
                 result != 0 ? evutil_gai_strerror(result) : "no addresses");
        if (res != NULL)
            evutil_freeaddrinfo(res);
        session_reject(s, 502, "backend name did not resolve");
        return;
    }
    s->addrs = s->next_addr = res;
    session_connect_next(s);
}

static int
session_resolve(struct session *s)
{
    struct worker *w = s->worker;
    const struct config *cfg = w->cfg;

    if (w->resolver != NULL && !resolver_matches(w->resolver, cfg->resolver, cfg->resolv_conf)) {
        resolver_retire(w->resolver); /* a reload changed it; lookups in flight finish there */
        w->resolver = NULL;
    }
    if (w->resolver == NULL) {
        w->resolver = resolver_new(w->base, cfg->resolver, cfg->resolv_conf);
        if (w->resolver == NULL)
            return -1;
    }
    s->dns = resolver_lookup(w->resolver, s->route->target.host, s->route->target.port, session_dns_cb, s);
    return s->dns == NULL ? -1 : 0;
}

/* Start connecting to one address. Returns -1 if that failed at once. */
static int
session_connect_try(struct session *s, const struct sockaddr *sa, socklen_t sa_len)
{
    evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd == -1) {
        log_warn("session s=%" PRIu64 " backend socket: %s", s->id, strerror(errno));
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            s->no_descriptors = true; /* our shortage, not the backend's fault: 503 */
        return -1;
    }
    s->backend_tls = false;
    s->backend = bufferevent_socket_new(s->worker->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (s->backend == NULL) {
        close(fd);
        return -1;
    }
    bufferevent_setcb(s->backend, session_backend_read_cb, session_backend_write_cb, session_backend_event_cb,
                      s);
    if (bufferevent_socket_connect(s->backend, sa, (int)sa_len) == -1) {
        bufferevent_free(s->backend); /* also drops any error callback it scheduled */
        s->backend = NULL;
        return -1;
    }
    s->state_since_ms = session_now_ms();
    session_arm_timer(s);
    return 0;
}

/* Try the next backend address, or give up with 502/504. */
static void
session_connect_next(struct session *s)
{
    const struct addr *t = &s->route->target;

    for (;;) {
        if (t->is_numeric) {
            if (s->tried_literal)
                break;
            s->tried_literal = true;
            if (session_connect_try(s, (const struct sockaddr *)&t->sa, t->sa_len) == 0)
                return;
            continue;
        }
        if (s->addrs == NULL) {
            if (s->dns == NULL && session_resolve(s) == -1)
                break;
            return; /* session_dns_cb continues */
        }
        if (s->next_addr == NULL)
            break;
        struct evutil_addrinfo *ai = s->next_addr;
        s->next_addr = ai->ai_next;
        if (session_connect_try(s, ai->ai_addr, (socklen_t)ai->ai_addrlen) == 0)
            return;
    }
    session_connect_failed(s);
}

static void
session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    uint64_t now = session_now_ms();
    const struct limits *lim = s->limits;

    (void)fd;
    (void)what;
    switch (s->state) {
    case SESSION_HANDSHAKE:
        if (s->client_tls && !SSL_is_init_finished(bufferevent_openssl_get_ssl(s->client))) {
            /* No 408 can be sent before TLS is up: drop the connection now. */
            log_info("session s=%" PRIu64 " tls handshake not finished in time client=%s", s->id, s->peer);
            session_free(s);
            return;
        }
        if (session_web_idle(s)) {
            log_debug("session s=%" PRIu64 " idle keep-alive connection closed", s->id);
            session_web_close(s);
            return;
        }
        session_reject(s, 408, "request head not received in time");
        return;
    case SESSION_WEB:
        if (now < s->web_progress_ms + s->handshake_timeout_ms)
            break;
        log_info("web s=%" PRIu64 " client=%s stopped reading the response: closing", s->id, s->peer);
        session_free(s);
        return;
    case SESSION_CONNECTING:
        if (now < s->state_since_ms + lim->connect_timeout_ms)
            break;
        s->connect_timed_out = true;
        if (s->dns != NULL) { /* the name lookup itself took too long */
            session_connect_failed(s);
            return;
        }
        bufferevent_free(s->backend);
        s->backend = NULL;
        session_connect_next(s);
        return;
    case SESSION_OPEN:
        if (lim->max_session_ms && now >= s->opened_ms + lim->max_session_ms) {
            session_close_gracefully(s, WS_CLOSE_POLICY, "session time limit");
            return;
        }
        if (lim->idle_timeout_ms && now >= s->last_data_ms + lim->idle_timeout_ms) {
            session_close_gracefully(s, WS_CLOSE_GOING_AWAY, "idle timeout");
            return;
        }
        if (lim->ping_interval_ms && s->awaiting_pong && now >= s->ping_sent_ms + lim->ping_timeout_ms) {
            if (evbuffer_get_length(bufferevent_get_output(s->client)) == 0) {
                session_note_close(s, WS_CLOSE_ABNORMAL, BY_GATEWAY, "ping timeout");
                session_fail(s, WS_CLOSE_GOING_AWAY, "ping timeout");
                return;
            }
            s->ping_sent_ms = now; /* the ping is still queued behind data: wait for it to go out */
        } else if (lim->ping_interval_ms && !s->awaiting_pong &&
                   now >= s->last_client_ms + lim->ping_interval_ms) {
            session_send_control(s, WS_OP_PING, NULL, 0);
            s->awaiting_pong = true;
            s->ping_sent_ms = now;
        }
        break;
    case SESSION_CLOSING: {
        /* Time is up, unless a side is still flushing and made progress since the last look. */
        size_t backlog = 0;
        if (s->client != NULL && s->client_phase == SIDE_FLUSH)
            backlog += evbuffer_get_length(bufferevent_get_output(s->client));
        if (s->backend != NULL && s->backend_phase == SIDE_FLUSH)
            backlog += evbuffer_get_length(bufferevent_get_output(s->backend));
        if (backlog > 0 && backlog < s->closing_backlog) {
            s->closing_backlog = backlog;
            s->state_since_ms = now;
            break;
        }
        log_debug("session s=%" PRIu64 " close timeout", s->id);
        session_note_close(s, WS_CLOSE_ABNORMAL, BY_GATEWAY, "close timeout");
        session_free(s);
        return;
    }
    }
    session_arm_timer(s);
}

/* ---- public ---- */

/* Give the session its client bufferevent (TLS when 'ssl' is set) and start reading the
 * upgrade request, unless a limit or the listener's rules refuse it. */
static void
session_client_open(struct session *s, evutil_socket_t fd, SSL *ssl)
{
    struct worker *w = s->worker;
    int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;

    s->probe_fd = -1; /* from here the bufferevent owns the socket */
    if (ssl != NULL) {
        s->client = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, opts);
        if (s->client == NULL)
            SSL_free(ssl);
        else
            bufferevent_openssl_set_allow_dirty_shutdown(s->client, 1); /* browsers skip close_notify */
        s->client_tls = true;
    } else {
        s->client = bufferevent_socket_new(w->base, fd, opts);
    }
    if (s->client == NULL) {
        log_error("session s=%" PRIu64 " cannot set up the connection", s->id);
        evutil_closesocket(fd);
        session_free(s);
        return;
    }
    bufferevent_setcb(s->client, session_client_read_cb, session_client_write_cb, session_client_event_cb, s);
    if (w->draining) {
        session_reject(s, 503, "server shutting down");
        return;
    }
    if (s->refuse_status != 0) {
        session_refuse(s, s->refuse_status, s->refuse_reason, s->refuse_retry_s);
        return;
    }
    size_t max_sessions = atomic_load(&w->group->max_sessions);
    if (max_sessions != 0 && atomic_load(&w->group->connections) > max_sessions) {
        session_refuse(s, 503, "gateway at its session limit", SESSION_BUSY_RETRY_S);
        return;
    }
    if (ssl == NULL && s->tls != NULL && tls_server_only(s->tls)) {
        log_info("session s=%" PRIu64 " plain request on a TLS-only listener client=%s", s->id, s->peer);
        session_reject(s, 400, "this port requires TLS: use wss://");
        return;
    }
    bufferevent_enable(s->client, EV_READ | EV_WRITE);
    session_arm_timer(s);
}

/* The first byte of a connection on a TLS listener arrived (or the peer left). */
static void
session_probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    uint8_t first;
    ssize_t n = recv(fd, &first, 1, MSG_PEEK);

    (void)what;
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(s->probe, NULL);
        return;
    }
    event_free(s->probe);
    s->probe = NULL;
    if (n != 1) {
        log_debug("session s=%" PRIu64 " client left before sending anything", s->id);
        session_free(s);
        return;
    }
    SSL *ssl = NULL;
    if (tls_sniff_first_byte(first) == TLS_SNIFF_TLS) {
        ssl = tls_server_ssl_new(s->tls);
        if (ssl == NULL) {
            session_free(s);
            return;
        }
    }
    session_client_open(s, fd, ssl);
}

/* Note a refusal decided at accept. */
static void
session_refuse_later(struct session *s, int status, const char *reason, unsigned retry_after_s)
{
    s->refuse_status = status;
    s->refuse_reason = reason;
    s->refuse_retry_s = retry_after_s;
}

/* Count a new connection against its listener's limits: pending handshakes, then the
 * client address group's session count and handshake bucket. A refused connection is
 * counted in neither. */
static void
session_admit(struct session *s, const struct sockaddr *peer, socklen_t peer_len)
{
    struct session_admission *adm = s->adm;
    const struct listener_limits *lim = &adm->limits;
    struct iplimit_key key;
    uint64_t retry_ms = 0;

    if (s->worker->draining)
        return; /* session_client_open() answers 503 */
    if (lim->max_pending_handshakes != 0 &&
        atomic_load(&adm->counts->pending) >= lim->max_pending_handshakes) {
        session_refuse_later(s, 503, "too many pending handshakes", SESSION_BUSY_RETRY_S);
        return;
    }
    if (adm->counts->clients != NULL &&
        (lim->max_sessions_per_ip != 0 || lim->handshake_rate_per_ip_milli != 0) &&
        iplimit_key_from_sockaddr(peer, peer_len, lim->per_ip_v6_prefix, &key)) {
        pthread_mutex_lock(&adm->counts->lock);
        enum iplimit_result r =
            iplimit_admit(adm->counts->clients, &key, session_now_ms(), &s->client_entry, &retry_ms);
        pthread_mutex_unlock(&adm->counts->lock);
        switch (r) {
        case IPLIMIT_OK:
            break;
        case IPLIMIT_TOO_MANY:
            session_refuse_later(s, 429, iplimit_result_str(r), SESSION_BUSY_RETRY_S);
            return;
        case IPLIMIT_RATE:
            session_refuse_later(s, 429, iplimit_result_str(r), (unsigned)((retry_ms + 999) / 1000));
            return;
        case IPLIMIT_NO_MEMORY:
            session_refuse_later(s, 503, "out of memory", SESSION_BUSY_RETRY_S);
            return;
        }
    }
    atomic_fetch_add(&adm->counts->pending, 1);
    s->pending = true;
}

void
session_start(struct worker *w, evutil_socket_t fd, const struct sockaddr *peer, socklen_t peer_len,
              struct session_admission *adm)
{
    struct session *s = calloc(1, sizeof *s);
    struct tls_server *tls = adm->tls;

    if (s == NULL) {
        log_error("session: out of memory, dropping a connection");
        evutil_closesocket(fd);
        return;
    }
    s->worker = w;
    s->adm = adm;
    s->id = atomic_fetch_add(&w->group->next_session_id, 1) + 1;
    s->listener_index = (uint8_t)adm->listener_index;
    s->max_request_bytes = adm->limits.max_request_bytes;
    s->handshake_timeout_ms = adm->limits.handshake_timeout_ms;
    s->started_ms = s->state_since_ms = s->head_since_ms = session_now_ms();
    s->routes = w->cfg->routes;
    route_table_ref(s->routes);
    s->limits = route_table_defaults(s->routes);
    s->probe_fd = fd;
    if (adm->web != NULL) {
        s->web = adm->web;
        webroot_ref(adm->web);
    }
    addr_format_sockaddr(peer, peer_len, s->peer, sizeof s->peer);
    event_assign(&s->timer, w->base, -1, 0, session_timer_cb, s);

    s->next = w->sessions;
    if (w->sessions != NULL)
        w->sessions->prev = s;
    w->sessions = s;
    w->session_count++;
    size_t connections = atomic_fetch_add(&w->group->connections, 1) + 1;
    METRICS_ADD(sessions_current, 1);
    METRICS_ADD(sessions_total, 1);
    log_debug("session s=%" PRIu64 " accept client=%s", s->id, s->peer);
    /* Sessions over max_sessions still hold a descriptor while their 503 goes out; past
     * accept_limit, new connections wait in the backlog instead of taking descriptors the
     * admitted sessions need for their backends. */
    size_t accept_limit = atomic_load(&w->group->accept_limit);
    if (accept_limit != 0 && connections >= accept_limit && !w->accept_paused) {
        log_warn("gateway at %zu connections: accepting paused until sessions end", connections);
        worker_pause_accepting(w);
    }

    session_admit(s, peer, peer_len);
    if (s->refuse_status != 0 && tls != NULL) {
        /* Answering would cost a TLS handshake, and waiting for the first byte to see
         * whether the client speaks TLS would hold the descriptor the limit protects. */
        log_info("session s=%" PRIu64 " reject client=%s status=%d reason=\"%s\" answer=close (TLS listener)",
                 s->id, s->peer, s->refuse_status, s->refuse_reason);
        METRICS_ADD(handshakes_rejected, 1);
        session_free(s);
        return;
    }
    if (tls == NULL) {
        session_client_open(s, fd, NULL);
        return;
    }
    /* TLS and plain share the port: wait for the first byte to tell them apart. */
    s->tls = tls;
    tls_server_ref(tls);
    s->probe = event_new(w->base, fd, EV_READ, session_probe_cb, s);
    if (s->probe == NULL) {
        session_free(s);
        return;
    }
    event_add(s->probe, NULL);
    session_arm_timer(s); /* the handshake deadline covers a client that sends nothing */
}

void
session_drain_all(struct worker *w)
{
    struct session *s = w->sessions;

    while (s != NULL) {
        struct session *next = s->next; /* 's' may be freed below */
        switch (s->state) {
        case SESSION_HANDSHAKE:
            if (session_web_idle(s)) {
                session_web_close(s);
                break;
            }
            session_reject(s, 503, "server shutting down");
            break;
        case SESSION_CONNECTING:
            session_reject(s, 503, "server shutting down");
            break;
        case SESSION_WEB:
            s->web_keep_alive = false; /* this response goes out whole, then the connection ends */
            break;
        case SESSION_OPEN:
            session_close_gracefully(s, WS_CLOSE_GOING_AWAY, "server shutting down");
            break;
        case SESSION_CLOSING:
            break;
        }
        s = next;
    }
}

void
session_free_all(struct worker *w)
{
    while (w->sessions != NULL)
        session_free(w->sessions);
}
