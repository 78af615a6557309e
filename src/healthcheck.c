/* healthcheck.c - `wsplice --healthcheck URL`: a blocking WebSocket client that performs one
 * opening handshake (RFC 6455 §4.1) against a gateway and closes it again. It is a separate
 * short-lived mode for container health checks, not a general client: no TLS, no payload. */
#include "healthcheck.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "http_upgrade.h"
#include "ws_frame.h"

#define HEALTHCHECK_HOST_MAX   256
#define HEALTHCHECK_PATH_MAX   1024
#define HEALTHCHECK_ANSWER_MAX 8192
#define HEALTHCHECK_KEY_BYTES  16 /* §4.1: a random 16-byte value, base64-encoded */
#define HEALTHCHECK_LINGER_MS  2000

struct healthcheck_url {
    char host[HEALTHCHECK_HOST_MAX];      /* without IPv6 brackets, for getaddrinfo */
    char port[8];                         /* "80" unless given */
    char authority[HEALTHCHECK_HOST_MAX]; /* as written in the URL, for the Host header */
    char path[HEALTHCHECK_PATH_MAX];      /* "/" when absent */
};

static void healthcheck_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
healthcheck_fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "wsplice: healthcheck: unhealthy: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ws://host[:port][/path]. Returns 0, or -1 with a reason in 'why'. */
static int
healthcheck_url_parse(const char *url, struct healthcheck_url *u, const char **why)
{
    const char *p, *auth, *auth_end, *host, *host_end, *port = NULL;

    if (strncasecmp(url, "ws://", 5) != 0) {
        *why = strncasecmp(url, "wss://", 6) == 0 ? "wss:// is not supported; check a plain ws:// listener"
                                                  : "expected ws://host[:port][/path]";
        return -1;
    }
    auth = url + 5;
    auth_end = auth + strcspn(auth, "/?#");
    if (auth == auth_end || (size_t)(auth_end - auth) >= sizeof u->authority) {
        *why = "missing or overlong host";
        return -1;
    }
    host = auth;
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL) {
            *why = "unterminated [IPv6] host";
            return -1;
        }
        host++;
        p = host_end + 1;
    } else {
        host_end = memchr(host, ':', (size_t)(auth_end - host));
        if (host_end == NULL)
            host_end = auth_end;
        p = host_end;
    }
    if (p < auth_end) {
        if (*p != ':' || p + 1 == auth_end || auth_end - (p + 1) > 5) {
            *why = "bad port";
            return -1;
        }
        port = p + 1;
        for (const char *q = port; q < auth_end; q++)
            if (*q < '0' || *q > '9') {
                *why = "bad port";
                return -1;
            }
    }
    if (host == host_end) {
        *why = "missing host";
        return -1;
    }
    memcpy(u->authority, auth, (size_t)(auth_end - auth));
    u->authority[auth_end - auth] = '\0';
    memcpy(u->host, host, (size_t)(host_end - host));
    u->host[host_end - host] = '\0';
    if (port != NULL) {
        memcpy(u->port, port, (size_t)(auth_end - port));
        u->port[auth_end - port] = '\0';
    } else {
        strcpy(u->port, "80");
    }
    if (*auth_end == '\0') {
        strcpy(u->path, "/");
        return 0;
    }
    if (*auth_end != '/' || strlen(auth_end) >= sizeof u->path) {
        *why = *auth_end != '/' ? "the path must start with '/'" : "overlong path";
        return -1;
    }
    for (const char *q = auth_end; *q != '\0'; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f) {
            *why = "space or control character in the path";
            return -1;
        }
    strcpy(u->path, auth_end);
    return 0;
}

static int
healthcheck_connect(const struct healthcheck_url *u)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res, *ai;
    struct timeval tv = {HEALTHCHECK_TIMEOUT_S, 0};
    int fd = -1, err, saved = 0;

    err = getaddrinfo(u->host, u->port, &hints, &res);
    if (err != 0) {
        healthcheck_fail("cannot resolve %s: %s", u->host, gai_strerror(err));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd == -1) {
            saved = errno;
            continue;
        }
        /* On Linux SO_SNDTIMEO bounds connect() too. */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd == -1)
        healthcheck_fail("cannot connect to %s: %s", u->authority,
                         saved == EINPROGRESS || saved == EAGAIN ? "timed out" : strerror(saved));
    return fd;
}

