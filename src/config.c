/* config.c - INI configuration. Each section kind has declarative option tables (the
 * only place an option's type, bounds, default and help live); a line-counting reader
 * feeds inih so every error carries file:line, and all errors are collected. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#define CONFIG_MAX_LINE  4096 /* longer lines are errors, never split */
#define SECTION_NAME_MAX 48   /* inih keeps 50 bytes of a section name */

enum option_type {
    OPT_LOG_LEVEL,
    OPT_UINT,    /* decimal */
    OPT_BYTES,   /* decimal with an optional k, M or G suffix (powers of 1024) */
    OPT_SECONDS, /* decimal seconds, up to 3 fraction digits; stored as milliseconds */
    OPT_BIND,    /* [host:]port for listening */
    OPT_TARGET,  /* host:port or unix:/path */
    OPT_PATH,    /* URL path pattern: "/exact" or "/prefix*" */
    OPT_FILE,    /* a file name */
    OPT_HOSTS,   /* host names, "*.suffix" wildcards, or "*" for any */
    OPT_NAMES,   /* section names, or "*" for all */
};

enum option_flags {
    OPTF_REQUIRED = 1 << 0,       /* no default: the section must set it */
    OPTF_NOT_IN_GATEWAY = 1 << 1, /* a per-section limit with no [gateway] default */
};

struct option_spec {
    const char *name;
    enum option_type type;
    size_t offset;
    size_t size;       /* of the field, for integer types */
    uint64_t min, max; /* integer bounds; OPT_SECONDS in milliseconds */
    unsigned flags;
    const char *def; /* default, in file syntax; NULL when there is none */
    const char *help;
};

#define FIELD(type, member) offsetof(type, member), sizeof(((type *)0)->member)
#define MS(s)               ((uint64_t)(s)*1000)
#define MIB(n)              ((uint64_t)(n) << 20)

static const struct option_spec gateway_options[] = {
    {"log_level", OPT_LOG_LEVEL, FIELD(struct config, log_level), 0, 0, 0, "info",
     "error | warn | info | debug (-v on the command line means debug)"},
    {"max_sessions", OPT_UINT, FIELD(struct config, max_sessions), 0, 10000000, 0, "0",
     "most concurrent connections in all; more get 503. 0 = as many as the descriptor limit allows"},
    {"drain_timeout_s", OPT_SECONDS, FIELD(struct config, drain_timeout_ms), 0, MS(3600), 0, "5",
     "on SIGTERM/SIGINT: how long sessions get to close after close 1001 before the process exits"},
    {"resolv_conf", OPT_FILE, FIELD(struct config, resolv_conf), 0, 0, 0, "/etc/resolv.conf",
     "name servers for backend host names, read when the first name is resolved (/etc/hosts is read too)"},
};

/* Positions of the options that validation refers to, checked against the tables below. */
enum { LISTENER_OPT_BIND = 0 };
enum { ROUTE_OPT_PATH = 0, ROUTE_OPT_LISTENER = 2 };

static const struct option_spec listener_options[] = {
    {"bind", OPT_BIND, FIELD(struct listener_config, bind), 0, 0, OPTF_REQUIRED, NULL,
     "address to listen on: host:port, [v6]:port, or *:port / port for every address"},
};

static const struct option_spec listener_limit_options[] = {
    {"handshake_timeout_s", OPT_SECONDS, FIELD(struct listener_limits, handshake_timeout_ms), 100, MS(3600),
     0, "10", "the whole upgrade request must arrive within this time, or the connection is closed (408)"},
    {"max_request_bytes", OPT_BYTES, FIELD(struct listener_limits, max_request_bytes), 1024, MIB(1), 0, "16k",
     "largest upgrade request head; larger ones get 431"},
};

static const struct option_spec route_options[] = {
    {"path", OPT_PATH, FIELD(struct route_config, path), 0, 0, OPTF_REQUIRED, NULL,
     "URL path: /exact, or /prefix* to match everything below; the query string is ignored"},
    {"host", OPT_HOSTS, FIELD(struct route_config, hosts), 0, 0, 0, "*",
     "virtual hosts (Host header, port ignored): names or *.domain wildcards; * = any host"},
    {"listener", OPT_NAMES, FIELD(struct route_config, listeners), 0, 0, 0, "*",
     "names of the [listener:NAME] sections that serve this route; * = all"},
    {"target", OPT_TARGET, FIELD(struct route_config, target), 0, 0, OPTF_REQUIRED, NULL,
     "backend: host:port, [v6]:port or unix:/path; names are resolved per connection"},
};

