/* loadgen.c - the benchmark's load client: one epoll thread driving many connections
 * over raw TCP ("tcp"), WebSocket ("ws": HTTP upgrade, masked client frames, server
 * frames parsed) or WebSocket over TLS 1.3 ("wss": OpenSSL on the same non-blocking
 * sockets, no certificate verification, SNI "localhost"). It prints one JSON line per result and its own CPU use, so a run can
 * show the client was not the bottleneck. Not a WebSocket library: it only speaks what a
 * benchmark needs and treats anything unexpected as a failure.
 *
 * Modes (see --help): up (stream the pattern, the sink acknowledges what it verified),
 * down (receive the pattern from a source and verify it), echo (closed-loop round trips
 * of small messages, latency percentiles), idle (ramp up many sessions, hold them idle
 * until told on stdin, then check each one still relays), handshake (open many sessions,
 * TLS and upgrade each, close each as soon as its 101 is in: handshakes per second). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "benchlib.h"
#include "ws_frame.h" /* the opcodes; header only */

#define RX_CHUNK   (256 * 1024)
#define TX_CHUNK   (256 * 1024)
#define OUT_MAX    512 /* per-connection queue for the request, messages and control frames */
#define HEAD_MAX   2048
#define MAX_EVENTS 512
#define TICK_MS    5
#define MAX_MSG    4096

/* RFC 6455 §1.3's example key: every connection may use the same one, and its accept
 * value is known, so no SHA-1 is needed here. */
#define WS_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

enum mode {
    MODE_UP = 0,
    MODE_DOWN,
    MODE_ECHO,
    MODE_IDLE,
    MODE_HANDSHAKE,
};

enum conn_state {
    CONN_CONNECTING = 0,
    CONN_HANDSHAKE, /* request sent, reading the response head */
    CONN_OPEN,      /* relaying */
    CONN_READY,     /* idle mode: the probe came back; holding */
    CONN_CLOSING,   /* our close is out (ws) or our write side is shut (tcp) */
    CONN_DONE,
    CONN_FAILED,
};

enum fail_reason {
    FAIL_CONNECT = 0, /* connect() refused or errored */
    FAIL_STATUS,      /* the upgrade got something else than 101 */
    FAIL_EOF,         /* closed or reset before it was done */
    FAIL_TIMEOUT,
    FAIL_CLIENT_FDS, /* this process ran out of descriptors */
    FAIL_PROTOCOL,   /* a bad response head or frame */
    FAIL_TLS,        /* the TLS handshake failed */
    FAIL_COUNT,
};

static const char *const fail_names[FAIL_COUNT] = {"connect", "status",     "eof",
                                                   "timeout", "client_fds", "protocol", "tls"};

struct conn {
    int fd;
    SSL *ssl;             /* wss only */
    bool tls_done;        /* the TLS handshake finished */
    size_t tls_wire_pend; /* up: wire bytes offered to an SSL_write that must be retried */
    enum conn_state state;
    uint64_t deadline_ns; /* idle mode: this session's step must finish by then */

    /* Small writes (request, messages, pongs, close), sent before any stream bytes. */
    uint8_t out[OUT_MAX];
    uint16_t out_off, out_len;

    char *head; /* the response head while in CONN_HANDSHAKE; owned */
    uint16_t head_len;

    /* Server frame parser. */
    uint8_t hdr[14];
    uint8_t hdr_have;
    bool in_payload;
    uint8_t opcode;
    uint64_t payload_left;
    uint8_t ctl[125];
    uint8_t ctl_len;
    bool close_received;

    /* up: position in the periodic wire stream, where to stop, and the sink's acks. */
    uint64_t wire_pos, wire_end;
    uint64_t sent_payload; /* payload bytes in complete frames once stopped */
    uint8_t ack[16];
    uint8_t ack_have;
    uint64_t acked, ack_errors;
    bool drained;

    /* down/echo/idle: payload received, and what failed to verify. */
    uint64_t rx_payload, rx_errors;

    /* echo/idle: the message in flight. */
    uint64_t msg_offset; /* stream offset of its first byte */
    uint64_t msg_sent_ns;
    uint32_t msg_got;
    bool msg_outstanding;
};

static struct {
    enum mode mode;
    bool is_ws;
    bool is_tls;
    struct sockaddr_in target;
    const char *target_text;
    const char *path;
    bool offer_binary;
    uint32_t conns;
    uint64_t frame;
    double duration_s;
    uint32_t msg;
    uint32_t sessions;
    uint32_t concurrency;
    double timeout_s;
    double drain_s;
    double hold_s;
    double ramp_timeout_s;
    uint8_t mask_key[4];
} opt = {
    .mode = MODE_UP,
    .path = "/",
    .offer_binary = true,
    .conns = 1,
    .frame = 64 * 1024,
    .duration_s = 2.0,
    .msg = 64,
    .sessions = 1000,
    .concurrency = 128,
    .timeout_s = 10.0,
    .drain_s = 2.0,
    .hold_s = 60.0,
    .ramp_timeout_s = 120.0,
};

static int epfd;
static struct conn *conns;
static uint32_t conn_count; /* connections started */
static uint8_t rxbuf[RX_CHUNK];
static char request[1024];
static size_t request_len;

/* up: one period of the wire stream, plus TX_CHUNK of wrap-around slack. */
static uint8_t *wire;
static uint64_t wire_period;
static uint64_t frame_wire; /* wire bytes per frame; 1 for tcp (any byte is a boundary) */
static uint64_t frame_header;

/* The measured phase. */
static bool running;  /* inside the measured window */
static bool stopping; /* past the window: finish what is in flight */
static uint64_t t_start, t_stop;
static uint64_t measured_bytes;
static uint32_t open_count, failed_count;
static uint32_t fails[FAIL_COUNT];

/* echo: round-trip samples in nanoseconds. */
static uint64_t *samples;
static size_t sample_count, sample_cap;

