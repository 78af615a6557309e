/* worker.c - see worker.h. Everything a worker owns is touched only on its own thread
 * while it runs; the main thread reaches it through worker_post() (a command word under a
 * mutex and an eventfd), and frees it only after joining the thread. */
#define _GNU_SOURCE /* pipe2(2), F_SETPIPE_SZ */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "resolver.h"
#include "session.h"

#define ACCEPT_CHECK_MS 50            /* while paused at the limit, how often to look at the group again */
#define SPLICE_PIPE     (1024 * 1024) /* the splice pipe's size: one large backend read */

/* The event loop, with epoll's change list: a relay adds and removes each socket's write
 * event around every write, and the change list folds an add and a remove between two
 * epoll_wait calls into nothing instead of two epoll_ctl calls. */
static struct event_base *
worker_base_new(void)
{
    struct event_config *ec = event_config_new();
    struct event_base *base = NULL;

    if (ec != NULL) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK); /* one thread per base */
        base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    return base != NULL ? base : event_base_new();
}

void
worker_group_set_limits(struct worker_group *g, size_t max_sessions, size_t reject_headroom)
{
    atomic_store(&g->max_sessions, max_sessions);
    atomic_store(&g->accept_limit, max_sessions != 0 ? max_sessions + reject_headroom : 0);
}

void
worker_on_empty(struct worker *w)
{
    event_base_loopbreak(w->base);
}

void
worker_pause_accepting(struct worker *w)
{
    struct timeval tv = {0, ACCEPT_CHECK_MS * 1000};

    if (w->accept_paused)
        return;
    w->accept_paused = true;
    for (size_t i = 0; i < w->listener_count; i++)
        listener_pause(w->listeners[i], true);
    event_add(w->accept_check, &tv);
}

void
worker_resume_accepting(struct worker *w)
{
    if (!w->accept_paused)
        return;
    w->accept_paused = false;
    event_del(w->accept_check);
    if (w->draining)
        return;
    for (size_t i = 0; i < w->listener_count; i++)
        listener_pause(w->listeners[i], false);
}

/* Sessions ending on other workers free room without telling this one: look again. */
static void
worker_accept_check_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct timeval tv = {0, ACCEPT_CHECK_MS * 1000};
    size_t limit = atomic_load(&w->group->accept_limit);

    (void)fd;
    (void)what;
    if (limit == 0 || atomic_load(&w->group->connections) < limit)
        worker_resume_accepting(w);
    else
        event_add(w->accept_check, &tv);
}

static void
worker_drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    log_warn("drain timeout: closing %zu remaining sessions", w->session_count);
    session_free_all(w);
    event_base_loopbreak(w->base);
}

static void
worker_drain(struct worker *w)
{
    struct timeval tv = {w->cfg->drain_timeout_ms / 1000, (w->cfg->drain_timeout_ms % 1000) * 1000};

    if (w->draining)
        return;
    w->draining = true;
    event_del(w->accept_check);
    for (size_t i = 0; i < w->listener_count; i++)
        listener_stop(w->listeners[i]);
    session_drain_all(w);
    if (w->session_count == 0) {
        event_base_loopbreak(w->base);
        return;
    }
    w->drain_timer = evtimer_new(w->base, worker_drain_timeout_cb, w);
    if (w->drain_timer != NULL)
        event_add(w->drain_timer, &tv);
}

static void
worker_reload(struct worker *w, struct config *cfg)
{
    /* New connections get the new certificates and limits; sessions hold their own
     * references to the route table and TLS contexts they started with. */
    for (size_t i = 0; i < w->listener_count && i < cfg->listener_count; i++)
        listener_update(w->listeners[i], &cfg->listeners[i]);
    config_free(w->cfg); /* our reference */
    w->cfg = cfg;
}

static void
worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t n;
    unsigned commands;
    struct config *cfg;

    (void)what;
    if (read(fd, &n, sizeof n) == -1 && errno != EAGAIN)
        log_error("worker %u: wake-up read: %s", w->index, strerror(errno));
    pthread_mutex_lock(&w->lock);
    commands = w->commands;
    cfg = w->next_cfg;
    w->commands = 0;
    w->next_cfg = NULL;
    pthread_mutex_unlock(&w->lock);
    if (cfg != NULL)
        worker_reload(w, cfg);
    if (commands & WORKER_STOP) {
        w->draining = true;
        session_free_all(w);
        event_base_loopbreak(w->base);
    } else if (commands & WORKER_DRAIN) {
        worker_drain(w);
    }
}