static const struct option_spec route_limit_options[] = {
    {"connect_timeout_s", OPT_SECONDS, FIELD(struct limits, connect_timeout_ms), 10, MS(3600), 0, "10",
     "time allowed for each backend address tried; if every try fails the client gets 502, or 504 on "
     "timeout"},
    {"idle_timeout_s", OPT_SECONDS, FIELD(struct limits, idle_timeout_ms), 0, MS(7 * 86400), 0, "0",
     "close a session with 1001 after this long without payload either way; 0 = never"},
    {"close_timeout_s", OPT_SECONDS, FIELD(struct limits, close_timeout_ms), 10, MS(600), 0, "5",
     "how long a close handshake and the final flush of both sides may take"},
    {"ping_interval_s", OPT_SECONDS, FIELD(struct limits, ping_interval_ms), 0, MS(86400), 0, "30",
     "send a ping after this long without a frame from the client; 0 = never"},
    {"ping_timeout_s", OPT_SECONDS, FIELD(struct limits, ping_timeout_ms), 10, MS(3600), 0, "30",
     "close the session if the client sends nothing this long after a ping"},
    {"max_frame_bytes", OPT_BYTES, FIELD(struct limits, max_frame_bytes), 125, UINT64_C(1) << 62, 0, "16M",
     "largest client frame payload; larger frames get close 1009"},
    {"max_message_bytes", OPT_BYTES, FIELD(struct limits, max_message_bytes), 0, UINT64_C(1) << 62, 0, "64M",
     "largest client message (fragments summed); larger get close 1009. 0 = no limit"},
    {"buffer_bytes", OPT_BYTES, FIELD(struct limits, buffer_bytes), 4096, MIB(64), 0, "256k",
     "high-water mark of each direction's queue: reading stops above it (backpressure)"},
    {"max_sessions", OPT_UINT, FIELD(struct limits, max_sessions), 0, 10000000, OPTF_NOT_IN_GATEWAY, "0",
     "most concurrent sessions on this route; more get 503. 0 = no route limit"},
};

struct option_group {
    const struct option_spec *specs;
    size_t count;
};

#define GROUP(t)                                                                                             \
    {                                                                                                        \
        t, sizeof t / sizeof t[0]                                                                            \
    }

enum section_kind {
    SECTION_NONE = 0, /* before the first header */
    SECTION_GATEWAY,
    SECTION_LISTENER,
    SECTION_ROUTE,
    SECTION_IGNORED, /* a bad or duplicate header: its keys are skipped */
};

struct parse_state {
    struct config *cfg;
    FILE *fp;
    int line;
    enum section_kind kind;
    size_t index;                     /* into listeners or route_configs */
    char label[SECTION_NAME_MAX + 8]; /* "route:vnc", for messages */
    int gateway_line;
};

/* ---- errors ---- */

/* "file:line: [section] key: message"; line 0 omits the line, NULL key omits the key. */
static void config_error_at(struct config *cfg, int line, const char *section, const char *key,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
config_error_at(struct config *cfg, int line, const char *section, const char *key, const char *fmt, ...)
{
    char msg[768], where[32] = "", text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(where, sizeof where, ":%d", line);
    snprintf(text, sizeof text, "%s%s: %s%s%s%s%s%s", cfg->source, where, section ? "[" : "",
             section ? section : "", section ? "] " : "", key ? key : "", key ? ": " : "", msg);
    struct config_error *n = realloc(cfg->errors, (cfg->error_count + 1) * sizeof *n);
    if (n == NULL)
        return;
    cfg->errors = n;
    n[cfg->error_count].line = line;
    n[cfg->error_count].text = strdup(text);
    if (n[cfg->error_count].text != NULL)
        cfg->error_count++;
}

/* Errors in file order; file-wide ones (line 0) last. Insertion sort keeps it stable. */
static void
config_sort_errors(struct config *cfg)
{
    for (size_t i = 1; i < cfg->error_count; i++) {
        struct config_error e = cfg->errors[i];
        unsigned key = e.line > 0 ? (unsigned)e.line : UINT32_MAX;
        size_t j = i;
        while (j > 0 &&
               (cfg->errors[j - 1].line > 0 ? (unsigned)cfg->errors[j - 1].line : UINT32_MAX) > key) {
            cfg->errors[j] = cfg->errors[j - 1];
            j--;
        }
        cfg->errors[j] = e;
    }
}

/* ---- value converters ---- */

static const char *
config_parse_uint(const char *v, uint64_t *out)
{
    uint64_t n = 0;

    if (*v == '\0')
        return "expected a number";
    for (; *v >= '0' && *v <= '9'; v++) {
        if (n > (UINT64_MAX - 9) / 10)
            return "number too large";
        n = n * 10 + (uint64_t)(*v - '0');
    }
    if (*v != '\0')
        return "expected a whole number";
    *out = n;
    return NULL;
}

static const char *
config_parse_bytes(const char *v, uint64_t *out)
{
    char digits[32];
    size_t len = strlen(v);
    unsigned shift = 0;

    if (len == 0 || len >= sizeof digits)
        return "expected a size such as 65536, 64k or 16M";
    memcpy(digits, v, len + 1);
    switch (digits[len - 1]) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        break;
    }
    if (shift)
        digits[len - 1] = '\0';
    if (config_parse_uint(digits, out) != NULL)
        return "expected a size such as 65536, 64k or 16M";
    if (*out > (UINT64_MAX >> shift))
        return "size too large";
    *out <<= shift;
    return NULL;
}

