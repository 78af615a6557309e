/* fuzz_session.c - the client's byte stream through the whole session state machine:
 * handshake, routing, backend connect, frame relay and close ordering. The client is one
 * end of a socketpair; the backend is a real unix socket in this process that swallows
 * what it gets. The listener has a web root, so requests without an upgrade are answered
 * from files (keep-alive, pipelining, an upgrade after them). Each input must end its
 * session without leaks or sanitizer errors. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"
#include "log.h"
#include "session.h"
#include "worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *base;
static struct worker worker;
static struct worker_group group;
static struct admission_counts counts;
static struct config *cfg;
static struct session_admission adm; /* no per-IP table: the peer is always the same */
static uint64_t backend_bytes;

static void
backend_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    (void)arg;
    backend_bytes += evbuffer_get_length(in);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void
backend_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev); /* closing answers the gateway's shutdown */
}

static void
backend_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    (void)lev, (void)sa, (void)len, (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, backend_read_cb, NULL, backend_event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    /* Some bytes the other way, so backend-to-client framing runs too: whole and broken
     * lines, and UTF-8 that is cut short, then invalid. */
    bufferevent_write(bev, "RFB 003.008\n:irc PRIVMSG #c :caf\xc3\xa9\r\npartial \xe2\x82", 41);
    bufferevent_write(bev, "\xac \xff\r\n", 6);
}

static void
fuzz_init(void)
{
    static char text[1024];
    struct sockaddr_un un = {.sun_family = AF_UNIX};

    log_level_current = getenv("FUZZ_LOG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    base = event_base_new();
    snprintf(un.sun_path, sizeof un.sun_path, "/tmp/wsplice-fuzz-%d.sock", (int)getpid());
    unlink(un.sun_path);
    if (evconnlistener_new_bind(base, backend_accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE, 64, (struct sockaddr *)&un,
                                sizeof un) == NULL)
        abort();
    /* A web root with a page, a file larger than one queued chunk, and a directory to list. */
    static char web[] = "/tmp/wsplice-fuzz-web-XXXXXX";
    char path[sizeof web + 32];
    if (mkdtemp(web) == NULL)
        abort();
    snprintf(path, sizeof path, "%s/sub", web);
    mkdir(path, 0755);
    static const char *const files[] = {"index.html", "big.bin", "sub/a.js"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", web, files[i]);
        FILE *f = fopen(path, "w");
        if (f == NULL)
            abort();
        for (int k = 0; k < (i == 1 ? 40000 : 1); k++)
            fputs("<p>wsplice fuzz</p>\n", f);
        fclose(f);
    }
    snprintf(text, sizeof text,
             "[gateway]\nclose_timeout_s = 0.05\nconnect_timeout_s = 0.5\nping_interval_s = 0\n"
             "max_frame_bytes = 65536\nmax_message_bytes = 131072\nhandshake_timeout_s = 0.2\n"
             "[listener:f]\nbind = 127.0.0.1:1\nweb_root = %s\nweb_listing = yes\n"
             "[route:r]\npath = /*\ntarget = unix:%s\n"
             "[route:lines]\npath = /lines\ntarget = unix:%s\nframe_mode = lines\nmax_line_bytes = 64\n"
             "[route:text]\npath = /text\ntarget = unix:%s\nframe_mode = text\ntext_invalid = close\n",
             web, un.sun_path, un.sun_path, un.sun_path);
    cfg = config_load_string(text, "fuzz");
    if (cfg == NULL || cfg->error_count != 0)
        abort();
    worker.base = base;
    worker.cfg = cfg;
    worker.group = &group;
    worker_group_set_limits(&group, 16, 0);
    pthread_mutex_init(&counts.lock, NULL);
    adm.counts = &counts; /* no per-IP table: the defaults limit nothing per address */
    adm.limits = cfg->listeners[0].limits;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    char sink[65536];
    size_t off = 0;

    if (base == NULL)
        fuzz_init();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == -1)
        abort();
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    adm.web = cfg->listeners[0].webroot;
    session_start(&worker, sv[0], (struct sockaddr *)&peer, sizeof peer, &adm);
    /* Feed the input while the loop runs, then end the client's side. */
    for (int spins = 0; off < size && spins < 10000; spins++) {
        ssize_t n = write(sv[1], data + off, size - off);
        if (n > 0)
            off += (size_t)n;
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        while (read(sv[1], sink, sizeof sink) > 0)
            ;
    }
    shutdown(sv[1], SHUT_WR);
    /* Run until the session is gone; its close timeout bounds the wait. */
    for (int spins = 0; worker.session_count > 0 && spins < 100000; spins++) {
        event_base_loop(base, EVLOOP_ONCE | (spins < 1000 ? EVLOOP_NONBLOCK : 0));
        while (read(sv[1], sink, sizeof sink) > 0)
            ;
    }
    if (worker.session_count != 0)
        abort(); /* a session that never ends is a bug */
    close(sv[1]);
    return 0;
}