/* idle: ramp progress. */
static uint32_t in_flight, ready_count;
static uint64_t t_first_launch, t_last_ready;
static bool probing; /* idle: the second probe after the hold */
static uint32_t probe_ok, probe_pending;

/* handshake: sessions whose upgrade completed. */
static uint32_t hs_done;

/* wss: one context; what the first connection negotiated; the first TLS error. */
static SSL_CTX *tls_ctx;
static char tls_info[512];
static char tls_error[256];

static void conn_write(struct conn *c);

static double
rusage_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ frames out */

/* Frame header for a masked client frame of 'len' payload bytes. Returns its size. */
static size_t
ws_header_encode(uint8_t *out, uint8_t opcode, uint64_t len)
{
    size_t n = 0;
    out[n++] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(out + n, opt.mask_key, 4);
    return n + 4;
}

/* Queue a small write. Returns false when the queue has no room (a failure: the queue
 * is sized for everything this client sends this way). */
static bool
out_append(struct conn *c, const uint8_t *data, size_t len)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + len > OUT_MAX) {
        memmove(c->out, c->out + c->out_off, (size_t)(c->out_len - c->out_off));
        c->out_len = (uint16_t)(c->out_len - c->out_off);
        c->out_off = 0;
        if (c->out_len + len > OUT_MAX)
            return false;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len = (uint16_t)(c->out_len + len);
    return true;
}

/* Queue one masked frame (or raw bytes for tcp) carrying 'payload'. */
static bool
out_frame(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t buf[14 + MAX_MSG];
    size_t n = 0;

    if (opt.is_ws)
        n = ws_header_encode(buf, opcode, len);
    for (size_t i = 0; i < len; i++)
        buf[n + i] = opt.is_ws ? (uint8_t)(payload[i] ^ opt.mask_key[i & 3]) : payload[i];
    return out_append(c, buf, n + len);
}

/* ------------------------------------------------------------------ lifecycle */

static void
conn_close_fd(struct conn *c)
{
    if (c->ssl != NULL) {
        if (c->tls_done)
            SSL_shutdown(c->ssl); /* one close_notify, not waited for */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd != -1) {
        close(c->fd);
        c->fd = -1;
    }
    free(c->head);
    c->head = NULL;
}

/* Every state change goes through here, so the counters stay true. */
static void
conn_set_state(struct conn *c, enum conn_state to)
{
    enum conn_state from = c->state;
    open_count -= from == CONN_OPEN;
    open_count += to == CONN_OPEN;
    ready_count -= from == CONN_READY;
    ready_count += to == CONN_READY;
    if ((opt.mode == MODE_IDLE || opt.mode == MODE_HANDSHAKE) && from < CONN_READY && to >= CONN_READY)
        in_flight--; /* ready, or given up on */
    c->state = to;
}

static void
conn_fail(struct conn *c, enum fail_reason why)
{
    if (c->state == CONN_FAILED || c->state == CONN_DONE)
        return;
    if (probing && c->msg_outstanding)
        probe_pending--;
    conn_set_state(c, CONN_FAILED);
    failed_count++;
    fails[why]++;
    conn_close_fd(c);
}

static void
conn_done(struct conn *c)
{
    if (c->state == CONN_DONE || c->state == CONN_FAILED)
        return;
    conn_set_state(c, CONN_DONE);
    conn_close_fd(c);
}

/* Drop a connection with a reset: what is queued either way is discarded, so a slow
 * peer does not go on working through it after the run. Not a failure. */
static void
conn_abort(struct conn *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (c->fd != -1)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    conn_done(c);
}

/* Begin our side of the close: a close frame (ws) or shutdown (tcp). */
static void
conn_begin_close(struct conn *c)
{
    if (c->state != CONN_OPEN && c->state != CONN_READY)
        return;
    conn_set_state(c, CONN_CLOSING);
    if (opt.is_ws) {
        static const uint8_t code[2] = {0x03, 0xe8}; /* 1000 */
        out_frame(c, WS_OP_CLOSE, code, sizeof code);
        conn_write(c);
        if (c->close_received && c->out_off == c->out_len)
            conn_done(c);
    } else {
        shutdown(c->fd, SHUT_WR);
    }
}

/* ------------------------------------------------------------------ payload in */

static void
echo_send_next(struct conn *c, uint32_t size)
{
    c->msg_offset = c->rx_payload;
    c->msg_got = 0;
    c->msg_outstanding = true;
    c->msg_sent_ns = now_ns();
    if (!out_frame(c, WS_OP_BINARY, pattern_at(c->msg_offset), size)) {
        conn_fail(c, FAIL_PROTOCOL);
        return;
    }
    conn_write(c);
}