static const char *
config_parse_seconds(const char *v, uint64_t *out_ms)
{
    uint64_t whole = 0, frac = 0;
    unsigned frac_digits = 0;
    const char *p = v;

    if (*p == '\0' || *p == '.')
        return "expected seconds, such as 10 or 0.5";
    for (; *p >= '0' && *p <= '9'; p++) {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole > UINT64_C(1) << 40)
            return "duration too large";
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (++frac_digits > 3)
                return "at most 3 decimals (milliseconds)";
            frac = frac * 10 + (uint64_t)(*p - '0');
        }
        if (frac_digits == 0)
            return "expected seconds, such as 10 or 0.5";
    }
    if (*p != '\0')
        return "expected seconds, such as 10 or 0.5";
    while (frac_digits++ < 3)
        frac *= 10;
    *out_ms = whole * 1000 + frac;
    return NULL;
}

static const char *
config_parse_path(const char *v)
{
    if (v[0] != '/')
        return "must start with /";
    for (const char *p = v; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f)
            return "must not contain spaces or control characters";
        if (c == '?' || c == '#')
            return "must not contain ? or # (the query string is not matched)";
        if (c == '*' && p[1] != '\0')
            return "* is only allowed at the end (prefix match)";
    }
    return NULL;
}

static bool
config_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static void
str_list_clear(struct str_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static int
str_list_push(struct str_list *l, const char *s, size_t len)
{
    char **n = realloc(l->items, (l->count + 1) * sizeof *n);
    if (n == NULL)
        return -1;
    l->items = n;
    l->items[l->count] = strndup(s, len);
    if (l->items[l->count] == NULL)
        return -1;
    l->count++;
    return 0;
}

/* Split on commas and whitespace. "*" alone means the empty list (any). */
static const char *
config_parse_list(const char *v, enum option_type type, struct str_list *out)
{
    struct str_list l = {0};
    const char *p = v;

    if (strcmp(v, "*") == 0) {
        str_list_clear(out);
        return NULL;
    }
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - start);
        char item[ADDR_HOST_MAX + 1];
        if (len > ADDR_HOST_MAX) {
            str_list_clear(&l);
            return "name too long";
        }
        for (size_t i = 0; i < len; i++) {
            char c = start[i];
            item[i] = (type == OPT_HOSTS && c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        item[len] = '\0';
        const char *check = item;
        if (type == OPT_HOSTS && len > 2 && item[0] == '*' && item[1] == '.')
            check = item + 2;
        for (const char *c = check; *c; c++) {
            if (!config_is_name_char(*c) || (type == OPT_HOSTS && *c == '_')) {
                str_list_clear(&l);
                return type == OPT_HOSTS ? "expected host names or *.domain wildcards"
                                         : "expected section names";
            }
        }
        if (*check == '\0' || str_list_push(&l, item, len) == -1) {
            str_list_clear(&l);
            return "expected a list of names";
        }
    }
    if (l.count == 0)
        return "empty list (use * for any)";
    str_list_clear(out);
    *out = l;
    return NULL;
}

static void
config_store_uint(void *field, size_t size, uint64_t v)
{
    if (size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;
        memcpy(field, &x, sizeof x);
    } else {
        memcpy(field, &v, sizeof v);
    }
}

static uint64_t
config_load_uint(const void *field, size_t size)
{
    if (size == sizeof(uint32_t)) {
        uint32_t x;
        memcpy(&x, field, sizeof x);
        return x;
    }
    uint64_t v;
    memcpy(&v, field, sizeof v);
    return v;
}

/* Convert 'value' into the field at base+spec->offset. Returns an error message or NULL. */
static const char *
config_apply(const struct option_spec *spec, void *base, const char *value, char *msg, size_t msg_size)
{
    void *field = (char *)base + spec->offset;
    uint64_t n = 0;
    const char *err = NULL;
    enum addr_parse_result ar;

    switch (spec->type) {
    case OPT_LOG_LEVEL:
        if (!log_level_parse(value, (enum log_level *)field))
            return "expected error, warn, info or debug";
        return NULL;
    case OPT_UINT:
        err = config_parse_uint(value, &n);
        break;
    case OPT_BYTES:
        err = config_parse_bytes(value, &n);
        break;
    case OPT_SECONDS:
        err = config_parse_seconds(value, &n);
        break;
    case OPT_BIND:
        ar = addr_parse(value, ADDR_ALLOW_NO_HOST | ADDR_ALLOW_PORT_ZERO, (struct addr *)field);
        if (ar == ADDR_BAD_PORT)
            return "port must be a number from 0 to 65535";
        return ar == ADDR_OK ? NULL : addr_parse_result_str(ar);
    case OPT_TARGET:
        ar = addr_parse(value, ADDR_ALLOW_UNIX, (struct addr *)field);
        return ar == ADDR_OK ? NULL : addr_parse_result_str(ar);
    case OPT_PATH:
    case OPT_FILE:
        err = spec->type == OPT_PATH ? config_parse_path(value) : NULL;
        if (err == NULL) {
            char *dup = strdup(value);
            if (dup == NULL)
                return "out of memory";
            free(*(char **)field);
            *(char **)field = dup;
        }
        return err;
    case OPT_HOSTS:
    case OPT_NAMES:
        return config_parse_list(value, spec->type, (struct str_list *)field);
    }
    if (err != NULL)
        return err;
    if (n < spec->min || n > spec->max) {
        if (spec->type == OPT_SECONDS)
            snprintf(msg, msg_size, "must be from %g to %g seconds", (double)spec->min / 1000,
                     (double)spec->max / 1000);
        else
            snprintf(msg, msg_size, "must be from %llu to %llu", (unsigned long long)spec->min,
                     (unsigned long long)spec->max);
        return msg;
    }
    config_store_uint(field, spec->size, n);
    return NULL;
}

/* ---- sections ---- */

/* The option groups of a section kind, and the struct each group writes into. */
static size_t
config_groups(struct config *cfg, enum section_kind kind, size_t index, struct option_group *groups,
              void **bases, struct option_marks **marks)
{
    static const struct option_group gw = GROUP(gateway_options), lo = GROUP(listener_options),
                                     ll = GROUP(listener_limit_options), ro = GROUP(route_options),
                                     rl = GROUP(route_limit_options);

    switch (kind) {
    case SECTION_GATEWAY:
        groups[0] = gw, groups[1] = ll, groups[2] = rl;
        bases[0] = cfg, bases[1] = &cfg->listener_defaults, bases[2] = &cfg->route_defaults;
        *marks = &cfg->marks;
        return 3;
    case SECTION_LISTENER:
        groups[0] = lo, groups[1] = ll;
        bases[0] = &cfg->listeners[index], bases[1] = &cfg->listeners[index].limits;
        *marks = &cfg->listeners[index].marks;
        return 2;
    case SECTION_ROUTE:
        groups[0] = ro, groups[1] = rl;
        bases[0] = &cfg->route_configs[index], bases[1] = &cfg->route_configs[index].limits;
        *marks = &cfg->route_configs[index].marks;
        return 2;
    default:
        return 0;
    }
}

/* Fill every option of a section with its default. */
static void
config_set_defaults(struct config *cfg, enum section_kind kind, size_t index)
{
    struct option_group groups[3];
    void *bases[3];
    struct option_marks *marks;
    char msg[128];
    size_t n = config_groups(cfg, kind, index, groups, bases, &marks);

    for (size_t g = 0; g < n; g++)
        for (size_t i = 0; i < groups[g].count; i++)
            if (groups[g].specs[i].def != NULL)
                config_apply(&groups[g].specs[i], bases[g], groups[g].specs[i].def, msg, sizeof msg);
}

static bool
config_section_name_ok(const char *name)
{
    if (*name == '\0')
        return false;
    for (; *name; name++)
        if (!config_is_name_char(*name))
            return false;
    return true;
}

/* Handle a "[kind:name]" header seen by the reader at ps->line. */
static void
config_begin_section(struct parse_state *ps, const char *header, size_t len)
{
    struct config *cfg = ps->cfg;
    char text[SECTION_NAME_MAX + 1];
    const char *colon;

    ps->kind = SECTION_IGNORED;
    if (len > SECTION_NAME_MAX) {
        config_error_at(cfg, ps->line, NULL, NULL, "section name too long (at most %d characters)",
                        SECTION_NAME_MAX);
        return;
    }
    memcpy(text, header, len);
    text[len] = '\0';
    snprintf(ps->label, sizeof ps->label, "%s", text);
    if (strcmp(text, "gateway") == 0) {
        if (ps->gateway_line) {
            config_error_at(cfg, ps->line, NULL, NULL, "duplicate [gateway] section (first on line %d)",
                            ps->gateway_line);
            return;
        }
        ps->gateway_line = ps->line;
        ps->kind = SECTION_GATEWAY;
        return;
    }
    colon = strchr(text, ':');
    if (colon == NULL || !config_section_name_ok(colon + 1) ||
        (strncmp(text, "listener:", 9) != 0 && strncmp(text, "route:", 6) != 0)) {
        config_error_at(cfg, ps->line, NULL, NULL,
                        "unknown section [%s]: expected [gateway], [listener:NAME] or [route:NAME]", text);
        return;
    }
    const char *name = colon + 1;
    enum section_kind kind = text[0] == 'l' ? SECTION_LISTENER : SECTION_ROUTE;
    void **items = kind == SECTION_LISTENER ? (void **)&cfg->listeners : (void **)&cfg->route_configs;
    size_t *count = kind == SECTION_LISTENER ? &cfg->listener_count : &cfg->route_count;
    size_t size = kind == SECTION_LISTENER ? sizeof *cfg->listeners : sizeof *cfg->route_configs;
    for (size_t i = 0; i < *count; i++) {
        const struct section_head *h = (const struct section_head *)((char *)*items + i * size);
        if (strcmp(h->name, name) == 0) {
            config_error_at(cfg, ps->line, NULL, NULL, "duplicate section [%s] (first on line %d)", text,
                            h->line);
            return;
        }
    }
    char *grown = realloc(*items, (*count + 1) * size);
    if (grown == NULL)
        return;
    *items = grown;
    struct section_head *h = memset(grown + *count * size, 0, size);
    h->name = strdup(name);
    h->line = ps->line;
    ps->index = (*count)++;
    ps->kind = kind;
    config_set_defaults(cfg, ps->kind, ps->index);
}

/* ---- the reader and handler given to inih ---- */

static bool
config_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Replace a line inih must not see with a comment. */
static char *
config_hide_line(char *str)
{
    str[0] = ';';
    str[1] = '\n';
    str[2] = '\0';
    return str;
}

/* Read one line for inih, count it, and check what inih would misread: lines too long
 * for its buffer (it would split them), NUL bytes, and syntax errors it would report
 * only once. Section headers are handled here, so empty sections are seen too. */
static char *
config_reader(char *str, int num, void *stream)
{
    struct parse_state *ps = stream;
    size_t len = 0, max = (size_t)num - 1;
    /* Content, without its line end, must fit inih's buffer with "\r\n" and a NUL. */
    size_t limit = (size_t)num - 3 < CONFIG_MAX_LINE ? (size_t)num - 3 : CONFIG_MAX_LINE;
    bool nul = false, overlong = false;
    int c = EOF;

    if (num < 4)
        return NULL;
    while (len < max && (c = fgetc(ps->fp)) != EOF) {
        if (c == '\0')
            nul = true;
        str[len++] = (char)c;
        if (c == '\n')
            break;
    }
    if (len == 0)
        return NULL;
    str[len] = '\0';
    ps->line++;
    /* Filled the buffer without reaching the newline: unless it comes right after (or the
     * file ends), the line is too long; swallow the rest of it. */
    if (len == max && str[len - 1] != '\n') {
        int d = fgetc(ps->fp);
        if (d != '\n' && d != EOF) {
            overlong = true;
            while ((d = fgetc(ps->fp)) != EOF && d != '\n')
                ;
        }
    }
    size_t content = len;
    while (content > 0 && (str[content - 1] == '\n' || str[content - 1] == '\r'))
        content--;
    if (content > limit)
        overlong = true;
    if (ps->line == 1 && len >= 3 && memcmp(str, "\xef\xbb\xbf", 3) == 0) {
        memmove(str, str + 3, len - 2); /* a UTF-8 byte order mark is not content */
        len -= 3;
    }
    size_t i = 0;
    while (i < len && config_is_space(str[i]))
        i++;
    if (overlong) {
        bool header = str[i] == '[';
        config_error_at(ps->cfg, ps->line, header || ps->kind == SECTION_NONE ? NULL : ps->label, NULL,
                        "line too long (at most %zu characters)", limit);
        if (header)
            ps->kind = SECTION_IGNORED;
        return config_hide_line(str);
    }
    if (nul) {
        config_error_at(ps->cfg, ps->line, NULL, NULL, "NUL byte in line");
        return config_hide_line(str);
    }
    if (i == len || str[i] == ';' || str[i] == '#')
        return str;
    if (str[i] == '[') {
        char *end = strchr(str + i, ']');
        if (end == NULL) {
            config_error_at(ps->cfg, ps->line, NULL, NULL, "section header without ]");
            ps->kind = SECTION_IGNORED;
            return config_hide_line(str);
        }
        for (char *p = end + 1; *p && *p != ';' && *p != '#'; p++) {
            if (!config_is_space(*p)) {
                config_error_at(ps->cfg, ps->line, NULL, NULL, "text after section header");
                break;
            }
        }
        config_begin_section(ps, str + i + 1, (size_t)(end - str - i - 1));
        return str;
    }
    /* inih also splits at ':', but values such as addresses contain colons: only "=" is
     * a separator here, so "target 127.0.0.1:80" is an error, not a key "target 127.0.0.1". */
    const char *eq = strchr(str + i, '=');
    const char *colon = strchr(str + i, ':');
    if (eq == NULL || (colon != NULL && colon < eq)) {
        config_error_at(ps->cfg, ps->line, ps->kind == SECTION_NONE ? NULL : ps->label, NULL,
                        "expected key = value");
        return config_hide_line(str);
    }
    if (ps->kind == SECTION_NONE) {
        config_error_at(ps->cfg, ps->line, NULL, NULL, "key outside any section (start with [gateway])");
        return config_hide_line(str);
    }
    if (ps->kind == SECTION_IGNORED)
        return config_hide_line(str);
    return str;
}

static int
config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *ps = user;
    struct config *cfg = ps->cfg;
    struct option_group groups[3];
    void *bases[3];
    struct option_marks *marks;
    char msg[160];
    size_t n;

    (void)section; /* the reader tracks sections itself, including empty ones */
    n = config_groups(cfg, ps->kind, ps->index, groups, bases, &marks);
    for (size_t g = 0; g < n; g++) {
        for (size_t i = 0; i < groups[g].count; i++) {
            const struct option_spec *spec = &groups[g].specs[i];
            if (strcmp(spec->name, name) != 0)
                continue;
            if (ps->kind == SECTION_GATEWAY && (spec->flags & OPTF_NOT_IN_GATEWAY))
                continue;
            if (marks->set[g] & (UINT64_C(1) << i)) {
                config_error_at(cfg, ps->line, ps->label, name,
                                "set twice in this section (first on line %d)", marks->line[g][i]);
                return 1;
            }
            marks->set[g] |= UINT64_C(1) << i;
            marks->line[g][i] = ps->line;
            if (*value == '\0') {
                config_error_at(cfg, ps->line, ps->label, name, "empty value");
                return 1;
            }
            const char *err = config_apply(spec, bases[g], value, msg, sizeof msg);
            if (err != NULL) {
                char shown[LOG_ESCAPE_MAX];
                config_error_at(cfg, ps->line, ps->label, name, "%s (got \"%s\")", err,
                                log_escape(shown, sizeof shown, value, strlen(value)));
            }
            return 1;
        }
    }
    config_error_at(cfg, ps->line, ps->label, name, "unknown key");
    return 1;
}

