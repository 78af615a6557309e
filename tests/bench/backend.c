/* backend.c - the benchmark's TCP backends in one epoll process: echo (returns every
 * byte), sink (reads and checks the shared pattern, acknowledging what it verified) and
 * source (sends the pattern as fast as the peer takes it). Not a general server: one
 * thread, loopback, no TLS.
 *
 * Sink acknowledgements: 16 bytes, the cumulative byte count then the count of bytes
 * that did not match the pattern (both little-endian uint64), sent when the socket has
 * been drained and ACK_BYTES arrived or --ack-ms passed since the last one. The load
 * client waits for the ack covering everything it sent, so "delivered" is measured at
 * the far end, not at the client's send buffer.
 *
 * stdout: one JSON line with the bound ports once listening; one stats line per SIGUSR1.
 * The process exits on SIGTERM/SIGINT or when its stdin reaches EOF (its parent died). */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include "benchlib.h"

#define READ_CHUNK  (256 * 1024)
#define WRITE_CHUNK (256 * 1024)
#define ACK_BYTES   (4u << 20)
#define MAX_EVENTS  256

enum kind {
    KIND_ECHO = 0,
    KIND_SINK,
    KIND_SOURCE,
    KIND_COUNT,
    KIND_SIGNAL,
    KIND_STDIN,
};

static const char *const kind_names[KIND_COUNT] = {"echo", "sink", "source"};

/* What epoll's data pointer refers to: a listener, the signalfd, stdin or a connection. */
struct handle {
    enum kind kind;
    bool is_listener;
    int fd;
};

struct conn {
    struct handle h;          /* first: epoll hands us a struct handle * */
    struct conn *prev, *next; /* in the list of unacknowledged sinks */
    bool in_ack_list;
    bool eof;
    uint64_t offset; /* sink: bytes received; source: bytes sent */
    uint64_t errors; /* sink: bytes that differed from the pattern */
    uint64_t acked;  /* sink: offset covered by the last ack */
    uint64_t last_ack_ns;
    uint8_t ack[16]; /* pending ack bytes */
    uint8_t ack_off, ack_len;
    uint8_t *pending; /* echo: bytes read but not yet written back; owned */
    size_t pending_off, pending_len;
};

static int epfd;
static uint8_t scratch[READ_CHUNK];
static int spare_fd = -1; /* closed to accept-and-drop when out of descriptors */
static uint64_t ack_interval_ns = 5 * 1000000u;
static struct conn ack_list; /* sentinel of the circular list of sinks owing an ack */

static struct {
    uint64_t active, accepted, closed;
    uint64_t sink_bytes, sink_errors, source_bytes, echo_bytes;
} stats;

static void
conn_free(struct conn *c)
{
    if (c->in_ack_list) {
        c->prev->next = c->next;
        c->next->prev = c->prev;
    }
    close(c->h.fd); /* also removes it from the epoll set */
    free(c->pending);
    free(c);
    stats.active--;
    stats.closed++;
}

static void
ack_list_set(struct conn *c, bool owes)
{
    if (owes == c->in_ack_list)
        return;
    if (owes) {
        c->next = &ack_list;
        c->prev = ack_list.prev;
        ack_list.prev->next = c;
        ack_list.prev = c;
    } else {
        c->prev->next = c->next;
        c->next->prev = c->prev;
    }
    c->in_ack_list = owes;
}

