/* resolver.c - see resolver.h. Both kinds hand finished queries to the loop thread the same
 * way: a list under 'lock' and an eventfd that wakes the loop, so a callback never runs
 * inside libevent's resolver or inside resolver_lookup(). */
#include "resolver.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "log.h"

#define RESOLVER_THREADS_MAX 4 /* lookups blocked on a slow name server at once */

struct resolver_query {
    struct resolver *r;
    resolver_cb cb;
    void *arg;
    atomic_bool is_cancelled;                       /* set on the loop thread, read by helpers */
    struct evdns_getaddrinfo_request *req;          /* evdns: while libevent holds the query */
    bool is_answered;                               /* evdns: the callback ran (loop thread) */
    struct resolver_query *asked_prev, *asked_next; /* evdns: in r->asked while req is live */
    struct resolver_query *next;                    /* in todo or done */
    int err;
    struct evutil_addrinfo *res;
    char port[8];
    char host[]; /* NUL-terminated */
};

struct resolver {
    enum resolver_kind kind;
    char *resolv_conf;
    struct event_base *base; /* borrowed */
    struct evdns_base *dns;  /* owned, RESOLVER_EVDNS */
    int done_fd;             /* eventfd: helpers (and evdns answers) ring it */
    struct event *done_ev;
    size_t pending;               /* loop thread: queries whose callback is still due */
    struct resolver_query *asked; /* loop thread: evdns queries libevent still holds */
    bool is_retired;              /* loop thread: free when pending reaches 0 */

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    struct resolver_query *todo, *todo_tail; /* waiting for a helper thread */
    struct resolver_query *done;             /* answered, for the loop thread */
    struct resolver_thread {
        struct resolver *r;
        pthread_t tid;
        bool is_running, is_busy; /* busy: inside getaddrinfo() */
        bool is_joinable;         /* created and neither joined nor detached yet */
    } thread[RESOLVER_THREADS_MAX];
    pthread_attr_t attr;
    unsigned threads, idle;
    bool is_stopping; /* resolver_free ran: helpers drop their results and exit */
    bool is_released; /* the loop thread is done with 'r': the last helper out frees it */
};

static void
resolver_query_free(struct resolver_query *q)
{
    if (q->res != NULL)
        evutil_freeaddrinfo(q->res);
    free(q);
}

static void
resolver_query_list_free(struct resolver_query *q)
{
    while (q != NULL) {
        struct resolver_query *next = q->next;
        resolver_query_free(q);
        q = next;
    }
}

/* The last owner out: nothing may use 'r' afterwards. */
static void
resolver_destroy(struct resolver *r)
{
    close(r->done_fd);
    pthread_attr_destroy(&r->attr);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
    free(r->resolv_conf);
    free(r);
}

/* Under r->lock: hand an answered query to the loop thread. */
static void
resolver_push_done_locked(struct resolver *r, struct resolver_query *q)
{
    static const uint64_t one = 1;

    q->next = r->done;
    r->done = q;
    if (write(r->done_fd, &one, sizeof one) == -1 && errno != EAGAIN)
        log_error("resolver: cannot wake the event loop: %s", strerror(errno));
}

static void *
resolver_thread_main(void *arg)
{
    struct resolver_thread *t = arg;
    struct resolver *r = t->r;
    bool is_last;

    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->is_stopping && r->todo == NULL) {
            r->idle++;
            pthread_cond_wait(&r->wake, &r->lock);
            r->idle--;
        }
        if (r->is_stopping)
            break;
        struct resolver_query *q = r->todo;
        r->todo = q->next;
        if (r->todo == NULL)
            r->todo_tail = NULL;
        t->is_busy = true;
        pthread_mutex_unlock(&r->lock);

        if (atomic_load(&q->is_cancelled)) {
            q->err = EVUTIL_EAI_CANCEL;
        } else {
            struct addrinfo hints = {0};
            hints.ai_family = AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_protocol = IPPROTO_TCP;
            hints.ai_flags = AI_NUMERICSERV;
            q->err = getaddrinfo(q->host, q->port, &hints, &q->res);
            if (q->err == EAI_SYSTEM)
                q->err = EAI_FAIL; /* errno would not survive the trip to the loop thread */
        }

        pthread_mutex_lock(&r->lock);
        t->is_busy = false;
        if (r->is_stopping) {
            resolver_query_free(q);
            break;
        }
        resolver_push_done_locked(r, q);
    }
    t->is_running = false;
    r->threads--;
    is_last = r->threads == 0 && r->is_released;
    pthread_mutex_unlock(&r->lock);
    if (is_last) /* the loop thread left 'r' to the last helper out */
        resolver_destroy(r);
    return NULL;
}