/* ---- validation ---- */

int
config_listener_index(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->listener_count; i++)
        if (strcmp(cfg->listeners[i].head.name, name) == 0)
            return (int)i;
    return -1;
}

/* Give a section the [gateway] value of every limit it did not set. */
static void
config_inherit(const struct option_group *group, uint64_t set, void *dst, const void *defaults)
{
    for (size_t i = 0; i < group->count; i++) {
        const struct option_spec *spec = &group->specs[i];
        if ((set & (UINT64_C(1) << i)) || (spec->flags & OPTF_NOT_IN_GATEWAY))
            continue;
        memcpy((char *)dst + spec->offset, (const char *)defaults + spec->offset, spec->size);
    }
}

static bool
config_lists_overlap(const struct str_list *a, const struct str_list *b)
{
    if (a->count == 0 || b->count == 0)
        return a->count == 0 && b->count == 0;
    for (size_t i = 0; i < a->count; i++)
        for (size_t j = 0; j < b->count; j++)
            if (strcmp(a->items[i], b->items[j]) == 0)
                return true;
    return false;
}

static void
config_check_required(struct config *cfg, const struct option_group *group, uint64_t set, int line,
                      const char *kind, const char *name)
{
    char label[SECTION_NAME_MAX + 16];

    snprintf(label, sizeof label, "%s:%s", kind, name);
    for (size_t i = 0; i < group->count; i++)
        if ((group->specs[i].flags & OPTF_REQUIRED) && !(set & (UINT64_C(1) << i)))
            config_error_at(cfg, line, label, group->specs[i].name, "required");
}