/* Write what is left of the pending ack. Returns 0, or -1 when the connection failed. */
static int
sink_flush_ack(struct conn *c)
{
    while (c->ack_off < c->ack_len) {
        ssize_t n = write(c->h.fd, c->ack + c->ack_off, c->ack_len - c->ack_off);
        if (n > 0) {
            c->ack_off += (uint8_t)n;
        } else if (n == -1 && errno == EAGAIN) {
            return 0;
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

static int
sink_send_ack(struct conn *c, uint64_t now)
{
    if (c->ack_off < c->ack_len)
        return 0; /* the previous ack is still going out; the next tick sends a newer one */
    for (int i = 0; i < 8; i++) {
        c->ack[i] = (uint8_t)(c->offset >> (8 * i));
        c->ack[8 + i] = (uint8_t)(c->errors >> (8 * i));
    }
    c->ack_off = 0;
    c->ack_len = 16;
    c->acked = c->offset;
    c->last_ack_ns = now;
    return sink_flush_ack(c);
}

static void
sink_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = read(c->h.fd, scratch, sizeof scratch);
        if (n > 0) {
            uint64_t bad = pattern_check(c->offset, scratch, (size_t)n);
            c->errors += bad;
            c->offset += (uint64_t)n;
            stats.sink_bytes += (uint64_t)n;
            stats.sink_errors += bad;
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN)
            break;
        conn_free(c); /* EOF or error: everything sent was read */
        return;
    }
    uint64_t now = now_ns();
    if (c->offset != c->acked &&
        (c->offset - c->acked >= ACK_BYTES || now - c->last_ack_ns >= ack_interval_ns)) {
        if (sink_send_ack(c, now) == -1) {
            conn_free(c);
            return;
        }
    }
    ack_list_set(c, c->offset != c->acked);
}

static void
source_writable(struct conn *c)
{
    for (;;) {
        ssize_t n = write(c->h.fd, pattern_at(c->offset), WRITE_CHUNK);
        if (n > 0) {
            c->offset += (uint64_t)n;
            stats.source_bytes += (uint64_t)n;
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && errno == EAGAIN) {
            return;
        } else {
            conn_free(c);
            return;
        }
    }
}

/* Drain and discard: the source's peer never sends payload, only its end. Returns -1
 * when the connection is gone. */
static int
source_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = read(c->h.fd, scratch, sizeof scratch);
        if (n > 0)
            continue;
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN)
            return 0;
        conn_free(c);
        return -1;
    }
}

/* Write back what is pending. Returns 1 when all went out, 0 when the socket is full,
 * -1 on error. */
static int
echo_flush(struct conn *c)
{
    while (c->pending_len > 0) {
        ssize_t n = write(c->h.fd, c->pending + c->pending_off, c->pending_len);
        if (n > 0) {
            c->pending_off += (size_t)n;
            c->pending_len -= (size_t)n;
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && errno == EAGAIN) {
            return 0;
        } else {
            return -1;
        }
    }
    free(c->pending); /* idle connections hold no buffer */
    c->pending = NULL;
    c->pending_off = 0;
    return 1;
}

static void
echo_pump(struct conn *c)
{
    for (;;) {
        int flushed = echo_flush(c);
        if (flushed == -1) {
            conn_free(c);
            return;
        }
        if (flushed == 0)
            return; /* EPOLLOUT resumes us */
        if (c->eof) {
            shutdown(c->h.fd, SHUT_WR);
            conn_free(c);
            return;
        }
        ssize_t n = read(c->h.fd, scratch, sizeof scratch);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN)
            return;
        if (n <= 0) {
            if (n == 0) {
                c->eof = true;
                continue;
            }
            conn_free(c);
            return;
        }
        stats.echo_bytes += (uint64_t)n;
        ssize_t w = write(c->h.fd, scratch, (size_t)n);
        if (w == -1 && errno != EAGAIN && errno != EINTR) {
            conn_free(c);
            return;
        }
        if (w < 0)
            w = 0;
        if (w < n) {
            c->pending = malloc((size_t)(n - w));
            if (c->pending == NULL) {
                conn_free(c);
                return;
            }
            memcpy(c->pending, scratch + w, (size_t)(n - w));
            c->pending_len = (size_t)(n - w);
            c->pending_off = 0;
        }
    }
}

static void
conn_event(struct conn *c, uint32_t events)
{
    switch (c->h.kind) {
    case KIND_ECHO:
        echo_pump(c);
        break;
    case KIND_SINK:
        if (events & EPOLLOUT) {
            if (sink_flush_ack(c) == -1) {
                conn_free(c);
                return;
            }
        }
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            sink_readable(c);
        break;
    case KIND_SOURCE:
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            if (source_readable(c) == -1)
                return;
        }
        if (events & EPOLLOUT)
            source_writable(c);
        break;
    default:
        break;
    }
}

static void
accept_all(struct handle *l)
{
    for (;;) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && spare_fd != -1) {
                /* Out of descriptors: take the connection and drop it, so the client
                 * learns now instead of waiting in the backlog. */
                close(spare_fd);
                fd = accept(l->fd, NULL, NULL);
                if (fd != -1)
                    close(fd);
                spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            return;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->h.kind = l->kind;
        c->h.fd = fd;
        set_nodelay(fd);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
            close(fd);
            free(c);
            continue;
        }
        stats.active++;
        stats.accepted++;
        /* The edge-triggered EPOLLOUT arrives on its own; nothing to start here. */
    }
}