static int
healthcheck_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void
healthcheck_random(uint8_t *out, size_t len)
{
    ssize_t n = getrandom(out, len, 0);

    if (n != (ssize_t)len) { /* a health probe's key need not be secret; never fail on it */
        unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
        for (size_t i = 0; i < len; i++)
            out[i] = (uint8_t)rand_r(&seed);
    }
}

/* Read until the blank line ending the answer's head. Returns the head length (blank line
 * included), or -1 after printing why. */
static long
healthcheck_read_head(int fd, char *buf, size_t cap, size_t *got, const char *url)
{
    *got = 0;
    for (;;) {
        buf[*got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end != NULL)
            return end + 4 - buf;
        if (*got + 1 >= cap) {
            healthcheck_fail("%s: answer head over %zu bytes", url, cap - 1);
            return -1;
        }
        ssize_t n = recv(fd, buf + *got, cap - 1 - *got, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            healthcheck_fail("%s: %s", url,
                             errno == EAGAIN || errno == EWOULDBLOCK ? "no answer within the timeout"
                                                                     : strerror(errno));
            return -1;
        }
        if (n == 0) {
            healthcheck_fail("%s: connection closed after %zu bytes, without a complete HTTP answer", url,
                             *got);
            return -1;
        }
        if (memchr(buf + *got, '\0', (size_t)n) != NULL) {
            healthcheck_fail("%s: NUL byte in the answer", url);
            return -1;
        }
        *got += (size_t)n;
    }
}

/* "HTTP/1.x NNN ...". Returns the status, or -1. */
static int
healthcheck_parse_status(const char *head)
{
    if (strncmp(head, "HTTP/1.", 7) != 0 || head[7] < '0' || head[7] > '9' || head[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++)
        if (head[i] < '0' || head[i] > '9')
            return -1;
    if (head[12] != ' ' && head[12] != '\r')
        return -1;
    return (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
}

/* The value of header 'name' in 'head' (CRLF lines), trimmed, copied into 'out'.
 * Returns 1 found, 0 absent, -1 if a header line is malformed. */
static int
healthcheck_header(const char *head, const char *name, char *out, size_t cap)
{
    const char *line = strstr(head, "\r\n") + 2; /* the caller checked the head ends in CRLFCRLF */
    size_t name_len = strlen(name);
    int found = 0;

    while (strncmp(line, "\r\n", 2) != 0) {
        const char *eol = strstr(line, "\r\n");
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon == NULL || colon == line)
            return -1;
        if ((size_t)(colon - line) == name_len && strncasecmp(line, name, name_len) == 0) {
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t n = (size_t)(ve - v) < cap - 1 ? (size_t)(ve - v) : cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            found = 1;
        }
        line = eol + 2;
    }
    return found;
}

/* Close 1000 as a client frame: masked (§5.3), unlike what ws_close_encode() writes. */
static int
healthcheck_send_close(int fd)
{
    static const char reason[] = "healthcheck";
    uint8_t server[2 + WS_MAX_CONTROL_PAYLOAD];
    uint8_t frame[2 + 4 + WS_MAX_CONTROL_PAYLOAD];
    size_t len = ws_close_encode(server, WS_CLOSE_NORMAL, reason, sizeof reason - 1);
    size_t payload_len = len - 2; /* a control payload always has the 2-byte header form */

    frame[0] = server[0];
    frame[1] = (uint8_t)(server[1] | 0x80);
    healthcheck_random(frame + 2, 4);
    for (size_t i = 0; i < payload_len; i++)
        frame[6 + i] = server[2 + i] ^ frame[2 + i % 4];
    return healthcheck_send_all(fd, frame, 6 + payload_len);
}

/* The server closes TCP first (§7.1.1): wait briefly for that, so the gateway logs a
 * clean close rather than a vanished client. Frames the backend sent meanwhile are
 * discarded. The verdict is already made; nothing here changes it. */
static void
healthcheck_linger(int fd)
{
    struct timeval tv = {HEALTHCHECK_LINGER_MS / 1000, (HEALTHCHECK_LINGER_MS % 1000) * 1000};
    char buf[4096];

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 256; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
    }
}

/* Peer bytes for the one-line verdict: cut at 'max' and at the first line end, with
 * anything unprintable shown as '?'. Edits 'text' in place. */