static void
config_validate(struct config *cfg)
{
    static const struct option_group lo = GROUP(listener_options), ll = GROUP(listener_limit_options),
                                     ro = GROUP(route_options), rl = GROUP(route_limit_options);
    char a[ADDR_STR_MAX], b[ADDR_STR_MAX];

    if (cfg->listener_count == 0)
        config_error_at(cfg, 0, NULL, NULL, "no [listener:NAME] section: nothing to listen on");
    if (cfg->route_count == 0)
        config_error_at(cfg, 0, NULL, NULL, "no [route:NAME] section: nothing to proxy to");
    if (cfg->listener_count > ROUTE_MAX_LISTENERS)
        config_error_at(cfg, 0, NULL, NULL, "more than %d listeners", ROUTE_MAX_LISTENERS);

    for (size_t i = 0; i < cfg->listener_count; i++) {
        struct listener_config *l = &cfg->listeners[i];
        config_check_required(cfg, &lo, l->marks.set[0], l->head.line, "listener", l->head.name);
        config_inherit(&ll, l->marks.set[1], &l->limits, &cfg->listener_defaults);
        if (!(l->marks.set[0] & (UINT64_C(1) << LISTENER_OPT_BIND)))
            continue;
        for (size_t j = 0; j < i; j++) {
            struct listener_config *o = &cfg->listeners[j];
            if ((o->marks.set[0] & (UINT64_C(1) << LISTENER_OPT_BIND)) && o->bind.port != 0 &&
                o->bind.port == l->bind.port &&
                strcmp(addr_format(&o->bind, a, sizeof a), addr_format(&l->bind, b, sizeof b)) == 0) {
                char label[SECTION_NAME_MAX + 16];
                snprintf(label, sizeof label, "listener:%s", l->head.name);
                config_error_at(cfg, l->marks.line[0][LISTENER_OPT_BIND], label, "bind",
                                "%s is already bound by [listener:%s] (line %d)", b, o->head.name,
                                o->marks.line[0][LISTENER_OPT_BIND]);
            }
        }
    }
    for (size_t i = 0; i < cfg->route_count; i++) {
        struct route_config *r = &cfg->route_configs[i];
        char label[SECTION_NAME_MAX + 16];
        snprintf(label, sizeof label, "route:%s", r->head.name);
        config_check_required(cfg, &ro, r->marks.set[0], r->head.line, "route", r->head.name);
        config_inherit(&rl, r->marks.set[1], &r->limits, &cfg->route_defaults);
        for (size_t k = 0; k < r->listeners.count; k++)
            if (config_listener_index(cfg, r->listeners.items[k]) < 0)
                config_error_at(cfg, r->marks.line[0][ROUTE_OPT_LISTENER], label, "listener",
                                "no [listener:%s] section", r->listeners.items[k]);
        if (r->path == NULL)
            continue;
        for (size_t j = 0; j < i; j++) {
            struct route_config *o = &cfg->route_configs[j];
            if (o->path != NULL && strcmp(o->path, r->path) == 0 &&
                config_lists_overlap(&o->hosts, &r->hosts) &&
                (r->listeners.count == 0 || o->listeners.count == 0 ||
                 config_lists_overlap(&o->listeners, &r->listeners)))
                config_error_at(cfg, r->marks.line[0][ROUTE_OPT_PATH], label, "path",
                                "%s is already routed by [route:%s] (line %d) for the same host and listener",
                                r->path, o->head.name, o->marks.line[0][ROUTE_OPT_PATH]);
        }
    }
}

