/* relay.c - the benchmark's ceiling: a raw TCP relay (client -> relay -> backend, no
 * WebSocket) on one epoll thread, moving bytes with splice(2) through pipes so payload
 * never enters user space. Not a product: one target, IPv4, no limits beyond the
 * descriptor table.
 *
 * A pipe is only held while a direction has bytes in flight; idle sessions return theirs
 * to a small pool, so an idle session costs two descriptors, as in a gateway. When no
 * pipe can be had (descriptor limit) a direction falls back to read/write through a heap
 * buffer, which is also what --copy forces everywhere.
 *
 * stdout: {"port":N} once listening. Exits on SIGTERM/SIGINT or EOF on stdin. */
/* splice, pipe2 and F_SETPIPE_SZ need _GNU_SOURCE, which bench.mk defines. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchlib.h"

#define MAX_EVENTS 256
#define POOL_MAX   16
#define COPY_BYTES (256 * 1024)

enum handle_kind {
    HANDLE_LISTENER = 0,
    HANDLE_SIGNAL,
    HANDLE_STDIN,
    HANDLE_END,
};

struct handle {
    enum handle_kind kind;
    int fd;
};

struct pair;

struct end {
    struct handle h; /* first: epoll hands us a struct handle * */
    struct pair *pair;
    bool readable, writable; /* edge-triggered: what the last events said, until EAGAIN */
};

/* One direction: bytes read from 'src' wait in a pipe (or the copy buffer) for 'dst'. */
struct dir {
    struct end *src, *dst;
    int pipe_r, pipe_w; /* -1 when no pipe is held */
    size_t in_pipe;
    uint8_t *buf; /* copy mode; owned; NULL when empty */
    size_t buf_off, buf_len;
    bool eof;  /* src sent FIN */
    bool shut; /* dst's write side is shut */
};

struct pair {
    struct end client, backend;
    struct dir up, down; /* up: client -> backend */
    bool connected;
    bool dead; /* closed; freed after the current batch of events */
    struct pair *next_dead;
};

static int epfd;
static struct sockaddr_in target;
static bool copy_only;
static int pipe_bytes = 1 << 20;
static int spare_fd = -1;
static struct {
    int r, w;
} pool[POOL_MAX];
static int pool_count;
static struct pair *dead_pairs; /* the other end may still have an event in this batch */

static void
pool_drain(void)
{
    while (pool_count > 0) {
        pool_count--;
        close(pool[pool_count].r);
        close(pool[pool_count].w);
    }
}

static bool
dir_take_pipe(struct dir *d)
{
    if (d->pipe_r != -1)
        return true;
    if (copy_only)
        return false;
    if (pool_count > 0) {
        pool_count--;
        d->pipe_r = pool[pool_count].r;
        d->pipe_w = pool[pool_count].w;
        return true;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
        return false;                        /* out of descriptors: this direction copies instead */
    fcntl(fds[1], F_SETPIPE_SZ, pipe_bytes); /* best effort: unprivileged users have a cap */
    d->pipe_r = fds[0];
    d->pipe_w = fds[1];
    return true;
}

/* Give back an empty pipe and buffer: idle directions hold neither. */
static void
dir_release(struct dir *d)
{
    if (d->pipe_r != -1 && d->in_pipe == 0) {
        if (pool_count < POOL_MAX) {
            pool[pool_count].r = d->pipe_r;
            pool[pool_count].w = d->pipe_w;
            pool_count++;
        } else {
            close(d->pipe_r);
            close(d->pipe_w);
        }
        d->pipe_r = d->pipe_w = -1;
    }
    if (d->buf != NULL && d->buf_len == 0) {
        free(d->buf);
        d->buf = NULL;
        d->buf_off = 0;
    }
}

static void
dir_free(struct dir *d)
{
    if (d->pipe_r != -1) {
        close(d->pipe_r);
        close(d->pipe_w);
    }
    free(d->buf);
}

static void
pair_free(struct pair *p)
{
    if (p->dead)
        return;
    close(p->client.h.fd);
    close(p->backend.h.fd);
    dir_free(&p->up);
    dir_free(&p->down);
    p->dead = true;
    p->next_dead = dead_pairs;
    dead_pairs = p;
}

static void
reap_dead_pairs(void)
{
    while (dead_pairs != NULL) {
        struct pair *p = dead_pairs;
        dead_pairs = p->next_dead;
        free(p);
    }
}

/* Move what can be moved now. Returns 0, or -1 when the session must end. Pipes are only
 * filled when empty: then EAGAIN from the source means the socket is drained, never that
 * the pipe is full, which edge-triggered epoll needs to be sure of. */
static int
dir_pump(struct dir *d)
{
    for (;;) {
        if (d->in_pipe > 0) {
            if (!d->dst->writable)
                return 0;
            ssize_t n =
                splice(d->pipe_r, NULL, d->dst->h.fd, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                d->in_pipe -= (size_t)n;
            } else if (n == -1 && errno == EAGAIN) {
                d->dst->writable = false;
                return 0;
            } else if (n == -1 && errno == EINTR) {
                continue;
            } else {
                return -1;
            }
            continue;
        }
        if (d->buf_len > 0) {
            if (!d->dst->writable)
                return 0;
            ssize_t n = write(d->dst->h.fd, d->buf + d->buf_off, d->buf_len);
            if (n > 0) {
                d->buf_off += (size_t)n;
                d->buf_len -= (size_t)n;
                if (d->buf_len == 0)
                    d->buf_off = 0;
            } else if (n == -1 && errno == EAGAIN) {
                d->dst->writable = false;
                return 0;
            } else if (n == -1 && errno == EINTR) {
                continue;
            } else {
                return -1;
            }
            continue;
        }
        /* Nothing in flight. */
        if (d->eof) {
            dir_release(d);
            if (!d->shut) {
                shutdown(d->dst->h.fd, SHUT_WR);
                d->shut = true;
            }
            return 0;
        }
        if (!d->src->readable) {
            dir_release(d);
            return 0;
        }
        ssize_t n;
        if (dir_take_pipe(d)) {
            n = splice(d->src->h.fd, NULL, d->pipe_w, NULL, (size_t)pipe_bytes,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0)
                d->in_pipe = (size_t)n;
        } else {
            if (d->buf == NULL && (d->buf = malloc(COPY_BYTES)) == NULL)
                return -1;
            n = read(d->src->h.fd, d->buf, COPY_BYTES);
            if (n > 0)
                d->buf_len = (size_t)n;
        }
        if (n == 0) {
            d->eof = true;
        } else if (n == -1 && errno == EAGAIN) {
            d->src->readable = false;
        } else if (n == -1 && errno != EINTR) {
            return -1;
        }
    }
}

static void
pair_pump(struct pair *p)
{
    if (!p->connected)
        return;
    if (dir_pump(&p->up) == -1 || dir_pump(&p->down) == -1) {
        pair_free(p);
        return;
    }
    if (p->up.shut && p->down.shut)
        pair_free(p);
}

static void
end_event(struct end *e, uint32_t events)
{
    struct pair *p = e->pair;
    if (p->dead)
        return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        e->readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        e->writable = true;
    if (!p->connected && e == &p->backend) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(e->h.fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err != 0) {
            pair_free(p); /* the client sees its connection closed */
            return;
        }
        p->connected = true;
    }
    pair_pump(p);
}