static void
sample_add(uint64_t ns)
{
    if (sample_count == sample_cap) {
        sample_cap = sample_cap ? sample_cap * 2 : 65536;
        samples = realloc(samples, sample_cap * sizeof *samples);
        if (samples == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    samples[sample_count++] = ns;
}

static void
idle_ready(struct conn *c)
{
    uint64_t now = now_ns();
    if (probing) {
        probe_ok++;
        probe_pending--;
        return;
    }
    conn_set_state(c, CONN_READY);
    t_last_ready = now;
}

/* up: once stopped, the connection is done when the sink acknowledged every byte. */
static void
up_check_drained(struct conn *c)
{
    if (stopping && !c->drained && c->state == CONN_OPEN && c->wire_pos == c->wire_end &&
        c->acked >= c->sent_payload) {
        c->drained = true;
        conn_begin_close(c);
    }
}

/* Payload bytes from the peer, whatever framing carried them. */
static void
payload_in(struct conn *c, const uint8_t *p, size_t len)
{
    switch (opt.mode) {
    case MODE_UP:
        /* The sink's acks: 16-byte records, split anywhere by the relays. */
        while (len > 0) {
            size_t take = 16u - c->ack_have;
            if (take > len)
                take = len;
            memcpy(c->ack + c->ack_have, p, take);
            c->ack_have = (uint8_t)(c->ack_have + take);
            p += take;
            len -= take;
            if (c->ack_have == 16) {
                c->acked = c->ack_errors = 0;
                for (int i = 7; i >= 0; i--) {
                    c->acked = (c->acked << 8) | c->ack[i];
                    c->ack_errors = (c->ack_errors << 8) | c->ack[8 + i];
                }
                c->ack_have = 0;
            }
        }
        up_check_drained(c);
        return;
    case MODE_DOWN:
        c->rx_errors += pattern_check(c->rx_payload, p, len);
        c->rx_payload += len;
        if (running)
            measured_bytes += len;
        return;
    case MODE_HANDSHAKE:
        return;
    case MODE_ECHO:
    case MODE_IDLE: {
        uint32_t size = opt.mode == MODE_ECHO ? opt.msg : 16;
        if (!c->msg_outstanding || len > size - c->msg_got) {
            c->rx_errors += len; /* more than we sent */
            conn_fail(c, FAIL_PROTOCOL);
            return;
        }
        c->rx_errors += pattern_check(c->msg_offset + c->msg_got, p, len);
        c->msg_got += (uint32_t)len;
        c->rx_payload += len;
        if (c->msg_got < size)
            return;
        c->msg_outstanding = false;
        if (opt.mode == MODE_IDLE) {
            idle_ready(c);
            return;
        }
        if (running)
            sample_add(now_ns() - c->msg_sent_ns);
        if (running && !stopping)
            echo_send_next(c, size);
        else
            conn_begin_close(c);
        return;
    }
    }
}

/* A complete control frame arrived. */
static void
ws_control(struct conn *c)
{
    switch (c->opcode) {
    case WS_OP_CLOSE:
        c->close_received = true;
        if (c->state == CONN_CLOSING) {
            if (c->out_off == c->out_len)
                conn_done(c);
        } else if (stopping) {
            conn_begin_close(c);
        } else {
            conn_fail(c, FAIL_EOF);
        }
        return;
    case WS_OP_PING:
        /* In up mode the stream is mid-frame at any moment, so a pong could not be
         * slotted in; the benchmark configures gateways not to ping. */
        if (opt.mode != MODE_UP && c->state != CONN_CLOSING) {
            out_frame(c, WS_OP_PONG, c->ctl, c->ctl_len);
            conn_write(c);
        }
        return;
    default:
        return;
    }
}

/* Parse server frames (RFC 6455 §5.2; servers never mask). */
static void
ws_in(struct conn *c, const uint8_t *p, size_t len)
{
    while (len > 0 && c->state != CONN_FAILED && c->state != CONN_DONE) {
        if (!c->in_payload) {
            size_t need = 2;
            if (c->hdr_have >= 2) {
                uint8_t len7 = c->hdr[1] & 0x7f;
                need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
            }
            while (c->hdr_have < need && len > 0) {
                c->hdr[c->hdr_have++] = *p++;
                len--;
                if (c->hdr_have == 2) {
                    uint8_t len7 = c->hdr[1] & 0x7f;
                    need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
                }
            }
            if (c->hdr_have < need)
                return;
            if (c->hdr[1] & 0x80) {
                conn_fail(c, FAIL_PROTOCOL); /* a masked server frame */
                return;
            }
            uint8_t len7 = c->hdr[1] & 0x7f;
            uint64_t plen = len7;
            if (len7 == 126)
                plen = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            else if (len7 == 127)
                for (int i = 0; i < 8; i++)
                    plen = (i == 0 ? 0 : plen << 8) | c->hdr[2 + i];
            c->opcode = c->hdr[0] & 0x0f;
            c->payload_left = plen;
            c->in_payload = true;
            c->ctl_len = 0;
            if (c->opcode >= 0x8 && plen > 125) {
                conn_fail(c, FAIL_PROTOCOL);
                return;
            }
        }
        size_t take = len < c->payload_left ? len : (size_t)c->payload_left;
        if (c->opcode >= 0x8) {
            memcpy(c->ctl + c->ctl_len, p, take);
            c->ctl_len = (uint8_t)(c->ctl_len + take);
        } else if (take > 0 && (c->state != CONN_CLOSING || opt.mode == MODE_UP)) {
            payload_in(c, p, take); /* in up mode a late ack is still an ack */
        }
        p += take;
        len -= take;
        c->payload_left -= take;
        if (c->payload_left == 0) {
            c->in_payload = false;
            c->hdr_have = 0;
            if (c->opcode >= 0x8)
                ws_control(c);
        }
    }
}

/* ------------------------------------------------------------------ handshake */

static void
conn_opened(struct conn *c)
{
    conn_set_state(c, CONN_OPEN);
    if (opt.mode == MODE_IDLE)
        echo_send_next(c, 16);
    if (opt.mode == MODE_HANDSHAKE) {
        hs_done++;
        t_last_ready = now_ns();
        conn_done(c);
    }
}

/* Collect the response head; returns the number of bytes of 'p' it used, or -1 when
 * the connection failed. */
static ssize_t
handshake_in(struct conn *c, const uint8_t *p, size_t len)
{
    size_t room = HEAD_MAX - 1 - c->head_len;
    size_t take = len < room ? len : room;
    memcpy(c->head + c->head_len, p, take);
    size_t old = c->head_len;
    c->head_len = (uint16_t)(c->head_len + take);
    c->head[c->head_len] = '\0';
    char *end = strstr(c->head, "\r\n\r\n");
    if (end == NULL) {
        if (c->head_len == HEAD_MAX - 1) {
            conn_fail(c, FAIL_PROTOCOL);
            return -1;
        }
        return (ssize_t)take;
    }
    size_t head_bytes = (size_t)(end + 4 - c->head);
    if (strncmp(c->head, "HTTP/1.1 101", 12) != 0) {
        conn_fail(c, FAIL_STATUS);
        return -1;
    }
    bool accept_ok = false;
    for (char *line = strstr(c->head, "\r\n"); line != NULL && line < end; line = strstr(line + 2, "\r\n")) {
        static const char name[] = "sec-websocket-accept:";
        if (strncasecmp(line + 2, name, sizeof name - 1) == 0) {
            const char *v = line + 2 + sizeof name - 1;
            while (*v == ' ' || *v == '\t')
                v++;
            accept_ok = strncmp(v, WS_ACCEPT, sizeof WS_ACCEPT - 1) == 0;
        }
    }
    if (!accept_ok) {
        conn_fail(c, FAIL_PROTOCOL);
        return -1;
    }
    free(c->head);
    c->head = NULL;
    conn_opened(c);
    return (ssize_t)(head_bytes - old);
}

/* ------------------------------------------------------------------ TLS */

/* What the first connection negotiated, as JSON members. */
static void
tls_describe(SSL *ssl)
{
    int nid = SSL_get_negotiated_group(ssl);
    const char *group = nid > 0 ? OBJ_nid2sn(nid) : NULL;
    char cert_key[96] = "?";
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (x != NULL) {
        EVP_PKEY *pk = X509_get0_pubkey(x);
        char g[64] = "";
        size_t glen = 0;
        if (pk != NULL) {
            if (EVP_PKEY_get_group_name(pk, g, sizeof g, &glen) != 1)
                g[0] = '\0';
            snprintf(cert_key, sizeof cert_key, "%s%s%s %d bits", EVP_PKEY_get0_type_name(pk), g[0] ? " " : "", g,
                     EVP_PKEY_get_bits(pk));
        }
        X509_free(x);
    }
    int sig_nid = 0;
    const char *sig = SSL_get_peer_signature_nid(ssl, &sig_nid) == 1 ? OBJ_nid2sn(sig_nid) : NULL;
    snprintf(tls_info, sizeof tls_info,
             "\"tls_version\":\"%s\",\"tls_cipher\":\"%s\",\"tls_group\":\"%s\",\"tls_cert_key\":\"%s\","
             "\"tls_sig_hash\":\"%s\"",
             SSL_get_version(ssl), SSL_get_cipher_name(ssl), group ? group : "?", cert_key, sig ? sig : "?");
}

/* Drive the TLS handshake. Returns true once it is done (always for tcp and ws); false
 * while it waits for the socket, or after failing the connection. */
static bool
tls_step(struct conn *c)
{
    if (c->ssl == NULL || c->tls_done)
        return true;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->tls_done = true;
        if (tls_info[0] == '\0')
            tls_describe(c->ssl);
        return true;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return false;
    if (tls_error[0] == '\0') {
        unsigned long code = ERR_peek_error();
        if (code != 0)
            ERR_error_string_n(code, tls_error, sizeof tls_error);
        else
            snprintf(tls_error, sizeof tls_error, "SSL_get_error %d, errno %d", e, errno);
    }
    conn_fail(c, e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN ? FAIL_EOF : FAIL_TLS);
    return false;
}

/* ------------------------------------------------------------------ I/O */

/* write(2) or SSL_write: >0 bytes written; -1 with errno EAGAIN to wait, else failed. */
static ssize_t
io_write(struct conn *c, const void *buf, size_t len)
{
    if (c->ssl == NULL)
        return write(c->fd, buf, len);
    ERR_clear_error();
    int r = SSL_write(c->ssl, buf, len > (1u << 30) ? 1 << 30 : (int)len);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EPIPE;
    return -1;
}

/* read(2) or SSL_read: >0 bytes, 0 at the end, -1 with errno EAGAIN to wait, else failed. */
static ssize_t
io_read(struct conn *c, void *buf, size_t len)
{
    if (c->ssl == NULL)
        return read(c->fd, buf, len);
    ERR_clear_error();
    int r = SSL_read(c->ssl, buf, (int)len);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0))
        return 0;
    errno = ECONNRESET;
    return -1;
}