/* Build the route table from validated route sections. */
static int
config_build_routes(struct config *cfg)
{
    cfg->routes = route_table_new();
    if (cfg->routes == NULL)
        return -1;
    route_table_set_defaults(cfg->routes, &cfg->route_defaults);
    for (size_t i = 0; i < cfg->route_count; i++) {
        struct route_config *rc = &cfg->route_configs[i];
        struct route r = {0};
        size_t plen = strlen(rc->path);

        r.name = rc->head.name;
        r.is_prefix = plen > 0 && rc->path[plen - 1] == '*';
        char *path = strndup(rc->path, r.is_prefix ? plen - 1 : plen);
        if (path == NULL)
            return -1;
        r.path = path;
        r.path_len = strlen(path);
        r.hosts = rc->hosts.items;
        r.host_count = rc->hosts.count;
        r.listener_mask = rc->listeners.count == 0 ? ROUTE_ALL_LISTENERS : 0;
        for (size_t k = 0; k < rc->listeners.count; k++)
            r.listener_mask |= UINT64_C(1) << config_listener_index(cfg, rc->listeners.items[k]);
        r.target = rc->target;
        r.limits = rc->limits;
        int rv = route_table_add(cfg->routes, &r);
        free(path);
        if (rv == -1)
            return -1;
    }
    return 0;
}

