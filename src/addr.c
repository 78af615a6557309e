/* addr.c - address text <-> sockaddr. Host names are validated and kept as text: resolving
 * them is the caller's job, on the event loop. IPv6 literals must be bracketed. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define UNIX_PREFIX "unix:"

static bool
addr_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static enum addr_parse_result
addr_parse_port(const char *s, unsigned flags, uint16_t *port)
{
    unsigned long v = 0;

    if (*s == '\0')
        return ADDR_NO_PORT;
    for (const char *p = s; *p; p++) {
        if (!addr_is_digit(*p))
            return ADDR_BAD_PORT;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return ADDR_BAD_PORT;
    }
    if (v == 0 && !(flags & ADDR_ALLOW_PORT_ZERO))
        return ADDR_BAD_PORT;
    *port = (uint16_t)v;
    return ADDR_OK;
}

/* A DNS name: dot-separated labels of letters, digits, '-' and '_', none empty or over 63. */
static bool
addr_is_hostname(const char *h, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > ADDR_HOST_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || addr_is_digit(c) || c == '-' || c == '_'))
            return false;
        if (++label > 63)
            return false;
    }
    return true;
}

static enum addr_parse_result
addr_parse_unix(const char *path, struct addr *out)
{
    struct sockaddr_un *un = (struct sockaddr_un *)(void *)&out->sa;
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof un->sun_path || len > ADDR_HOST_MAX)
        return ADDR_BAD_UNIX_PATH;
    memset(out, 0, sizeof *out);
    out->kind = ADDR_UNIX;
    memcpy(out->host, path, len + 1);
    out->is_numeric = true;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, len + 1);
    out->sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    return ADDR_OK;
}

static void
addr_set_inet(struct addr *out, int family, const void *ip, uint16_t port)
{
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&out->sa;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, ip, sizeof sin->sin_addr);
        out->sa_len = sizeof *sin;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&out->sa;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, ip, sizeof sin6->sin6_addr);
        out->sa_len = sizeof *sin6;
    }
    out->is_numeric = true;
}

static enum addr_parse_result addr_parse_into(const char *text, unsigned flags, struct addr *out);

enum addr_parse_result
addr_parse(const char *text, unsigned flags, struct addr *out)
{
    struct addr tmp;
    enum addr_parse_result r = addr_parse_into(text, flags, &tmp);

    if (r == ADDR_OK)
        *out = tmp;
    return r;
}