static void
conn_write(struct conn *c)
{
    if (c->fd == -1 || !tls_step(c))
        return;
    /* An SSL_write of stream bytes that must be retried goes first (same bytes). */
    while (c->tls_wire_pend == 0 && c->out_off < c->out_len) {
        ssize_t n = io_write(c, c->out + c->out_off, (size_t)(c->out_len - c->out_off));
        if (n > 0) {
            c->out_off = (uint16_t)(c->out_off + n);
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && errno == EAGAIN) {
            return;
        } else {
            conn_fail(c, FAIL_EOF);
            return;
        }
    }
    if (c->state == CONN_CLOSING && c->close_received) {
        conn_done(c);
        return;
    }
    if (opt.mode != MODE_UP || !running || c->state != CONN_OPEN)
        return;
    while (c->wire_pos < c->wire_end) {
        uint64_t left = c->wire_end - c->wire_pos;
        size_t chunk = left < TX_CHUNK ? (size_t)left : TX_CHUNK;
        ssize_t n = io_write(c, wire + c->wire_pos % wire_period, chunk);
        if (n > 0) {
            c->wire_pos += (uint64_t)n;
            c->tls_wire_pend = 0;
        } else if (n == -1 && errno == EINTR) {
            continue;
        } else if (n == -1 && errno == EAGAIN) {
            if (c->ssl != NULL)
                c->tls_wire_pend = chunk;
            return;
        } else {
            conn_fail(c, FAIL_EOF);
            return;
        }
    }
}

static void
conn_read(struct conn *c)
{
    if (!tls_step(c))
        return;
    while (c->fd != -1) {
        ssize_t n = io_read(c, rxbuf, sizeof rxbuf);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN)
            return;
        if (n <= 0) {
            /* The peer is gone. That ends a close we started; anything else failed. */
            if (c->state == CONN_CLOSING)
                conn_done(c);
            else
                conn_fail(c, FAIL_EOF);
            return;
        }
        const uint8_t *p = rxbuf;
        size_t len = (size_t)n;
        if (c->state == CONN_HANDSHAKE) {
            ssize_t used = handshake_in(c, p, len);
            if (used < 0 || c->state == CONN_HANDSHAKE)
                continue; /* failed, or the head is still incomplete and all was used */
            p += used;
            len -= (size_t)used;
        }
        if (len == 0 || c->state == CONN_FAILED || c->state == CONN_DONE)
            continue;
        if (opt.is_ws)
            ws_in(c, p, len);
        else if (c->state != CONN_CLOSING || opt.mode == MODE_UP)
            payload_in(c, p, len);
    }
}