void
worker_post(struct worker *w, unsigned commands, struct config *cfg)
{
    static const uint64_t one = 1;
    struct config *old = NULL;

    pthread_mutex_lock(&w->lock);
    w->commands |= commands;
    if (commands & WORKER_RELOAD) {
        old = w->next_cfg; /* never taken: a newer reload replaces it */
        config_ref(cfg);
        w->next_cfg = cfg;
    }
    pthread_mutex_unlock(&w->lock);
    config_free(old);
    if (write(w->wake_fd, &one, sizeof one) == -1 && errno != EAGAIN)
        log_error("worker %u: cannot wake it: %s", w->index, strerror(errno));
}

static void *
worker_thread_main(void *arg)
{
    static const uint64_t one = 1;
    struct worker *w = arg;

    event_base_dispatch(w->base);
    session_free_all(w);
    /* bufferevent_free() leaves the final release to a deferred finalizer, and libevent's
     * resolver answers cancelled lookups from the loop: let the loop run those (a few
     * passes: one answer wakes the next). */
    bool is_resolver_busy = resolver_free(w->resolver) != 0;
    w->resolver = NULL;
    for (int pass = 0; pass < (is_resolver_busy ? 4 : 1); pass++)
        event_base_loop(w->base, EVLOOP_NONBLOCK);
    if (write(w->done_fd, &one, sizeof one) == -1)
        log_error("worker %u: cannot report its end: %s", w->index, strerror(errno));
    return NULL;
}

const int *
worker_splice_pipe(struct worker *w)
{
    if (!w->has_splice_pipe) {
        if (pipe2(w->splice_pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
            log_debug("worker %u: no pipe for splice(2): %s", w->index, strerror(errno));
            return NULL;
        }
        /* Larger than the default 64 KiB, so that one splice takes a large read. Best
         * effort: fs.pipe-max-size caps it for unprivileged processes. */
        (void)fcntl(w->splice_pipe[1], F_SETPIPE_SZ, SPLICE_PIPE);
        int size = fcntl(w->splice_pipe[1], F_GETPIPE_SZ);
        w->splice_pipe_bytes = size > 0 ? (size_t)size : 65536;
        w->has_splice_pipe = true;
    }
    return w->splice_pipe;
}

void
worker_splice_pipe_reset(struct worker *w)
{
    if (!w->has_splice_pipe)
        return;
    close(w->splice_pipe[0]);
    close(w->splice_pipe[1]);
    w->has_splice_pipe = false;
}

struct worker *
worker_new(unsigned index, struct worker_group *group, struct config *cfg, const struct worker *first,
           bool reuse_port, int done_fd)
{
    struct worker *w = calloc(1, sizeof *w);

    if (w == NULL)
        return NULL;
    w->index = index;
    w->group = group;
    w->done_fd = done_fd;
    w->wake_fd = -1;
    pthread_mutex_init(&w->lock, NULL);
    config_ref(cfg);
    w->cfg = cfg;
    w->base = worker_base_new();
    if (w->base == NULL) {
        log_error("worker %u: cannot create an event loop", index);
        goto fail;
    }
    w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd == -1) {
        log_error("worker %u: eventfd: %s", index, strerror(errno));
        goto fail;
    }
    w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, worker_wake_cb, w);
    w->accept_check = evtimer_new(w->base, worker_accept_check_cb, w);
    if (w->wake_ev == NULL || w->accept_check == NULL || event_add(w->wake_ev, NULL) == -1)
        goto fail;
    w->listeners = calloc(cfg->listener_count != 0 ? cfg->listener_count : 1, sizeof *w->listeners);
    if (w->listeners == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->listener_count; i++) {
        w->listeners[i] = listener_new(w, &cfg->listeners[i], (unsigned)i,
                                       first != NULL ? first->listeners[i] : NULL, reuse_port);
        if (w->listeners[i] == NULL)
            goto fail;
        w->listener_count++;
    }
    (void)worker_splice_pipe(w); /* now, so the descriptor count is steady from the start */
    return w;
fail:
    worker_free(w);
    return NULL;
}

int
worker_start(struct worker *w)
{
    sigset_t all, old;
    int rv;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals stay with the main thread */
    rv = pthread_create(&w->thread, NULL, worker_thread_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != 0) {
        log_error("worker %u: cannot start its thread: %s", w->index, strerror(rv));
        return -1;
    }
    w->is_started = true;
    return 0;
}

void
worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    if (w->is_started)
        pthread_join(w->thread, NULL);
    session_free_all(w);
    (void)resolver_free(w->resolver);
    for (size_t i = 0; i < w->listener_count; i++)
        listener_free(w->listeners[i]);
    free(w->listeners);
    if (w->drain_timer != NULL)
        event_free(w->drain_timer);
    if (w->accept_check != NULL)
        event_free(w->accept_check);
    if (w->wake_ev != NULL)
        event_free(w->wake_ev);
    if (w->wake_fd != -1)
        close(w->wake_fd);
    worker_splice_pipe_reset(w);
    if (w->base != NULL)
        event_base_free(w->base);
    config_free(w->next_cfg);
    config_free(w->cfg);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