static const char *
healthcheck_printable(char *text, size_t max)
{
    size_t i;

    for (i = 0; i < max && text[i] != '\0' && text[i] != '\r' && text[i] != '\n'; i++)
        if ((unsigned char)text[i] < ' ' || (unsigned char)text[i] >= 0x7f)
            text[i] = '?';
    text[i] = '\0';
    return text;
}

static const char *
healthcheck_status_meaning(int status)
{
    switch (status) {
    case 404:
        return "no route for this path";
    case 502:
        return "the route's backend refused or is unreachable";
    case 503:
        return "a session limit is reached";
    case 504:
        return "the route's backend timed out";
    default:
        return "not an upgrade";
    }
}

int
healthcheck_run(const char *url, bool strict)
{
    struct healthcheck_url u;
    uint8_t key_bytes[HEALTHCHECK_KEY_BYTES];
    char key[BASE64_ENCODED_LEN(HEALTHCHECK_KEY_BYTES) + 1];
    char expect[HTTP_ACCEPT_LEN + 1], accept[HTTP_ACCEPT_LEN + 8];
    char req[HEALTHCHECK_PATH_MAX + HEALTHCHECK_HOST_MAX + 256];
    char answer[HEALTHCHECK_ANSWER_MAX];
    const char *why = NULL;
    size_t got;
    int fd, status, n, rc = 1;

    if (healthcheck_url_parse(url, &u, &why) == -1) {
        healthcheck_fail("bad URL '%s': %s", url, why);
        return 1;
    }
    healthcheck_random(key_bytes, sizeof key_bytes);
    key[base64_encode(key_bytes, sizeof key_bytes, key)] = '\0';
    if (http_upgrade_accept_key(key, strlen(key), expect) == -1) {
        healthcheck_fail("cannot compute Sec-WebSocket-Accept (libcrypto)");
        return 1;
    }
    fd = healthcheck_connect(&u);
    if (fd == -1)
        return 1;
    n = snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "User-Agent: wsplice-healthcheck\r\n\r\n",
                 u.path, u.authority, key);
    if (healthcheck_send_all(fd, req, (size_t)n) == -1) {
        healthcheck_fail("%s: sending the request: %s", url, strerror(errno));
        goto done;
    }
    if (healthcheck_read_head(fd, answer, sizeof answer, &got, url) == -1)
        goto done;
    status = healthcheck_parse_status(answer);
    if (status == -1) {
        healthcheck_fail("%s: the answer is not HTTP/1.x: '%s'", url, healthcheck_printable(answer, 40));
        goto done;
    }
    if (status != 101) {
        /* Looking up any header checks that every header line is well formed. */
        if (healthcheck_header(answer, "Connection", accept, sizeof accept) == -1) {
            healthcheck_fail("%s: malformed header line in the %d answer", url, status);
            goto done;
        }
        if (strict) {
            healthcheck_fail("%s answered %d %s (%s; --healthcheck-strict wants 101)", url, status,
                             http_status_phrase(status), healthcheck_status_meaning(status));
            goto done;
        }
        printf("wsplice: healthcheck: healthy: %s answered %d %s (gateway up; %s)\n", url, status,
               http_status_phrase(status), healthcheck_status_meaning(status));
        rc = 0;
        goto done;
    }
    switch (healthcheck_header(answer, "Sec-WebSocket-Accept", accept, sizeof accept)) {
    case -1:
        healthcheck_fail("%s: malformed header line in the 101 answer", url);
        goto done;
    case 0:
        healthcheck_fail("%s: 101 without Sec-WebSocket-Accept", url);
        goto done;
    default:
        break;
    }
    if (strcmp(accept, expect) != 0) {
        healthcheck_fail("%s: 101 with Sec-WebSocket-Accept '%s', expected '%s'", url,
                         healthcheck_printable(accept, 40), expect);
        goto done;
    }
    if (healthcheck_send_close(fd) == -1) {
        healthcheck_fail("%s: sending close after 101: %s", url, strerror(errno));
        goto done;
    }
    healthcheck_linger(fd);
    printf("wsplice: healthcheck: healthy: %s answered 101 Switching Protocols (backend connected)\n", url);
    rc = 0;
done:
    close(fd);
    return rc;
}