static void
conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1 || err != 0) {
        conn_fail(c, FAIL_CONNECT);
        return;
    }
    set_nodelay(c->fd);
    if (!opt.is_ws) {
        conn_opened(c);
        return;
    }
    if (opt.is_tls) {
        static char sni[] = "localhost";
        c->ssl = SSL_new(tls_ctx);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_set_tlsext_host_name(c->ssl, sni) != 1) {
            conn_fail(c, FAIL_TLS);
            return;
        }
        SSL_set_connect_state(c->ssl);
    }
    c->state = CONN_HANDSHAKE;
    c->head = malloc(HEAD_MAX);
    if (c->head == NULL || !out_append(c, (const uint8_t *)request, request_len)) {
        conn_fail(c, FAIL_PROTOCOL);
        return;
    }
    c->head_len = 0;
    conn_write(c);
}

static void
conn_event(struct conn *c, uint32_t events)
{
    if (c->state == CONN_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        conn_connected(c);
        if (c->state == CONN_FAILED)
            return;
    }
    if (c->ssl != NULL) {
        /* TLS reads may need writes and the other way round (the handshake, tickets):
         * with edge triggering, try both on every event. */
        conn_read(c);
        if (c->fd != -1)
            conn_write(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_read(c);
    if ((events & EPOLLOUT) && c->fd != -1)
        conn_write(c);
}

/* Start one connection. Returns false when this process is out of descriptors. */
static bool
conn_launch(struct conn *c, uint64_t now)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->wire_end = UINT64_MAX;
    c->deadline_ns = now + (uint64_t)(opt.timeout_s * 1e9);
    c->state = CONN_CONNECTING;
    conn_count++;
    int fd = connect_start(&opt.target);
    if (fd == -1) {
        bool out_of_fds = errno == EMFILE || errno == ENFILE;
        conn_fail(c, out_of_fds ? FAIL_CLIENT_FDS : FAIL_CONNECT);
        return !out_of_fds;
    }
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        conn_fail(c, FAIL_CLIENT_FDS);
        return false;
    }
    return true;
}

static void
poll_once(int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++)
        conn_event(events[i].data.ptr, events[i].events);
}

/* ------------------------------------------------------------------ the modes */

static void
build_wire(void)
{
    if (!opt.is_ws) {
        frame_wire = 1;
        frame_header = 0;
        wire_period = PATTERN_PERIOD;
        wire = malloc(wire_period + TX_CHUNK);
        memcpy(wire, pattern_at(0), PATTERN_PERIOD);
        memcpy(wire + wire_period, pattern_at(0), TX_CHUNK);
        return;
    }
    uint8_t hdr[14];
    frame_header = ws_header_encode(hdr, WS_OP_BINARY, opt.frame);
    frame_wire = frame_header + opt.frame;
    uint64_t frames = PATTERN_PERIOD / opt.frame;
    wire_period = frames * frame_wire;
    wire = malloc(wire_period + TX_CHUNK);
    if (wire == NULL) {
        perror("malloc");
        exit(1);
    }
    /* The frame size is a multiple of 4, so every frame starts at mask phase 0 and the
     * masked payload of a period is computed once and written over and over. */
    uint8_t *w = wire;
    for (uint64_t f = 0; f < frames; f++) {
        memcpy(w, hdr, frame_header);
        w += frame_header;
        const uint8_t *src = pattern_at(f * opt.frame);
        for (uint64_t i = 0; i < opt.frame; i++)
            w[i] = src[i] ^ opt.mask_key[i & 3];
        w += opt.frame;
    }
    memcpy(wire + wire_period, wire, TX_CHUNK);
}

static void
connect_all(void)
{
    uint64_t now = now_ns();
    uint64_t deadline = now + (uint64_t)(opt.timeout_s * 1e9);
    for (uint32_t i = 0; i < opt.conns; i++)
        conn_launch(&conns[i], now);
    while (open_count + failed_count < opt.conns && now_ns() < deadline)
        poll_once(TICK_MS);
    for (uint32_t i = 0; i < opt.conns; i++)
        if (conns[i].state < CONN_OPEN)
            conn_fail(&conns[i], FAIL_TIMEOUT);
}

/* Wait for every connection to finish its close, up to a deadline. */
static void
close_all(double timeout_s)
{
    for (uint32_t i = 0; i < conn_count; i++)
        conn_begin_close(&conns[i]);
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    while (now_ns() < deadline) {
        bool pending = false;
        for (uint32_t i = 0; i < conn_count && !pending; i++)
            pending = conns[i].state == CONN_CLOSING;
        if (!pending)
            break;
        poll_once(TICK_MS);
    }
    for (uint32_t i = 0; i < conn_count; i++)
        if (conns[i].state == CONN_CLOSING)
            conn_done(&conns[i]); /* the peer was slow to confirm; the data is already in */
}

/* Tell whoever watches stdout that the measured window opens or closes, so it can take
 * its own readings (the gateway's CPU) over the same window. */
static void
mark(const char *event)
{
    printf("{\"event\":\"%s\"}\n", event);
    fflush(stdout);
}

