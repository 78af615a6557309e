/* listener.c - listening sockets on evconnlistener. Socket options are set by hand so
 * IPV6_V6ONLY, SO_REUSEADDR and SO_REUSEPORT (one socket per worker) are explicit. On EMFILE/ENFILE the
 * listener is disabled for a moment instead of spinning on a ready socket it cannot accept. */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "iplimit.h"
#include "log.h"
#include "session.h"
#include "tls.h"
#include "webroot.h"

#define LISTEN_BACKLOG  1024
#define ACCEPT_RETRY_MS 100
/* Client address groups kept only for their handshake buckets (no connection open):
 * about 100 bytes each, the least recently seen forgotten first. */
#define LISTENER_MAX_IDLE_CLIENTS 65536

struct listener {
    struct worker *worker;
    struct evconnlistener *lev;
    struct event *retry; /* re-enables accepting after EMFILE */
    char *name;
    struct session_admission adm;   /* limits, TLS contexts and counters for new connections */
    struct admission_counts *owned; /* adm.counts when this is the first worker's socket */
    struct sockaddr_storage bound;  /* what the other workers' sockets bind to */
    socklen_t bound_len;
    bool is_first;
    char addr[ADDR_STR_MAX];
};

static void
listener_iplimit_config(const struct listener_limits *limits, struct iplimit_config *out)
{
    out->max_sessions = limits->max_sessions_per_ip;
    out->rate_milli = limits->handshake_rate_per_ip_milli;
    out->burst = limits->handshake_burst_per_ip;
}

static void
listener_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int sa_len, void *arg)
{
    struct listener *l = arg;
    int one = 1;

    (void)lev;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    session_start(l->worker, fd, sa, (socklen_t)sa_len, &l->adm);
}

static void
listener_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct listener *l = arg;

    (void)fd;
    (void)what;
    if (l->lev != NULL && !l->worker->draining && !l->worker->accept_paused)
        evconnlistener_enable(l->lev);
}

static void
listener_error_cb(struct evconnlistener *lev, void *arg)
{
    struct listener *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* The pending connection stays in the backlog; try again once sessions end. */
        log_warn("listener name=%s accept paused: %s", l->name, evutil_socket_error_to_string(err));
        evconnlistener_disable(lev);
        event_add(l->retry, &tv);
        return;
    }
    log_warn("listener name=%s accept error: %s", l->name, evutil_socket_error_to_string(err));
}

/* Create, configure, bind and listen. Returns the fd or -1 with errno set. */
static int
listener_socket(const struct sockaddr *sa, socklen_t sa_len, bool v6only, bool reuse_port)
{
    int one = 1, zero = 0;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd == -1)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1)
        goto fail;
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == -1)
        goto fail;
    if (sa->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof one) == -1)
        goto fail;
    if (bind(fd, sa, sa_len) == -1 || listen(fd, LISTEN_BACKLOG) == -1)
        goto fail;
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static struct admission_counts *
listener_counts_new(const struct listener_config *cfg)
{
    struct admission_counts *c = calloc(1, sizeof *c);
    struct iplimit_config ic;
    uint8_t seed[16];

    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    atomic_init(&c->pending, 0);
    /* A secret hash key: clients cannot pick addresses that pile into one chain. */
    evutil_secure_rng_get_bytes(seed, sizeof seed);
    listener_iplimit_config(&cfg->limits, &ic);
    c->clients = iplimit_table_new(&ic, LISTENER_MAX_IDLE_CLIENTS, seed);
    if (c->clients == NULL) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    return c;
}

