/* log.c - the process-wide log: a level, a timestamped line format, and escaping.
 * Not a structured-log framework: lines are key=value text meant for grep and for
 * log shippers that parse logfmt. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

enum log_level log_level_current = LOG_LEVEL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

#define LOG_LINE_MAX 2048

void
log_write(enum log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    size_t n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s ", (long)tv.tv_usec / 1000,
                          level_names[level]);
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    /* One write per line keeps lines whole when several threads log. */
    ssize_t w;
    do
        w = write(STDERR_FILENO, line, n);
    while (w == -1 && errno == EINTR);
}

bool
log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

const char *
log_level_str(enum log_level level)
{
    return level_names[level];
}

const char *
log_escape(char *dst, size_t dst_size, const char *src, size_t src_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (dst_size < 8)
        return "-";
    if (src == NULL || src_len == 0) {
        memcpy(dst, "-", 2);
        return dst;
    }
    for (size_t i = 0; i < src_len; i++) {
        unsigned char c = (unsigned char)src[i];
        bool plain = c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
        size_t need = plain ? 1 : 4;
        if (o + need > dst_size - 4) { /* room for "..." and NUL */
            memcpy(dst + o, "...", 4);
            return dst;
        }
        if (plain) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o] = '\0';
    return dst;
}

void
log_libevent_cb(int severity, const char *msg)
{
    switch (severity) {
    case EVENT_LOG_DEBUG:
        log_debug("libevent %s", msg);
        break;
    case EVENT_LOG_MSG:
        log_info("libevent %s", msg);
        break;
    case EVENT_LOG_WARN:
        log_warn("libevent %s", msg);
        break;
    default:
        log_error("libevent %s", msg);
        break;
    }
}