static void
print_common(const char *mode, uint64_t seconds_ns, double cpu_s)
{
    double secs = (double)seconds_ns / 1e9;
    printf("{\"mode\":\"%s\",\"proto\":\"%s\",\"target\":\"%s\",\"conns\":%u,\"seconds\":%.4f,"
           "\"cpu_s\":%.4f,\"cpu_pct\":%.1f,\"failed\":%u",
           mode, opt.is_tls ? "wss" : opt.is_ws ? "ws" : "tcp", opt.target_text,
           opt.mode == MODE_IDLE || opt.mode == MODE_HANDSHAKE ? opt.sessions : opt.conns, secs, cpu_s,
           secs > 0 ? 100.0 * cpu_s / secs : 0.0, failed_count);
    if (tls_info[0])
        printf(",%s", tls_info);
    if (tls_error[0])
        printf(",\"tls_error\":\"%s\"", tls_error);
    printf(",\"fail_reasons\":{");
    bool first = true;
    for (int i = 0; i < FAIL_COUNT; i++) {
        if (fails[i] == 0)
            continue;
        printf("%s\"%s\":%u", first ? "" : ",", fail_names[i], fails[i]);
        first = false;
    }
    printf("}");
}

static int
run_stream(void)
{
    const char *name = opt.mode == MODE_UP ? "up" : "down";
    connect_all();
    if (open_count == 0) {
        print_common(name, 0, 0);
        printf(",\"bytes\":0,\"mbps\":0,\"errors\":0}\n");
        return 1;
    }
    mark("start");
    double cpu0 = rusage_cpu_s();
    t_start = now_ns();
    running = true;
    uint64_t window_end = t_start + (uint64_t)(opt.duration_s * 1e9);
    for (uint32_t i = 0; i < opt.conns; i++)
        conn_write(&conns[i]);
    while (now_ns() < window_end)
        poll_once(TICK_MS);

    /* The figure is what reached the far end inside the window: for up, what the sink
     * had acknowledged (acks are at most --ack-ms late); for down, what we received. */
    t_stop = now_ns();
    double cpu_s = rusage_cpu_s() - cpu0;
    mark("stop");
    uint64_t bytes = 0, errors = 0, undrained = 0;
    for (uint32_t i = 0; i < opt.conns; i++)
        bytes += opt.mode == MODE_UP ? conns[i].acked : 0;
    if (opt.mode == MODE_DOWN)
        bytes = measured_bytes;
    running = opt.mode == MODE_UP; /* up keeps writing to the end of the current frame */
    stopping = true;

    if (opt.mode == MODE_UP) {
        /* Then every byte sent must be acknowledged as intact, given --drain seconds
         * (a slow gateway may hold many megabytes in socket buffers; what it has not
         * delivered by then is reported, not waited for). */
        for (uint32_t i = 0; i < opt.conns; i++) {
            struct conn *c = &conns[i];
            /* Bytes offered to an SSL_write that must be retried will be sent. */
            uint64_t committed = c->wire_pos + c->tls_wire_pend;
            c->wire_end = (committed + frame_wire - 1) / frame_wire * frame_wire;
            c->sent_payload = c->wire_end / frame_wire * (frame_wire - frame_header);
            conn_write(c);
            up_check_drained(c);
        }
        uint64_t deadline = now_ns() + (uint64_t)(opt.drain_s * 1e9);
        for (;;) {
            uint32_t pending = 0;
            for (uint32_t i = 0; i < opt.conns; i++)
                pending += conns[i].state == CONN_OPEN && !conns[i].drained;
            if (pending == 0 || now_ns() >= deadline)
                break;
            poll_once(TICK_MS);
        }
        for (uint32_t i = 0; i < opt.conns; i++) {
            struct conn *c = &conns[i];
            errors += c->ack_errors;
            if (c->drained && c->acked != c->sent_payload)
                errors++; /* the sink saw more than we sent */
            if (c->state == CONN_OPEN && !c->drained) {
                undrained += c->sent_payload > c->acked ? c->sent_payload - c->acked : 0;
                conn_abort(c);
            }
        }
    } else {
        for (uint32_t i = 0; i < opt.conns; i++)
            errors += conns[i].rx_errors;
    }
    running = false;
    close_all(1.0);
    uint64_t elapsed = t_stop - t_start;
    print_common(name, elapsed, cpu_s);
    printf(",\"frame\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"mbps\":%.2f,\"errors\":%" PRIu64
           ",\"undrained\":%" PRIu64 "}\n",
           opt.mode == MODE_UP ? opt.frame : 0, bytes,
           elapsed ? (double)bytes / ((double)elapsed / 1e9) / 1e6 : 0.0, errors, undrained);
    return errors == 0 && failed_count == 0 ? 0 : 1;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double
percentile_us(double p)
{
    if (sample_count == 0)
        return 0;
    size_t rank = (size_t)(p * (double)sample_count + 0.999999);
    if (rank == 0)
        rank = 1;
    if (rank > sample_count)
        rank = sample_count;
    return (double)samples[rank - 1] / 1e3;
}

static int
run_echo(void)
{
    connect_all();
    mark("start");
    double cpu0 = rusage_cpu_s();
    t_start = now_ns();
    running = true;
    uint64_t window_end = t_start + (uint64_t)(opt.duration_s * 1e9);
    for (uint32_t i = 0; i < opt.conns; i++)
        if (conns[i].state == CONN_OPEN)
            echo_send_next(&conns[i], opt.msg);
    while (now_ns() < window_end)
        poll_once(TICK_MS);
    t_stop = now_ns();
    mark("stop");
    stopping = true; /* the round trips in flight complete and are counted, then close */
    uint64_t deadline = now_ns() + (uint64_t)(opt.timeout_s * 1e9);
    for (;;) {
        bool pending = false;
        for (uint32_t i = 0; i < opt.conns && !pending; i++)
            pending = conns[i].state == CONN_OPEN && conns[i].msg_outstanding;
        if (!pending || now_ns() >= deadline)
            break;
        poll_once(TICK_MS);
    }
    running = false;
    double cpu_s = rusage_cpu_s() - cpu0;
    uint64_t errors = 0;
    for (uint32_t i = 0; i < opt.conns; i++) {
        if (conns[i].state == CONN_OPEN && conns[i].msg_outstanding)
            conn_fail(&conns[i], FAIL_TIMEOUT);
        errors += conns[i].rx_errors;
    }
    close_all(1.0);
    qsort(samples, sample_count, sizeof *samples, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < sample_count; i++)
        sum += (double)samples[i];
    double secs = (double)(t_stop - t_start) / 1e9;
    print_common("echo", t_stop - t_start, cpu_s);
    printf(",\"msg\":%u,\"round_trips\":%zu,\"rate\":%.1f,\"mean_us\":%.2f,\"p50_us\":%.2f,\"p99_us\":%.2f,"
           "\"p999_us\":%.2f,\"max_us\":%.2f,\"errors\":%" PRIu64 "}\n",
           opt.msg, sample_count, secs > 0 ? (double)sample_count / secs : 0,
           sample_count ? sum / (double)sample_count / 1e3 : 0, percentile_us(0.50), percentile_us(0.99),
           percentile_us(0.999), sample_count ? (double)samples[sample_count - 1] / 1e3 : 0, errors);
    return errors == 0 && failed_count == 0 && sample_count > 0 ? 0 : 1;
}

/* Fail every connection of the current step whose deadline passed. */
static void
expire(uint64_t now)
{
    for (uint32_t i = 0; i < conn_count; i++) {
        struct conn *c = &conns[i];
        bool waiting = c->state < CONN_READY || (probing && c->state == CONN_READY && c->msg_outstanding);
        if (waiting && c->fd != -1 && now >= c->deadline_ns)
            conn_fail(c, FAIL_TIMEOUT);
    }
}

/* Wait for a line (or EOF) on stdin, at most 'timeout_s'; sessions are watched meanwhile. */
static void
hold(double timeout_s)
{
    struct conn marker = {.fd = 0};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &marker};
    bool watch = epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) == 0;
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    while (now_ns() < deadline) {
        struct epoll_event events[MAX_EVENTS];
        int n = epoll_wait(epfd, events, MAX_EVENTS, 50);
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &marker) {
                char line[64];
                (void)!read(0, line, sizeof line);
                epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
                return;
            }
            conn_event(events[i].data.ptr, events[i].events);
        }
    }
    if (watch)
        epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
}