static void
listener_counts_free(struct admission_counts *c)
{
    if (c == NULL)
        return;
    iplimit_table_free(c->clients);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

struct listener *
listener_new(struct worker *w, const struct listener_config *cfg, unsigned index,
             const struct listener *first, bool reuse_port)
{
    struct listener *l = calloc(1, sizeof *l);
    int fd;

    if (l == NULL)
        return NULL;
    l->worker = w;
    l->adm.listener_index = index;
    l->adm.limits = cfg->limits;
    if (cfg->tls_server != NULL) {
        l->adm.tls = cfg->tls_server;
        tls_server_ref(l->adm.tls);
    }
    if (cfg->webroot != NULL) {
        l->adm.web = cfg->webroot;
        webroot_ref(l->adm.web);
    }
    l->name = strdup(cfg->head.name);
    if (l->name == NULL)
        goto fail;
    l->is_first = first == NULL;
    if (first != NULL) {
        /* Another worker's socket for the same listener: its port (even one the kernel
         * chose), its family, and its counts. */
        l->adm.counts = first->adm.counts;
        fd = listener_socket((const struct sockaddr *)&first->bound, first->bound_len,
                             cfg->bind.host[0] != '\0', true);
        goto bound;
    }
    l->owned = l->adm.counts = listener_counts_new(cfg);
    if (l->owned == NULL) {
        log_error("listener name=%s: out of memory", cfg->head.name);
        goto fail;
    }
    if (cfg->bind.host[0] == '\0') {
        /* Every address: dual-stack IPv6 if the system has it, else IPv4 only. */
        struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_port = htons(cfg->bind.port)};
        fd = listener_socket((struct sockaddr *)&any6, sizeof any6, false, reuse_port);
        if (fd == -1 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
            struct sockaddr_in any4 = {.sin_family = AF_INET, .sin_port = htons(cfg->bind.port)};
            fd = listener_socket((struct sockaddr *)&any4, sizeof any4, false, reuse_port);
        }
    } else if (!cfg->bind.is_numeric) {
        log_error("listener name=%s bind=%s: listen addresses must be IP addresses, not names",
                  cfg->head.name, cfg->bind.host);
        goto fail;
    } else {
        fd = listener_socket((const struct sockaddr *)&cfg->bind.sa, cfg->bind.sa_len, true, reuse_port);
    }
bound:
    if (fd == -1) {
        char a[ADDR_STR_MAX];
        log_error("listener name=%s bind=%s: %s", cfg->head.name, addr_format(&cfg->bind, a, sizeof a),
                  strerror(errno));
        goto fail;
    }
    l->bound_len = sizeof l->bound;
    if (getsockname(fd, (struct sockaddr *)&l->bound, &l->bound_len) == 0)
        addr_format_sockaddr((struct sockaddr *)&l->bound, l->bound_len, l->addr, sizeof l->addr);
    l->lev = evconnlistener_new(w->base, listener_accept_cb, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                -1, fd);
    if (l->lev == NULL) {
        close(fd);
        log_error("listener name=%s: cannot register with the event loop", cfg->head.name);
        goto fail;
    }
    evconnlistener_set_error_cb(l->lev, listener_error_cb);
    l->retry = evtimer_new(w->base, listener_retry_cb, l);
    if (l->retry == NULL)
        goto fail;
    char web[LOG_ESCAPE_MAX] = "";
    if (l->adm.web != NULL)
        log_escape(web, sizeof web, webroot_dir(l->adm.web), strlen(webroot_dir(l->adm.web)));
    if (l->is_first)
        log_info("listener name=%s addr=%s listening%s%s%s", l->name, l->addr,
                 l->adm.tls == NULL            ? ""
                 : tls_server_only(l->adm.tls) ? " tls=only"
                                               : " tls=yes",
                 l->adm.web != NULL ? " web_root=" : "", web);
    else
        log_debug("listener name=%s addr=%s worker=%u listening", l->name, l->addr, w->index);
    return l;
fail:
    listener_free(l);
    return NULL;
}

void
listener_stop(struct listener *l)
{
    if (l->lev != NULL) {
        evconnlistener_free(l->lev);
        l->lev = NULL;
        if (l->is_first)
            log_info("listener name=%s addr=%s stopped", l->name, l->addr);
    }
    if (l->retry != NULL)
        event_del(l->retry);
}

void
listener_free(struct listener *l)
{
    if (l == NULL)
        return;
    if (l->lev != NULL)
        evconnlistener_free(l->lev);
    if (l->retry != NULL)
        event_free(l->retry);
    tls_server_unref(l->adm.tls);
    webroot_unref(l->adm.web);
    listener_counts_free(l->owned);
    free(l->name);
    free(l);
}

void
listener_pause(struct listener *l, bool paused)
{
    if (l->lev == NULL)
        return;
    if (paused)
        evconnlistener_disable(l->lev);
    else
        evconnlistener_enable(l->lev);
}

void
listener_update(struct listener *l, const struct listener_config *cfg)
{
    struct iplimit_config ic;

    l->adm.limits = cfg->limits;
    if (l->owned != NULL) { /* once per listener, whichever worker gets there */
        listener_iplimit_config(&cfg->limits, &ic);
        pthread_mutex_lock(&l->owned->lock);
        iplimit_table_configure(l->owned->clients, &ic); /* counts and buckets carry over */
        pthread_mutex_unlock(&l->owned->lock);
    }
    if (cfg->tls_server != NULL)
        tls_server_ref(cfg->tls_server);
    tls_server_unref(l->adm.tls); /* sessions mid-handshake hold their own reference */
    l->adm.tls = cfg->tls_server;
    if (cfg->webroot != NULL)
        webroot_ref(cfg->webroot);
    webroot_unref(l->adm.web); /* so do sessions serving files */
    l->adm.web = cfg->webroot;
}