/* addr_parse() into a scratch struct that may be left half-filled on error. */
static enum addr_parse_result
addr_parse_into(const char *text, unsigned flags, struct addr *out)
{
    char host[ADDR_HOST_MAX + 1];
    const char *port_text;
    size_t host_len;
    bool bracketed = false;
    uint16_t port = 0;
    enum addr_parse_result r;

    if (text == NULL || *text == '\0')
        return ADDR_EMPTY;
    if (strncmp(text, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0) {
        if (!(flags & ADDR_ALLOW_UNIX))
            return ADDR_UNIX_NOT_ALLOWED;
        return addr_parse_unix(text + strlen(UNIX_PREFIX), out);
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL)
            return ADDR_BAD_HOST;
        host_len = (size_t)(close - text - 1);
        if (close[1] != ':')
            return close[1] == '\0' ? ADDR_NO_PORT : ADDR_BAD_HOST;
        port_text = close + 2;
        if (host_len == 0 || host_len > ADDR_HOST_MAX)
            return ADDR_BAD_HOST;
        memcpy(host, text + 1, host_len);
        bracketed = true;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL) {
            /* A bare port is a listen address on every interface. */
            bool all_digits = true;
            for (const char *p = text; *p; p++)
                all_digits = all_digits && addr_is_digit(*p);
            if (!all_digits)
                return ADDR_NO_PORT;
            if (!(flags & ADDR_ALLOW_NO_HOST))
                return ADDR_NO_HOST;
            host_len = 0;
            port_text = text;
        } else {
            if (memchr(text, ':', (size_t)(colon - text)) != NULL)
                return ADDR_NEEDS_BRACKETS;
            host_len = (size_t)(colon - text);
            port_text = colon + 1;
            if (host_len > ADDR_HOST_MAX)
                return ADDR_BAD_HOST;
            memcpy(host, text, host_len);
        }
    }
    host[host_len] = '\0';
    r = addr_parse_port(port_text, flags, &port);
    if (r != ADDR_OK)
        return r;

    memset(out, 0, sizeof *out);
    out->kind = ADDR_INET;
    out->port = port;
    memcpy(out->host, host, host_len + 1);

    struct in_addr v4;
    struct in6_addr v6;
    if (host_len == 0 || strcmp(host, "*") == 0) {
        if (!(flags & ADDR_ALLOW_NO_HOST))
            return ADDR_NO_HOST;
        out->host[0] = '\0';
        addr_set_inet(out, AF_INET6, &in6addr_any, port);
    } else if (bracketed) {
        if (inet_pton(AF_INET6, host, &v6) != 1)
            return ADDR_BAD_HOST;
        addr_set_inet(out, AF_INET6, &v6, port);
    } else if (inet_pton(AF_INET, host, &v4) == 1) {
        addr_set_inet(out, AF_INET, &v4, port);
    } else if (!addr_is_hostname(host, host_len)) {
        return ADDR_BAD_HOST;
    } else {
        /* A bare name of digits and dots that is not a dotted quad is a mistake, not DNS. */
        bool numeric_looking = true;
        for (size_t i = 0; i < host_len; i++)
            numeric_looking = numeric_looking && (addr_is_digit(host[i]) || host[i] == '.');
        if (numeric_looking)
            return ADDR_BAD_HOST;
    }
    return ADDR_OK;
}

const char *
addr_parse_result_str(enum addr_parse_result result)
{
    switch (result) {
    case ADDR_OK:
        return "ok";
    case ADDR_EMPTY:
        return "empty address";
    case ADDR_NO_PORT:
        return "expected host:port";
    case ADDR_BAD_PORT:
        return "port must be a number from 1 to 65535";
    case ADDR_BAD_HOST:
        return "invalid host name or IP address";
    case ADDR_NEEDS_BRACKETS:
        return "IPv6 addresses need brackets, as in [::1]:8080";
    case ADDR_NO_HOST:
        return "expected host:port (a host is required here)";
    case ADDR_UNIX_NOT_ALLOWED:
        return "a unix: socket is not allowed here";
    case ADDR_BAD_UNIX_PATH:
        return "unix socket path is empty or too long";
    }
    return "unknown";
}

char *
addr_format_sockaddr(const struct sockaddr *sa, socklen_t sa_len, char *buf, size_t buflen)
{
    char ip[INET6_ADDRSTRLEN];

    if (buflen == 0)
        return buf;
    buf[0] = '\0';
    if (sa->sa_family == AF_INET && sa_len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        snprintf(buf, buflen, "%s:%u", ip, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6 && sa_len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
        snprintf(buf, buflen, "[%s]:%u", ip, ntohs(sin6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)(const void *)sa;
        size_t max = sa_len > offsetof(struct sockaddr_un, sun_path)
                         ? sa_len - offsetof(struct sockaddr_un, sun_path)
                         : 0;
        snprintf(buf, buflen, "unix:%.*s", (int)strnlen(un->sun_path, max), un->sun_path);
    } else {
        snprintf(buf, buflen, "unknown");
    }
    return buf;
}

char *
addr_format(const struct addr *addr, char *buf, size_t buflen)
{
    if (addr->kind == ADDR_UNIX)
        snprintf(buf, buflen, "unix:%s", addr->host);
    else if (addr->host[0] == '\0')
        snprintf(buf, buflen, "*:%u", addr->port);
    else if (strchr(addr->host, ':') != NULL)
        snprintf(buf, buflen, "[%s]:%u", addr->host, addr->port);
    else
        snprintf(buf, buflen, "%s:%u", addr->host, addr->port);
    return buf;
}