/* idle and handshake modes: open --sessions sessions, --concurrency at a time, until all
 * have finished setting up or --ramp-timeout passes (or descriptors run out). Returns the
 * time from the first launch to the last session ready; *cpu_s is our CPU meanwhile. */
static uint64_t
launch_sessions(double *cpu_s)
{
    uint64_t deadline = now_ns() + (uint64_t)(opt.ramp_timeout_s * 1e9);
    bool out_of_fds = false;
    double cpu0 = rusage_cpu_s();

    t_first_launch = now_ns();
    for (;;) {
        uint64_t now = now_ns();
        while (!out_of_fds && conn_count < opt.sessions && in_flight < opt.concurrency && now < deadline) {
            in_flight++;
            if (!conn_launch(&conns[conn_count], now))
                out_of_fds = true;
        }
        if ((conn_count == opt.sessions || out_of_fds || now >= deadline) && in_flight == 0)
            break;
        poll_once(TICK_MS);
        expire(now_ns());
    }
    *cpu_s = rusage_cpu_s() - cpu0;
    return (t_last_ready > t_first_launch ? t_last_ready : now_ns()) - t_first_launch;
}

static int
run_idle(void)
{
    double cpu_s;
    uint64_t ramp_ns = launch_sessions(&cpu_s);
    uint32_t ramp_failed = failed_count;
    print_common("idle", ramp_ns, cpu_s);
    printf(",\"phase\":\"ramp\",\"attempted\":%u,\"ready\":%u,\"hs_per_s\":%.1f}\n", conn_count, ready_count,
           ramp_ns ? (double)ready_count / ((double)ramp_ns / 1e9) : 0);
    fflush(stdout);

    /* Every held session must still relay: one more probe each. */
    uint32_t ready_after_ramp = ready_count;
    hold(opt.hold_s);
    uint32_t held_before_probe = ready_count;
    probing = true;
    uint64_t now = now_ns();
    for (uint32_t i = 0; i < conn_count; i++) {
        struct conn *c = &conns[i];
        if (c->state != CONN_READY)
            continue;
        c->deadline_ns = now + (uint64_t)(opt.timeout_s * 1e9);
        probe_pending++;
        echo_send_next(c, 16);
    }
    while (probe_pending > 0) {
        poll_once(TICK_MS);
        expire(now_ns());
    }
    uint64_t errors = 0;
    for (uint32_t i = 0; i < conn_count; i++)
        errors += conns[i].rx_errors;
    print_common("idle", ramp_ns, cpu_s);
    printf(",\"phase\":\"final\",\"attempted\":%u,\"ready\":%u,\"ramp_failed\":%u,\"dropped_in_hold\":%u,"
           "\"held\":%u,\"hs_per_s\":%.1f,\"errors\":%" PRIu64 "}\n",
           conn_count, ready_after_ramp, ramp_failed, ready_after_ramp - held_before_probe, probe_ok,
           ramp_ns ? (double)ready_after_ramp / ((double)ramp_ns / 1e9) : 0, errors);
    fflush(stdout);
    return 0;
}

/* Open --sessions sessions, --concurrency at a time; each does TCP, TLS (wss) and the
 * upgrade and is closed as soon as its 101 is in. */
static int
run_handshake(void)
{
    double cpu_s;
    uint64_t elapsed = launch_sessions(&cpu_s);
    print_common("handshake", elapsed, cpu_s);
    printf(",\"attempted\":%u,\"done\":%u,\"concurrency\":%u,\"hs_per_s\":%.1f}\n", conn_count, hs_done,
           opt.concurrency, elapsed ? (double)hs_done / ((double)elapsed / 1e9) : 0);
    fflush(stdout);
    return failed_count == 0 && hs_done == opt.sessions ? 0 : 1;
}

/* ------------------------------------------------------------------ main */