/* Under r->lock: start one more helper thread. */
static int
resolver_spawn_locked(struct resolver *r)
{
    struct resolver_thread *t = NULL;
    sigset_t all, old;
    int rv;

    for (size_t i = 0; i < RESOLVER_THREADS_MAX && t == NULL; i++)
        if (!r->thread[i].is_running && !r->thread[i].is_joinable)
            t = &r->thread[i];
    if (t == NULL)
        return -1;
    t->r = r;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the loop thread */
    rv = pthread_create(&t->tid, &r->attr, resolver_thread_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        log_warn("resolver: cannot start a lookup thread: %s", strerror(rv));
        return -1;
    }
    t->is_running = t->is_joinable = true;
    r->threads++;
    return 0;
}

static void resolver_finish(struct resolver *r);

static void
resolver_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct resolver *r = arg;
    struct resolver_query *q;
    uint64_t n;

    (void)what;
    if (r->is_stopping) { /* the last cancelled evdns lookup has answered */
        resolver_finish(r);
        return;
    }
    if (read(fd, &n, sizeof n) == -1 && errno != EAGAIN)
        log_error("resolver: wake-up read: %s", strerror(errno));
    pthread_mutex_lock(&r->lock);
    q = r->done;
    r->done = NULL;
    pthread_mutex_unlock(&r->lock);
    while (q != NULL) {
        struct resolver_query *next = q->next;
        r->pending--;
        if (!atomic_load(&q->is_cancelled)) {
            struct evutil_addrinfo *res = q->res;
            q->res = NULL;
            q->cb(q->err, res, q->arg);
        }
        resolver_query_free(q);
        q = next;
    }
    if (r->is_retired && r->pending == 0)
        (void)resolver_free(r); /* nothing is asked of evdns any more: it finishes now */
}