static void
print_stats(void)
{
    printf("{\"active\":%llu,\"accepted\":%llu,\"closed\":%llu,\"sink_bytes\":%llu,"
           "\"sink_errors\":%llu,\"source_bytes\":%llu,\"echo_bytes\":%llu}\n",
           (unsigned long long)stats.active, (unsigned long long)stats.accepted,
           (unsigned long long)stats.closed, (unsigned long long)stats.sink_bytes,
           (unsigned long long)stats.sink_errors, (unsigned long long)stats.source_bytes,
           (unsigned long long)stats.echo_bytes);
    fflush(stdout);
}

static void
ack_tick(void)
{
    uint64_t now = now_ns();
    struct conn *c = ack_list.next;
    while (c != &ack_list) {
        struct conn *next = c->next;
        if (now - c->last_ack_ns >= ack_interval_ns) {
            if (sink_send_ack(c, now) == -1)
                conn_free(c);
            else
                ack_list_set(c, c->offset != c->acked);
        }
        c = next;
    }
}

static void
usage(void)
{
    fprintf(stderr, "usage: backend [--echo ADDR] [--sink ADDR] [--source ADDR] [--ack-ms N]\n"
                    "  ADDR is host:port (port 0 picks one); prints the bound ports as JSON\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    static struct handle listeners[KIND_COUNT];
    const char *addrs[KIND_COUNT] = {NULL, NULL, NULL};

    for (int i = 1; i < argc; i++) {
        bool known = false;
        for (int k = 0; k < KIND_COUNT; k++) {
            char flag[16];
            snprintf(flag, sizeof flag, "--%s", kind_names[k]);
            if (strcmp(argv[i], flag) == 0 && i + 1 < argc) {
                addrs[k] = argv[++i];
                known = true;
            }
        }
        if (known)
            continue;
        if (strcmp(argv[i], "--ack-ms") == 0 && i + 1 < argc) {
            ack_interval_ns = (uint64_t)(atof(argv[++i]) * 1e6);
        } else {
            usage();
        }
    }

    pattern_init();
    signal(SIGPIPE, SIG_IGN);
    ack_list.next = ack_list.prev = &ack_list;
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd == -1) {
        perror("epoll_create1");
        return 1;
    }

    uint16_t ports[KIND_COUNT] = {0, 0, 0};
    for (int k = 0; k < KIND_COUNT; k++) {
        listeners[k].fd = -1;
        if (addrs[k] == NULL)
            continue;
        struct sockaddr_in sa;
        if (addr_parse(addrs[k], &sa) == -1)
            usage_error("backend", "bad address: %s", addrs[k]);
        listeners[k].kind = (enum kind)k;
        listeners[k].is_listener = true;
        listeners[k].fd = listen_on(&sa, 4096, &ports[k]);
        if (listeners[k].fd == -1)
            return 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listeners[k]};
        epoll_ctl(epfd, EPOLL_CTL_ADD, listeners[k].fd, &ev);
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    static struct handle sig = {.kind = KIND_SIGNAL};
    sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &sig};
    epoll_ctl(epfd, EPOLL_CTL_ADD, sig.fd, &sev);
    static struct handle in = {.kind = KIND_STDIN, .fd = 0};
    struct epoll_event iev = {.events = EPOLLIN, .data.ptr = &in};
    bool watch_stdin = epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &iev) == 0;

    printf("{\"echo\":%u,\"sink\":%u,\"source\":%u}\n", ports[0], ports[1], ports[2]);
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int timeout_ms = ack_list.next != &ack_list ? (int)(ack_interval_ns / 1000000u) + 1 : -1;
        int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
        if (n == -1 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct handle *h = events[i].data.ptr;
            if (h->is_listener) {
                accept_all(h);
            } else if (h->kind == KIND_SIGNAL) {
                struct signalfd_siginfo si;
                while (read(sig.fd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (si.ssi_signo == SIGUSR1)
                        print_stats();
                    else
                        return 0;
                }
            } else if (h->kind == KIND_STDIN) {
                ssize_t r = read(0, scratch, sizeof scratch);
                if (r == 0 || (r == -1 && errno != EINTR && errno != EAGAIN)) {
                    if (!watch_stdin)
                        continue;
                    return 0; /* the parent is gone */
                }
            } else {
                conn_event((struct conn *)h, events[i].events);
            }
        }
        if (ack_list.next != &ack_list)
            ack_tick();
    }
}
