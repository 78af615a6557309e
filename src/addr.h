/* addr.h - "host:port", "[v6]:port", "port" and "unix:/path" <-> socket addresses.
 * Pure: no DNS (names are kept for the caller to resolve), no sockets, no allocation. */
#ifndef WSPLICE_ADDR_H
#define WSPLICE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_HOST_MAX 253                  /* longest DNS name; IP literals and unix paths are shorter */
#define ADDR_STR_MAX  (ADDR_HOST_MAX + 16) /* "[" host "]:" port, NUL */

enum addr_kind {
    ADDR_INET = 0,
    ADDR_UNIX,
};

struct addr {
    enum addr_kind kind;
    char host[ADDR_HOST_MAX + 1]; /* INET: name or literal without brackets, "" for any; UNIX: path */
    uint16_t port;                /* INET only */
    bool is_numeric;              /* 'sa' is filled: an IP literal, the any address, or a unix path */
    struct sockaddr_storage sa;
    socklen_t sa_len;
};

enum addr_flags {
    ADDR_ALLOW_UNIX = 1 << 0,      /* accept "unix:/path" */
    ADDR_ALLOW_NO_HOST = 1 << 1,   /* accept "6080" and ":6080" (any address) */
    ADDR_ALLOW_PORT_ZERO = 1 << 2, /* accept port 0 (the kernel picks one) */
};

enum addr_parse_result {
    ADDR_OK = 0,
    ADDR_EMPTY,
    ADDR_NO_PORT,
    ADDR_BAD_PORT,
    ADDR_BAD_HOST,
    ADDR_NEEDS_BRACKETS,
    ADDR_NO_HOST,
    ADDR_UNIX_NOT_ALLOWED,
    ADDR_BAD_UNIX_PATH,
};

/* Parse a NUL-terminated address as written in a config file or on the command line.
 * 'flags' is a set of enum addr_flags. '*out' is filled only on ADDR_OK. */
enum addr_parse_result addr_parse(const char *text, unsigned flags, struct addr *out);

const char *addr_parse_result_str(enum addr_parse_result result);

/* Format a socket address as "1.2.3.4:80", "[::1]:80" or "unix:/path" into 'buf'
 * (ADDR_STR_MAX bytes are always enough). Returns 'buf'. */
char *addr_format_sockaddr(const struct sockaddr *sa, socklen_t sa_len, char *buf, size_t buflen);

/* Format a parsed address the way it was written (brackets around IPv6 literals). */
char *addr_format(const struct addr *addr, char *buf, size_t buflen);

#endif