struct resolver *
resolver_new(struct event_base *base, enum resolver_kind kind, const char *resolv_conf)
{
    struct resolver *r = calloc(1, sizeof *r);

    if (r == NULL)
        return NULL;
    r->kind = kind;
    r->base = base;
    r->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->resolv_conf = resolv_conf != NULL ? strdup(resolv_conf) : NULL;
    if (r->done_fd == -1 || (resolv_conf != NULL && r->resolv_conf == NULL)) {
        log_error("resolver: %s", strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    pthread_attr_init(&r->attr);
    pthread_attr_setstacksize(&r->attr, 256 * 1024); /* getaddrinfo needs little; the default is 8 MiB */
    r->done_ev = event_new(base, r->done_fd, EV_READ | EV_PERSIST, resolver_done_cb, r);
    if (r->done_ev == NULL || event_add(r->done_ev, NULL) == -1)
        goto fail_locked;
    if (kind == RESOLVER_EVDNS) {
        r->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (r->dns == NULL)
            goto fail_locked;
        const char *file = resolv_conf != NULL ? resolv_conf : "/etc/resolv.conf";
        int rv = evdns_base_resolv_conf_parse(r->dns, DNS_OPTIONS_ALL, file);
        if (rv != 0)
            log_warn("resolver: cannot use %s (error %d); trying name servers on 127.0.0.1", file, rv);
    }
    return r;

fail_locked:
    log_error("cannot start the %s resolver", kind == RESOLVER_EVDNS ? "evdns" : "system");
    if (r->done_ev != NULL)
        event_free(r->done_ev);
    resolver_destroy(r);
    return NULL;
fail:
    if (r->done_fd != -1)
        close(r->done_fd);
    free(r->resolv_conf);
    free(r);
    return NULL;
}

/* libevent's answer; runs inside evdns (maybe inside evdns_getaddrinfo() itself). */
static void
resolver_evdns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct resolver_query *q = arg;
    struct resolver *r = q->r;

    q->req = NULL;
    q->err = result;
    q->res = res;
    q->is_answered = true;
    if (q->asked_prev != NULL)
        q->asked_prev->asked_next = q->asked_next;
    else if (r->asked == q)
        r->asked = q->asked_next;
    if (q->asked_next != NULL)
        q->asked_next->asked_prev = q->asked_prev;
    q->asked_prev = q->asked_next = NULL;
    if (r->is_stopping) { /* resolver_free() cancelled it */
        resolver_query_free(q);
        if (r->asked == NULL)
            event_active(r->done_ev, EV_READ, 0); /* finish outside libevent's resolver */
        return;
    }
    pthread_mutex_lock(&r->lock);
    resolver_push_done_locked(r, q);
    pthread_mutex_unlock(&r->lock);
}

struct resolver_query *
resolver_lookup(struct resolver *r, const char *host, uint16_t port, resolver_cb cb, void *arg)
{
    size_t host_len = strlen(host);
    struct resolver_query *q;

    if (r->is_retired)
        return NULL;
    q = calloc(1, sizeof *q + host_len + 1);
    if (q == NULL)
        return NULL;
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    atomic_init(&q->is_cancelled, false);
    memcpy(q->host, host, host_len + 1);
    snprintf(q->port, sizeof q->port, "%u", (unsigned)port);

    if (r->kind == RESOLVER_EVDNS) {
        struct evutil_addrinfo hints = {0};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_protocol = IPPROTO_TCP;
        hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
        r->pending++;
        /* May answer at once (hosts file, literal): the callback queues it either way. */
        struct evdns_getaddrinfo_request *req =
            evdns_getaddrinfo(r->dns, q->host, q->port, &hints, resolver_evdns_cb, q);
        if (!q->is_answered) { /* evdns calls back on this thread: no lock needed */
            q->req = req;
            q->asked_next = r->asked;
            if (r->asked != NULL)
                r->asked->asked_prev = q;
            r->asked = q;
        }
        return q;
    }

    pthread_mutex_lock(&r->lock);
    if (r->idle == 0 && r->threads < RESOLVER_THREADS_MAX && resolver_spawn_locked(r) == -1 &&
        r->threads == 0) {
        pthread_mutex_unlock(&r->lock);
        free(q);
        return NULL;
    }
    if (r->todo_tail != NULL)
        r->todo_tail->next = q;
    else
        r->todo = q;
    r->todo_tail = q;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    r->pending++;
    return q;
}

void
resolver_cancel(struct resolver_query *q)
{
    atomic_store(&q->is_cancelled, true);
    if (q->req != NULL) {
        struct evdns_getaddrinfo_request *req = q->req;
        q->req = NULL;
        evdns_getaddrinfo_cancel(req); /* its callback queues q, which is then dropped */
    }
}

int
resolver_matches(const struct resolver *r, enum resolver_kind kind, const char *resolv_conf)
{
    if (r->is_retired || r->kind != kind)
        return 0;
    if (kind == RESOLVER_SYSTEM)
        return 1;
    if (r->resolv_conf == NULL || resolv_conf == NULL)
        return r->resolv_conf == resolv_conf;
    return strcmp(r->resolv_conf, resolv_conf) == 0;
}

void
resolver_retire(struct resolver *r)
{
    r->is_retired = true;
    if (r->pending == 0)
        (void)resolver_free(r);
}

/* Loop thread, once libevent holds no query of ours: release everything; helper threads
 * still inside getaddrinfo() free 'r' when the last one leaves. */
static void
resolver_finish(struct resolver *r)
{
    struct resolver_query *todo, *done;
    pthread_t idle[RESOLVER_THREADS_MAX];
    size_t idle_count = 0;
    bool is_last;

    if (r->dns != NULL)
        evdns_base_free(r->dns, 0);
    event_free(r->done_ev);
    pthread_mutex_lock(&r->lock);
    todo = r->todo;
    done = r->done;
    r->todo = r->todo_tail = r->done = NULL;
    pthread_cond_broadcast(&r->wake);
    /* Idle helpers leave at once: join them, so glibc frees their resolver state before
     * the process exits. One inside getaddrinfo() may take seconds: let it go. */
    for (size_t i = 0; i < RESOLVER_THREADS_MAX; i++) {
        struct resolver_thread *t = &r->thread[i];
        if (!t->is_joinable)
            continue;
        if (t->is_running && t->is_busy)
            pthread_detach(t->tid);
        else
            idle[idle_count++] = t->tid;
        t->is_joinable = false;
    }
    pthread_mutex_unlock(&r->lock);
    for (size_t i = 0; i < idle_count; i++)
        pthread_join(idle[i], NULL);
    resolver_query_list_free(todo);
    resolver_query_list_free(done);
    pthread_mutex_lock(&r->lock);
    is_last = r->threads == 0;
    r->is_released = true;
    pthread_mutex_unlock(&r->lock);
    if (is_last)
        resolver_destroy(r);
}

int
resolver_free(struct resolver *r)
{
    if (r == NULL)
        return 0;
    pthread_mutex_lock(&r->lock);
    r->is_stopping = true;
    pthread_mutex_unlock(&r->lock);
    /* libevent answers a cancelled lookup later, from the loop, and that answer touches its
     * resolver: so cancel each one, and free libevent's resolver only after the last
     * answer (resolver_evdns_cb). Freeing it first would leave those answers dangling. */
    for (struct resolver_query *q = r->asked, *next; q != NULL; q = next) {
        next = q->asked_next;
        if (q->req != NULL) {
            struct evdns_getaddrinfo_request *req = q->req;
            q->req = NULL;
            evdns_getaddrinfo_cancel(req);
        }
    }
    if (r->asked != NULL)
        return 1;
    resolver_finish(r);
    return 0;
}