/* ---- load ---- */

_Static_assert(sizeof route_limit_options / sizeof route_limit_options[0] <= CONFIG_MAX_GROUP_OPTIONS,
               "option_marks too small");

static struct config *
config_load_stream(FILE *fp, const char *source)
{
    struct config *cfg = calloc(1, sizeof *cfg);
    struct parse_state ps = {0};
    int rv;

    assert(strcmp(listener_options[LISTENER_OPT_BIND].name, "bind") == 0);
    assert(strcmp(route_options[ROUTE_OPT_PATH].name, "path") == 0);
    assert(strcmp(route_options[ROUTE_OPT_LISTENER].name, "listener") == 0);
    if (cfg == NULL)
        return NULL;
    cfg->source = strdup(source);
    if (cfg->source == NULL) {
        free(cfg);
        return NULL;
    }
    config_set_defaults(cfg, SECTION_GATEWAY, 0);
    if (fp == NULL) {
        config_error_at(cfg, 0, NULL, NULL, "cannot open: %s", strerror(errno));
        return cfg;
    }
    ps.cfg = cfg;
    ps.fp = fp;
    /* Debian's libinih exposes its parser settings at run time: a larger line buffer, and
     * no multi-line values, so an indented line is an ordinary key and never a silent
     * continuation. The reader rejects lines longer than the buffer either way. */
#ifdef HAVE_INI_RUNTIME_OPTIONS
    ini_max_line = CONFIG_MAX_LINE + 3; /* the content, "\r\n" and a NUL */
    ini_allow_multiline = false;
#endif
    rv = ini_parse_stream(config_reader, &ps, config_handler, &ps);
    if (rv > 0 && cfg->error_count == 0)
        config_error_at(cfg, rv, NULL, NULL, "syntax error");
    else if (rv < 0 && cfg->error_count == 0)
        config_error_at(cfg, 0, NULL, NULL, "cannot read (error %d)", rv);
    if (ferror(fp))
        config_error_at(cfg, 0, NULL, NULL, "read error: %s", strerror(errno));
    config_validate(cfg);
    if (cfg->error_count == 0 && config_build_routes(cfg) == -1)
        config_error_at(cfg, 0, NULL, NULL, "out of memory");
    config_sort_errors(cfg);
    return cfg;
}

