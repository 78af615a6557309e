/* log.h - levelled, one-line-per-event logging to stderr: "TIME LEVEL what key=value ...".
 * Peer-supplied strings must pass through log_escape(). */
#ifndef WSPLICE_LOG_H
#define WSPLICE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

extern enum log_level log_level_current;

/* Write one line at 'level' (no newline in 'fmt'); prefer the macros, which skip the
 * formatting when the level is off. The line goes out in a single write(2). */
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_AT(level, ...)                                                                                   \
    do {                                                                                                     \
        if (log_level_current >= (level))                                                                    \
            log_write((level), __VA_ARGS__);                                                                 \
    } while (0)
#define log_error(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* "error", "warn", "info", "debug" -> level. Returns false for anything else. */
bool log_level_parse(const char *name, enum log_level *out);
const char *log_level_str(enum log_level level);

#define LOG_ESCAPE_MAX 256

/* Make peer bytes safe for a key=value log: printable ASCII other than space, '"', '\\'
 * and '=' pass; everything else becomes \xHH. Output longer than 'dst_size' is cut and ends
 * in "...". An empty input gives "-". Returns 'dst'. */
const char *log_escape(char *dst, size_t dst_size, const char *src, size_t src_len);

/* Route libevent's own warnings into this log. */
void log_libevent_cb(int severity, const char *msg);

#endif
