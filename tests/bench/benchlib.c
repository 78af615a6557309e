/* benchlib.c - the shared payload pattern, clock and socket setup of the benchmark
 * tools. */
#include "benchlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint8_t *pattern;

void
pattern_init(void)
{
    if (pattern != NULL)
        return;
    pattern = malloc(PATTERN_PERIOD + PATTERN_SLACK);
    if (pattern == NULL) {
        perror("malloc");
        exit(1);
    }
    /* xorshift64*: cheap, and no short sub-period that a dropped or repeated frame
     * could hide in. The seed is fixed so every process agrees. */
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < PATTERN_PERIOD; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545f4914f6cdd1du;
        memcpy(pattern + i, &v, 8);
    }
    memcpy(pattern + PATTERN_PERIOD, pattern, PATTERN_SLACK);
}

const uint8_t *
pattern_at(uint64_t offset)
{
    return pattern + (offset & (PATTERN_PERIOD - 1));
}

uint64_t
pattern_check(uint64_t offset, const uint8_t *buf, size_t len)
{
    uint64_t bad = 0;

    while (len > 0) {
        size_t n = len < PATTERN_SLACK ? len : PATTERN_SLACK;
        const uint8_t *want = pattern_at(offset);
        if (memcmp(buf, want, n) != 0) {
            for (size_t i = 0; i < n; i++)
                bad += buf[i] != want[i];
        }
        buf += n;
        offset += n;
        len -= n;
    }
    return bad;
}

uint64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
addr_parse(const char *text, struct sockaddr_in *out)
{
    const char *colon = strrchr(text, ':');
    char host[64];

    if (colon == NULL || (size_t)(colon - text) >= sizeof host)
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
        return -1;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (host[0] == '\0')
        out->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return -1;
    return 0;
}

int
listen_on(const struct sockaddr_in *addr, int backlog, uint16_t *port)
{
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        perror("socket");
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) == -1 || listen(fd, backlog) == -1) {
        perror("bind/listen");
        close(fd);
        return -1;
    }
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &len) == -1) {
        perror("getsockname");
        close(fd);
        return -1;
    }
    *port = ntohs(bound.sin_port);
    return fd;
}

int
connect_start(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -1;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == -1 && errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

void
set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void
set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags != -1)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

void
usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

int
size_parse(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text)
        return -1;
    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        end++;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        end++;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}