struct config *
config_load_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    struct config *cfg = config_load_stream(fp, path);

    if (fp != NULL)
        fclose(fp);
    return cfg;
}

struct config *
config_load_string(const char *text, const char *source)
{
    FILE *fp = fmemopen((void *)(uintptr_t)text, strlen(text), "r");
    struct config *cfg = config_load_stream(fp, source);

    if (fp != NULL)
        fclose(fp);
    return cfg;
}

void
config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->listener_count; i++)
        free(cfg->listeners[i].head.name);
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->route_count; i++) {
        struct route_config *r = &cfg->route_configs[i];
        free(r->head.name);
        free(r->path);
        str_list_clear(&r->hosts);
        str_list_clear(&r->listeners);
    }
    free(cfg->route_configs);
    route_table_unref(cfg->routes);
    free(cfg->resolv_conf);
    for (size_t i = 0; i < cfg->error_count; i++)
        free(cfg->errors[i].text);
    free(cfg->errors);
    free(cfg->source);
    free(cfg);
}

void
config_print_errors(const struct config *cfg, FILE *out)
{
    for (size_t i = 0; i < cfg->error_count; i++)
        fprintf(out, "%s\n", cfg->errors[i].text);
}

/* ---- dump ---- */

static void
config_format_value(const struct option_spec *spec, const void *base, char *buf, size_t size)
{
    const void *field = (const char *)base + spec->offset;
    uint64_t n;

    switch (spec->type) {
    case OPT_LOG_LEVEL:
        snprintf(buf, size, "%s", log_level_str(*(const enum log_level *)field));
        return;
    case OPT_UINT:
        snprintf(buf, size, "%llu", (unsigned long long)config_load_uint(field, spec->size));
        return;
    case OPT_BYTES:
        n = config_load_uint(field, spec->size);
        if (n != 0 && n % (MIB(1) << 10) == 0)
            snprintf(buf, size, "%lluG", (unsigned long long)(n >> 30));
        else if (n != 0 && n % MIB(1) == 0)
            snprintf(buf, size, "%lluM", (unsigned long long)(n >> 20));
        else if (n != 0 && n % 1024 == 0)
            snprintf(buf, size, "%lluk", (unsigned long long)(n >> 10));
        else
            snprintf(buf, size, "%llu", (unsigned long long)n);
        return;
    case OPT_SECONDS:
        n = config_load_uint(field, spec->size);
        if (n % 1000 == 0)
            snprintf(buf, size, "%llu", (unsigned long long)(n / 1000));
        else
            snprintf(buf, size, "%g", (double)n / 1000);
        return;
    case OPT_BIND:
    case OPT_TARGET:
        addr_format((const struct addr *)field, buf, size);
        return;
    case OPT_PATH:
    case OPT_FILE:
        snprintf(buf, size, "%s", *(char *const *)field ? *(char *const *)field : "");
        return;
    case OPT_HOSTS:
    case OPT_NAMES: {
        const struct str_list *l = field;
        size_t o = 0;
        buf[0] = '\0';
        if (l->count == 0)
            snprintf(buf, size, "*");
        for (size_t i = 0; i < l->count && o < size; i++)
            o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? " " : "", l->items[i]);
        return;
    }
    }
}

static void
config_dump_group(FILE *out, const struct option_group *group, const void *base, bool in_gateway)
{
    char value[512];

    for (size_t i = 0; i < group->count; i++) {
        const struct option_spec *spec = &group->specs[i];
        if (in_gateway && (spec->flags & OPTF_NOT_IN_GATEWAY))
            continue;
        config_format_value(spec, base, value, sizeof value);
        fprintf(out, "; %s\n%s = %s\n", spec->help, spec->name, value);
    }
}

void
config_dump(const struct config *cfg, FILE *out)
{
    static const struct option_group gw = GROUP(gateway_options), lo = GROUP(listener_options),
                                     ll = GROUP(listener_limit_options), ro = GROUP(route_options),
                                     rl = GROUP(route_limit_options);

    fprintf(out, "; effective configuration of %s\n\n[gateway]\n", cfg->source);
    config_dump_group(out, &gw, cfg, true);
    config_dump_group(out, &ll, &cfg->listener_defaults, true);
    config_dump_group(out, &rl, &cfg->route_defaults, true);
    for (size_t i = 0; i < cfg->listener_count; i++) {
        fprintf(out, "\n[listener:%s]\n", cfg->listeners[i].head.name);
        config_dump_group(out, &lo, &cfg->listeners[i], false);
        config_dump_group(out, &ll, &cfg->listeners[i].limits, false);
    }
    for (size_t i = 0; i < cfg->route_count; i++) {
        fprintf(out, "\n[route:%s]\n", cfg->route_configs[i].head.name);
        config_dump_group(out, &ro, &cfg->route_configs[i], false);
        config_dump_group(out, &rl, &cfg->route_configs[i].limits, false);
    }
}