static void
usage(void)
{
    fprintf(stderr,
            "usage: loadgen --mode up|down|echo|idle|handshake --proto tcp|ws|wss --target HOST:PORT [options]\n"
            "  --path P            request path for ws (default /)\n"
            "  --no-subprotocol    do not offer the \"binary\" subprotocol\n"
            "  --conns N           connections (up, down, echo; default 1)\n"
            "  --frame SIZE        up: payload per ws frame, a power of two >= 4 (default 64k)\n"
            "  --duration S        measured window in seconds (default 2)\n"
            "  --msg SIZE          echo: message size (default 64, at most 4096)\n"
            "  --sessions N        idle, handshake: sessions to open (default 1000)\n"
            "  --concurrency N     idle, handshake: sessions being set up at once (default 128)\n"
            "  --timeout S         per-step timeout (default 10)\n"
            "  --drain S           up: how long to wait for the sink to acknowledge the rest (default 2)\n"
            "  --hold S            idle: longest wait for a line on stdin (default 60)\n"
            "  --ramp-timeout S    idle: stop opening sessions after this long (default 120)\n"
            "Prints one JSON line per result (idle: one after the ramp, one at the end).\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *mode = NULL, *proto = "tcp";

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t size;
        if (strcmp(a, "--no-subprotocol") == 0) {
            opt.offer_binary = false;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--mode") == 0)
            mode = v;
        else if (strcmp(a, "--proto") == 0)
            proto = v;
        else if (strcmp(a, "--target") == 0)
            opt.target_text = v;
        else if (strcmp(a, "--path") == 0)
            opt.path = v;
        else if (strcmp(a, "--conns") == 0)
            opt.conns = (uint32_t)atoi(v);
        else if (strcmp(a, "--frame") == 0 && size_parse(v, &size) == 0)
            opt.frame = size;
        else if (strcmp(a, "--duration") == 0)
            opt.duration_s = atof(v);
        else if (strcmp(a, "--msg") == 0 && size_parse(v, &size) == 0)
            opt.msg = (uint32_t)size;
        else if (strcmp(a, "--sessions") == 0)
            opt.sessions = (uint32_t)atoi(v);
        else if (strcmp(a, "--concurrency") == 0)
            opt.concurrency = (uint32_t)atoi(v);
        else if (strcmp(a, "--timeout") == 0)
            opt.timeout_s = atof(v);
        else if (strcmp(a, "--drain") == 0)
            opt.drain_s = atof(v);
        else if (strcmp(a, "--hold") == 0)
            opt.hold_s = atof(v);
        else if (strcmp(a, "--ramp-timeout") == 0)
            opt.ramp_timeout_s = atof(v);
        else
            usage();
    }
    if (mode == NULL || opt.target_text == NULL)
        usage();
    if (strcmp(mode, "up") == 0)
        opt.mode = MODE_UP;
    else if (strcmp(mode, "down") == 0)
        opt.mode = MODE_DOWN;
    else if (strcmp(mode, "echo") == 0)
        opt.mode = MODE_ECHO;
    else if (strcmp(mode, "idle") == 0)
        opt.mode = MODE_IDLE;
    else if (strcmp(mode, "handshake") == 0)
        opt.mode = MODE_HANDSHAKE;
    else
        usage_error("loadgen", "unknown mode %s", mode);
    if (strcmp(proto, "ws") == 0)
        opt.is_ws = true;
    else if (strcmp(proto, "wss") == 0)
        opt.is_ws = opt.is_tls = true;
    else if (strcmp(proto, "tcp") != 0)
        usage_error("loadgen", "unknown protocol %s (tcp, ws or wss)", proto);
    if (addr_parse(opt.target_text, &opt.target) == -1)
        usage_error("loadgen", "bad target %s", opt.target_text);
    if (opt.frame < 4 || opt.frame > PATTERN_PERIOD || (opt.frame & (opt.frame - 1)) != 0)
        usage_error("loadgen", "--frame must be a power of two between 4 and 1M");
    if (opt.msg == 0 || opt.msg > MAX_MSG)
        usage_error("loadgen", "--msg must be 1..%d", MAX_MSG);
    if (opt.conns == 0 || opt.sessions == 0 || opt.concurrency == 0)
        usage_error("loadgen", "counts must be positive");

    signal(SIGPIPE, SIG_IGN);
    pattern_init();
    /* A fixed random key per run: masking is done once, in build_wire(). */
    FILE *ur = fopen("/dev/urandom", "rb");
    if (ur == NULL || fread(opt.mask_key, 1, 4, ur) != 4)
        memcpy(opt.mask_key, "\x37\xfa\x21\x3d", 4);
    if (ur != NULL)
        fclose(ur);
    request_len = (size_t)snprintf(
        request, sizeof request,
        "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
        opt.path, opt.target_text, opt.offer_binary ? "Sec-WebSocket-Protocol: binary\r\n" : "");
    if (request_len >= OUT_MAX)
        usage_error("loadgen", "path too long");

    if (opt.is_tls) {
        /* TLS 1.3 only; no verification (loopback, a throwaway certificate); no session
         * reuse, so every handshake is a full one. */
        tls_ctx = SSL_CTX_new(TLS_client_method());
        if (tls_ctx == NULL || SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION) != 1) {
            fprintf(stderr, "loadgen: cannot set up TLS\n");
            return 1;
        }
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    uint32_t total = opt.mode == MODE_IDLE || opt.mode == MODE_HANDSHAKE ? opt.sessions : opt.conns;
    conns = calloc(total, sizeof *conns);
    if (epfd == -1 || conns == NULL) {
        perror("setup");
        return 1;
    }
    if (opt.mode == MODE_UP)
        build_wire();

    switch (opt.mode) {
    case MODE_UP:
    case MODE_DOWN:
        return run_stream();
    case MODE_ECHO:
        return run_echo();
    case MODE_IDLE:
        return run_idle();
    case MODE_HANDSHAKE:
        return run_handshake();
    }
    return 1;
}