static int
backend_socket(void)
{
    int fd = connect_start(&target);
    if (fd == -1 && (errno == EMFILE || errno == ENFILE) && pool_count > 0) {
        pool_drain();
        fd = connect_start(&target);
    }
    return fd;
}

static void
accept_all(int lfd)
{
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd == -1 && (errno == EMFILE || errno == ENFILE) && pool_count > 0) {
            pool_drain();
            continue;
        }
        if (cfd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && spare_fd != -1) {
                /* Full: take the connection and drop it, so the client learns now. */
                close(spare_fd);
                cfd = accept(lfd, NULL, NULL);
                if (cfd != -1)
                    close(cfd);
                spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            return;
        }
        int bfd = backend_socket();
        struct pair *p = bfd == -1 ? NULL : calloc(1, sizeof *p);
        if (p == NULL) {
            close(cfd);
            if (bfd != -1)
                close(bfd);
            continue;
        }
        set_nodelay(cfd);
        set_nodelay(bfd);
        p->client = (struct end){.h = {HANDLE_END, cfd}, .pair = p};
        p->backend = (struct end){.h = {HANDLE_END, bfd}, .pair = p};
        p->up = (struct dir){.src = &p->client, .dst = &p->backend, .pipe_r = -1, .pipe_w = -1};
        p->down = (struct dir){.src = &p->backend, .dst = &p->client, .pipe_r = -1, .pipe_w = -1};
        struct epoll_event ce = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = &p->client};
        struct epoll_event be = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = &p->backend};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ce) == -1 || epoll_ctl(epfd, EPOLL_CTL_ADD, bfd, &be) == -1)
            pair_free(p);
    }
}

static void
usage(void)
{
    fprintf(stderr, "usage: relay --listen HOST:PORT --target HOST:PORT [--copy] [--pipe-bytes N]\n"
                    "  port 0 picks one; prints {\"port\":N} once listening\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *listen_text = NULL, *target_text = NULL;
    for (int i = 1; i < argc; i++) {
        uint64_t size;
        if (strcmp(argv[i], "--copy") == 0)
            copy_only = true;
        else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            listen_text = argv[++i];
        else if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
            target_text = argv[++i];
        else if (strcmp(argv[i], "--pipe-bytes") == 0 && i + 1 < argc && size_parse(argv[++i], &size) == 0)
            pipe_bytes = (int)size;
        else
            usage();
    }
    if (listen_text == NULL || target_text == NULL)
        usage();
    struct sockaddr_in laddr;
    if (addr_parse(listen_text, &laddr) == -1)
        usage_error("relay", "bad address: %s", listen_text);
    if (addr_parse(target_text, &target) == -1)
        usage_error("relay", "bad address: %s", target_text);

    signal(SIGPIPE, SIG_IGN);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    uint16_t port;
    static struct handle listener = {.kind = HANDLE_LISTENER};
    listener.fd = listen_on(&laddr, 4096, &port);
    if (epfd == -1 || listener.fd == -1)
        return 1;
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listener.fd, &lev);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    static struct handle sig = {.kind = HANDLE_SIGNAL};
    sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &sig};
    epoll_ctl(epfd, EPOLL_CTL_ADD, sig.fd, &sev);
    static struct handle in = {.kind = HANDLE_STDIN, .fd = 0};
    struct epoll_event iev = {.events = EPOLLIN, .data.ptr = &in};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &iev); /* fails harmlessly when stdin is a file */

    printf("{\"port\":%u}\n", port);
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n == -1 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct handle *h = events[i].data.ptr;
            switch (h->kind) {
            case HANDLE_LISTENER:
                accept_all(h->fd);
                break;
            case HANDLE_SIGNAL:
                return 0;
            case HANDLE_STDIN: {
                char buf[256];
                ssize_t r = read(0, buf, sizeof buf);
                if (r == 0 || (r == -1 && errno != EINTR && errno != EAGAIN))
                    return 0; /* the parent is gone */
                break;
            }
            case HANDLE_END:
                end_event((struct end *)h, events[i].events);
                break;
            }
        }
        reap_dead_pairs();
    }
}
