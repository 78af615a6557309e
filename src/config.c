/* config.c - INI configuration. Each section kind has declarative option tables (the
 * only place an option's type, bounds, default and help live); a line-counting reader
 * feeds inih so every error carries file:line, and all errors are collected. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "tls.h"
#include "webroot.h"

#define CONFIG_MAX_LINE  4096 /* longer lines are errors, never split */
#define SECTION_NAME_MAX 48   /* inih keeps 50 bytes of a section name */

enum option_type {
    OPT_LOG_LEVEL,
    OPT_UINT,       /* decimal */
    OPT_BYTES,      /* decimal with an optional k, M or G suffix (powers of 1024) */
    OPT_SECONDS,    /* decimal seconds, up to 3 fraction digits; stored as milliseconds */
    OPT_RATE,       /* events per second, up to 3 fraction digits; stored times 1000 */
    OPT_BIND,       /* [host:]port for listening */
    OPT_TARGET,     /* host:port or unix:/path */
    OPT_PATH,       /* URL path pattern: "/exact" or "/prefix*" */
    OPT_FILE,       /* a file name */
    OPT_STRING,     /* free text (cipher lists) */
    OPT_FILES,      /* file names, separated by spaces or commas */
    OPT_CERT_NAMES, /* certificate names, separated by commas (they may hold spaces) */
    OPT_BOOL,       /* yes/no, true/false, on/off, 1/0 */
    OPT_CHOICE,     /* one of spec->choices ("a|b|c"), stored as its index */
    OPT_HOSTS,      /* host names, "*.suffix" wildcards, or "*" for any */
    OPT_NAMES,      /* section names, or "*" for all */
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
    uint64_t min, max; /* integer bounds; OPT_SECONDS and OPT_RATE times 1000 */
    unsigned flags;
    const char *def; /* default, in file syntax; NULL when there is none */
    const char *help;
    const char *choices; /* OPT_CHOICE: "a|b|c" */
};

#define FIELD(type, member) offsetof(type, member), sizeof(((type *)0)->member)
#define MS(s)               ((uint64_t)(s)*1000)
#define MIB(n)              ((uint64_t)(n) << 20)

static const struct option_spec gateway_options[] = {
    {"log_level", OPT_LOG_LEVEL, FIELD(struct config, log_level), 0, 0, 0, "info",
     "error | warn | info | debug (-v on the command line means debug)", NULL},
    {"max_sessions", OPT_UINT, FIELD(struct config, max_sessions), 0, 10000000, 0, "0",
     "most concurrent connections in all; more get 503. 0 = as many as the descriptor limit allows", NULL},
    {"workers", OPT_UINT, FIELD(struct config, workers), 0, 256, 0, "1",
     "event-loop threads, each accepting on its own SO_REUSEPORT socket; 0 = one per core. A change needs a "
     "restart",
     NULL},
    {"drain_timeout_s", OPT_SECONDS, FIELD(struct config, drain_timeout_ms), 0, MS(3600), 0, "5",
     "on SIGTERM/SIGINT: how long sessions get to close after close 1001 before the process exits", NULL},
    {"resolver", OPT_CHOICE, FIELD(struct config, resolver), 0, 0, 0, "system",
     "how backend host names are resolved: system = getaddrinfo on helper threads (/etc/hosts, nsswitch, "
     "name servers in order, as every program here); evdns = libevent's resolver, no threads, rotates over "
     "the "
     "name servers of resolv_conf",
     "system|evdns"},
    {"resolv_conf", OPT_FILE, FIELD(struct config, resolv_conf), 0, 0, 0, NULL,
     "resolver = evdns only: its name servers (unset: /etc/resolv.conf), read when the first name is "
     "resolved; /etc/hosts is read too",
     NULL},
};

/* Positions of the options that validation refers to, checked against the tables below. */
enum { LISTENER_OPT_BIND = 0 };
enum { ROUTE_OPT_PATH = 0, ROUTE_OPT_LISTENER = 2 };

#define LTLS(member) FIELD(struct listener_config, tls.member)
static const struct option_spec listener_options[] = {
    {"bind", OPT_BIND, FIELD(struct listener_config, bind), 0, 0, OPTF_REQUIRED, NULL,
     "address to listen on: host:port, [v6]:port, or *:port / port for every address", NULL},
    {"tls_cert", OPT_FILES, LTLS(certs), 0, 0, 0, NULL,
     "PEM certificate chains (wss://); several are chosen by SNI, the first is the default", NULL},
    {"tls_key", OPT_FILES, LTLS(keys), 0, 0, 0, NULL,
     "private keys, one per tls_cert; unset: each cert file holds its key", NULL},
    {"tls_key_password_file", OPT_FILE, LTLS(key_password_file), 0, 0, 0, NULL,
     "file whose first line is the keys' passphrase (never on the command line)", NULL},
    {"tls_key_password_env", OPT_STRING, LTLS(key_password_env), 0, 0, 0, NULL,
     "environment variable that holds the keys' passphrase", NULL},
    {"tls_only", OPT_BOOL, LTLS(only), 0, 0, 0, "no",
     "refuse plain ws:// on this port (by default both are served, told apart by the first byte)", NULL},
    {"tls_min_version", OPT_CHOICE, LTLS(min_version), 0, 0, 0, "1.2",
     "oldest TLS version accepted: 1.2 | 1.3", "1.2|1.3"},
    {"tls_ciphers", OPT_STRING, LTLS(ciphers), 0, 0, 0, TLS_CIPHERS_DEFAULT,
     "TLS 1.2 cipher list (OpenSSL syntax), server's order; the default allows only forward-secret AEAD",
     NULL},
    {"tls_ciphersuites", OPT_STRING, LTLS(ciphersuites), 0, 0, 0, TLS_CIPHERSUITES_DEFAULT,
     "TLS 1.3 cipher suites, in the server's order of preference", NULL},
    {"tls_client_ca", OPT_FILE, LTLS(client_ca), 0, 0, 0, NULL,
     "CA certificates that sign acceptable client certificates", NULL},
    {"tls_verify_client", OPT_CHOICE, LTLS(verify_client), 0, 0, 0, "none",
     "client certificates: none | optional (checked when sent) | require (else 403)",
     "none|optional|require"},
    {"web_root", OPT_FILE, FIELD(struct listener_config, web_root), 0, 0, 0, NULL,
     "directory whose files answer requests without a WebSocket upgrade (GET, HEAD); unset: 426", NULL},
    {"web_listing", OPT_BOOL, FIELD(struct listener_config, web_listing), 0, 0, 0, "no",
     "list the files of a directory that has no index.html (else 403)", NULL},
};

static const struct option_spec listener_limit_options[] = {
    {"handshake_timeout_s", OPT_SECONDS, FIELD(struct listener_limits, handshake_timeout_ms), 100, MS(3600),
     0, "10", "the whole upgrade request must arrive within this time, or the connection is closed (408)",
     NULL},
    {"max_request_bytes", OPT_BYTES, FIELD(struct listener_limits, max_request_bytes), 1024, MIB(1), 0, "16k",
     "largest upgrade request head; larger ones get 431", NULL},
    {"max_pending_handshakes", OPT_UINT, FIELD(struct listener_limits, max_pending_handshakes), 0, 10000000,
     0, "1024",
     "most connections accepted but not yet upgraded (TLS and upgrade handshakes, backend connects); more "
     "get "
     "503, or are closed at once on a TLS listener. 0 = no limit",
     NULL},
    {"max_sessions_per_ip", OPT_UINT, FIELD(struct listener_limits, max_sessions_per_ip), 0, 10000000, 0, "0",
     "most concurrent connections from one client address (an IPv6 client: its per_ip_v6_prefix); more get "
     "429. 0 = no limit",
     NULL},
    {"handshake_rate_per_ip", OPT_RATE, FIELD(struct listener_limits, handshake_rate_per_ip_milli), 0,
     MS(1000000), 0, "0",
     "new connections per second from one client address, after a burst of handshake_burst_per_ip; more get "
     "429 with Retry-After. 0 = no limit",
     NULL},
    {"handshake_burst_per_ip", OPT_UINT, FIELD(struct listener_limits, handshake_burst_per_ip), 1, 1000000, 0,
     "10", "new connections one client address may open at once before handshake_rate_per_ip applies", NULL},
    {"per_ip_v6_prefix", OPT_UINT, FIELD(struct listener_limits, per_ip_v6_prefix), 8, 128, 0, "64",
     "IPv6 clients count as one address per prefix of this length for the per-IP limits", NULL},
};

static const struct option_spec route_options[] = {
    {"path", OPT_PATH, FIELD(struct route_config, path), 0, 0, OPTF_REQUIRED, NULL,
     "URL path: /exact, or /prefix* to match everything below; the query string is ignored", NULL},
    {"host", OPT_HOSTS, FIELD(struct route_config, hosts), 0, 0, 0, "*",
     "virtual hosts (Host header, port ignored): names or *.domain wildcards; * = any host", NULL},
    {"listener", OPT_NAMES, FIELD(struct route_config, listeners), 0, 0, 0, "*",
     "names of the [listener:NAME] sections that serve this route; * = all", NULL},
    {"target", OPT_TARGET, FIELD(struct route_config, target), 0, 0, OPTF_REQUIRED, NULL,
     "backend: host:port, [v6]:port or unix:/path; names are resolved per connection", NULL},
    {"client_cert_names", OPT_CERT_NAMES, FIELD(struct route_config, client_cert_names), 0, 0, 0, NULL,
     "only clients whose certificate's subject CN or a SAN is one of these (comma-separated) get this route; "
     "else 403",
     NULL},
    {"target_tls", OPT_BOOL, FIELD(struct route_config, target_tls), 0, 0, 0, "no",
     "speak TLS to the backend", NULL},
    {"target_tls_ca", OPT_FILE, FIELD(struct route_config, target_tls_ca), 0, 0, 0, NULL,
     "CA certificates to verify the backend with; unset: the system's trust store", NULL},
    {"target_tls_server_name", OPT_STRING, FIELD(struct route_config, target_tls_server_name), 0, 0, 0, NULL,
     "name sent as SNI and verified in the backend's certificate; unset: the target host", NULL},
    {"target_tls_verify", OPT_BOOL, FIELD(struct route_config, target_tls_verify), 0, 0, 0, "yes",
     "verify the backend's certificate and name (turn off only for testing)", NULL},
    {"target_tls_cert", OPT_FILE, FIELD(struct route_config, target_tls_cert), 0, 0, 0, NULL,
     "client certificate (PEM chain) to present to the backend", NULL},
    {"target_tls_key", OPT_FILE, FIELD(struct route_config, target_tls_key), 0, 0, 0, NULL,
     "key for target_tls_cert; unset: the cert file holds it", NULL},
    {"frame_mode", OPT_CHOICE, FIELD(struct route_config, frame_mode), 0, 0, 0, "binary",
     "binary: backend bytes as binary messages | text: as text messages of valid UTF-8 | lines: each backend "
     "line one text message, each client message one line (CRLF added)",
     "binary|text|lines"},
    {"text_invalid", OPT_CHOICE, FIELD(struct route_config, text_invalid), 0, 0, 0, "replace",
     "text and lines modes, backend bytes that are not UTF-8: replace (with U+FFFD) | close (1011)",
     "replace|close"},
};

static const struct option_spec route_limit_options[] = {
    {"connect_timeout_s", OPT_SECONDS, FIELD(struct limits, connect_timeout_ms), 10, MS(3600), 0, "10",
     "time allowed for each backend address tried; if every try fails the client gets 502, or 504 on "
     "timeout",
     NULL},
    {"idle_timeout_s", OPT_SECONDS, FIELD(struct limits, idle_timeout_ms), 0, MS(7 * 86400), 0, "0",
     "close a session with 1001 after this long without payload either way; 0 = never", NULL},
    {"close_timeout_s", OPT_SECONDS, FIELD(struct limits, close_timeout_ms), 10, MS(600), 0, "5",
     "how long a close handshake and the final flush of both sides may take", NULL},
    {"ping_interval_s", OPT_SECONDS, FIELD(struct limits, ping_interval_ms), 0, MS(86400), 0, "30",
     "send a ping after this long without a frame from the client; 0 = never", NULL},
    {"ping_timeout_s", OPT_SECONDS, FIELD(struct limits, ping_timeout_ms), 10, MS(3600), 0, "30",
     "close the session if the client sends nothing this long after a ping", NULL},
    {"max_frame_bytes", OPT_BYTES, FIELD(struct limits, max_frame_bytes), 125, UINT64_C(1) << 62, 0, "16M",
     "largest client frame payload; larger frames get close 1009", NULL},
    {"max_message_bytes", OPT_BYTES, FIELD(struct limits, max_message_bytes), 0, UINT64_C(1) << 62, 0, "64M",
     "largest client message (fragments summed); larger get close 1009. 0 = no limit", NULL},
    {"buffer_bytes", OPT_BYTES, FIELD(struct limits, buffer_bytes), 4096, MIB(64), 0, "256k",
     "high-water mark of each direction's queue: reading stops above it (backpressure)", NULL},
    {"max_sessions", OPT_UINT, FIELD(struct limits, max_sessions), 0, 10000000, OPTF_NOT_IN_GATEWAY, "0",
     "most concurrent sessions on this route; more get 503. 0 = no route limit", NULL},
    {"max_session_s", OPT_SECONDS, FIELD(struct limits, max_session_ms), 0, MS(30 * 86400), 0, "0",
     "close a session with 1008 this long after its upgrade, however busy; 0 = no limit", NULL},
    {"max_line_bytes", OPT_BYTES, FIELD(struct limits, max_line_bytes), 1, MIB(16), 0, "64k",
     "lines mode: longest backend line, its line end not counted; a longer one closes the session with 1009",
     NULL},
    {"splice_min_bytes", OPT_BYTES, FIELD(struct limits, splice_min_bytes), 0, MIB(64), 0, "16k",
     "binary frames to a ws:// client from a plain backend: when at least this much backend data waits, it "
     "goes to the client with splice(2) behind its frame header, never copied through the gateway; smaller "
     "reads are copied. 0 = always copy",
     NULL},
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

/* A decimal with up to 3 fraction digits, times 1000: seconds as milliseconds, or a rate
 * per second as events per 1000 seconds. */
static const char *
config_parse_milli(const char *v, bool is_rate, uint64_t *out)
{
    const char *bad =
        is_rate ? "expected a rate per second, such as 10 or 0.5" : "expected seconds, such as 10 or 0.5";
    uint64_t whole = 0, frac = 0;
    unsigned frac_digits = 0;
    const char *p = v;

    if (*p == '\0' || *p == '.')
        return bad;
    for (; *p >= '0' && *p <= '9'; p++) {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole > UINT64_C(1) << 40)
            return is_rate ? "rate too large" : "duration too large";
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (++frac_digits > 3)
                return is_rate ? "at most 3 decimals" : "at most 3 decimals (milliseconds)";
            frac = frac * 10 + (uint64_t)(*p - '0');
        }
        if (frac_digits == 0)
            return bad;
    }
    if (*p != '\0')
        return bad;
    while (frac_digits++ < 3)
        frac *= 10;
    *out = whole * 1000 + frac;
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

/* Split a list option. Host and section names split on commas and whitespace, and "*"
 * alone means the empty list (any); file names split the same way with no "*"; certificate
 * names split on commas only, since a CN may contain spaces. */
static const char *
config_parse_list(const char *v, enum option_type type, struct str_list *out)
{
    struct str_list l = {0};
    const char *p = v;
    const char *seps = type == OPT_CERT_NAMES ? "," : ", \t";

    if ((type == OPT_HOSTS || type == OPT_NAMES) && strcmp(v, "*") == 0) {
        str_list_clear(out);
        return NULL;
    }
    while (*p) {
        while (*p && strchr(seps, *p))
            p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *start = p;
        while (*p && !strchr(seps, *p))
            p++;
        size_t len = (size_t)(p - start);
        while (len > 0 && (start[len - 1] == ' ' || start[len - 1] == '\t'))
            len--;
        if (str_list_push(&l, start, len) == -1) {
            str_list_clear(&l);
            return "out of memory";
        }
        char *item = l.items[l.count - 1];
        if (type == OPT_HOSTS) {
            for (char *c = item; *c; c++)
                *c = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
        }
        if (type == OPT_HOSTS || type == OPT_NAMES) {
            const char *check = item;
            if (type == OPT_HOSTS && len > 2 && item[0] == '*' && item[1] == '.')
                check = item + 2;
            bool ok = *check != '\0' && len <= ADDR_HOST_MAX;
            for (const char *c = check; ok && *c; c++)
                ok = config_is_name_char(*c) && !(type == OPT_HOSTS && *c == '_');
            if (!ok) {
                str_list_clear(&l);
                return type == OPT_HOSTS ? "expected host names or *.domain wildcards"
                                         : "expected section names";
            }
        }
    }
    if (l.count == 0)
        return type == OPT_HOSTS || type == OPT_NAMES ? "empty list (use * for any)" : "empty list";
    str_list_clear(out);
    *out = l;
    return NULL;
}

static const char *
config_parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return NULL;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return NULL;
        }
    }
    return "expected yes or no";
}

/* The index of 'v' in "a|b|c", or -1. */
static int
config_choice_index(const char *choices, const char *v)
{
    size_t vlen = strlen(v);
    int index = 0;

    for (const char *p = choices;; index++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && strncmp(p, v, len) == 0)
            return index;
        if (bar == NULL)
            return -1;
        p = bar + 1;
    }
}

/* The text of choice 'index' of "a|b|c" into 'buf'. */
static void
config_choice_text(const char *choices, uint32_t index, char *buf, size_t size)
{
    const char *p = choices;

    for (uint32_t i = 0; i < index && p != NULL; i++) {
        p = strchr(p, '|');
        if (p != NULL)
            p++;
    }
    if (p == NULL) {
        snprintf(buf, size, "?");
        return;
    }
    const char *bar = strchr(p, '|');
    snprintf(buf, size, "%.*s", (int)(bar ? (size_t)(bar - p) : strlen(p)), p);
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

/* A value stored times 1000 (OPT_SECONDS, OPT_RATE) as written: "10", "0.5", "2592000". */
static void
config_milli_text(uint64_t n, char *buf, size_t size)
{
    if (n % 1000 == 0) {
        snprintf(buf, size, "%llu", (unsigned long long)(n / 1000));
        return;
    }
    unsigned frac = (unsigned)(n % 1000), digits = 3;
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(buf, size, "%llu.%0*u", (unsigned long long)(n / 1000), (int)digits, frac);
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
    case OPT_RATE:
        err = config_parse_milli(value, spec->type == OPT_RATE, &n);
        break;
    case OPT_BIND:
        ar = addr_parse(value, ADDR_ALLOW_NO_HOST | ADDR_ALLOW_PORT_ZERO, (struct addr *)field);
        if (ar == ADDR_BAD_PORT)
            return "port must be a number from 0 to 65535";
        return ar == ADDR_OK ? NULL : addr_parse_result_str(ar);
    case OPT_TARGET:
        ar = addr_parse(value, ADDR_ALLOW_UNIX, (struct addr *)field);
        return ar == ADDR_OK ? NULL : addr_parse_result_str(ar);
    case OPT_BOOL:
        return config_parse_bool(value, (bool *)field);
    case OPT_CHOICE: {
        int i = config_choice_index(spec->choices, value);
        if (i < 0) {
            snprintf(msg, msg_size, "expected one of %s", spec->choices);
            return msg;
        }
        config_store_uint(field, spec->size, (uint64_t)i);
        return NULL;
    }
    case OPT_PATH:
    case OPT_FILE:
    case OPT_STRING:
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
    case OPT_FILES:
    case OPT_CERT_NAMES:
        return config_parse_list(value, spec->type, (struct str_list *)field);
    }
    if (err != NULL)
        return err;
    if (n < spec->min || n > spec->max) {
        if (spec->type == OPT_SECONDS || spec->type == OPT_RATE) {
            char lo[32], hi[32];
            config_milli_text(spec->min, lo, sizeof lo);
            config_milli_text(spec->max, hi, sizeof hi);
            snprintf(msg, msg_size, "must be from %s to %s%s", lo, hi,
                     spec->type == OPT_SECONDS ? " seconds" : " per second");
        } else
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

/* The line on which a section set option 'i' of its table 'g', or 0 if it did not. */
static int
config_set_line(const struct option_marks *marks, size_t g, size_t i)
{
    return (marks->set[g] & (UINT64_C(1) << i)) ? marks->line[g][i] : 0;
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
            if (config_set_line(marks, g, i) > 0) {
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

static void config_free_group(const struct option_group *group, void *base);

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

/* The line on which the section set option 'name' of table 'g', or 0 if it did not. */
static int
config_key_line(const struct option_group *group, const struct option_marks *marks, size_t g,
                const char *name)
{
    for (size_t i = 0; i < group->count; i++)
        if (strcmp(group->specs[i].name, name) == 0)
            return config_set_line(marks, g, i);
    return 0;
}

/* Report every option of a section's first group whose name starts with 'prefix' and
 * that the section sets: the option they depend on is not set ('why' says which). */
static void
config_refuse_prefixed(struct config *cfg, const struct option_group *group, const struct option_marks *marks,
                       const char *prefix, const char *label, const char *why)
{
    for (size_t i = 0; i < group->count; i++) {
        const char *name = group->specs[i].name;
        if (config_set_line(marks, 0, i) > 0 && strncmp(name, prefix, strlen(prefix)) == 0)
            config_error_at(cfg, marks->line[0][i], label, name, "%s", why);
    }
}

/* Listener TLS options: consistent, and loadable (certificates are read now, so a bad one
 * stops the start with its file:line). */
static void
config_validate_listener_tls(struct config *cfg, struct listener_config *l, const struct option_group *lo,
                             const char *label)
{
    int cert_line = config_key_line(lo, &l->marks, 0, "tls_cert");
    char err[512];

    if (cert_line == 0) {
        config_refuse_prefixed(cfg, lo, &l->marks, "tls_", label, "needs tls_cert in this section");
        return;
    }
    int key_line = config_key_line(lo, &l->marks, 0, "tls_key");
    if (l->tls.keys.count != 0 && l->tls.keys.count != l->tls.certs.count) {
        config_error_at(cfg, key_line, label, "tls_key",
                        "%zu key files for %zu certificates (give one per tls_cert, or none)",
                        l->tls.keys.count, l->tls.certs.count);
        return;
    }
    if (l->tls.verify_client != TLS_VERIFY_NONE && l->tls.client_ca == NULL) {
        config_error_at(cfg, config_key_line(lo, &l->marks, 0, "tls_verify_client"), label,
                        "tls_verify_client", "needs tls_client_ca");
        return;
    }
    l->tls_server = tls_server_new(&l->tls, err, sizeof err);
    if (l->tls_server == NULL)
        config_error_at(cfg, cert_line, label, "tls_cert", "%s", err);
}

/* A web root must be a directory we can open beneath (checked now, so the start fails
 * with file:line rather than every request with 500). */
static void
config_validate_listener_web(struct config *cfg, struct listener_config *l, const struct option_group *lo,
                             const char *label)
{
    int root_line = config_key_line(lo, &l->marks, 0, "web_root");
    char err[512];

    if (root_line == 0) {
        int line = config_key_line(lo, &l->marks, 0, "web_listing");
        if (line > 0)
            config_error_at(cfg, line, label, "web_listing", "needs web_root in this section");
        return;
    }
    l->webroot = webroot_new(l->web_root, l->web_listing, err, sizeof err);
    if (l->webroot == NULL)
        config_error_at(cfg, root_line, label, "web_root", "%s", err);
}

/* Options of the text modes need a route in one. */
static void
config_validate_route_framing(struct config *cfg, const struct route_config *r, const struct option_group *ro,
                              const struct option_group *rl, const char *label)
{
    int line = config_key_line(ro, &r->marks, 0, "text_invalid");

    if (line > 0 && r->frame_mode == ROUTE_FRAME_BINARY)
        config_error_at(cfg, line, label, "text_invalid", "needs frame_mode = text or lines");
    line = config_key_line(rl, &r->marks, 1, "max_line_bytes");
    if (line > 0 && r->frame_mode != ROUTE_FRAME_LINES)
        config_error_at(cfg, line, label, "max_line_bytes", "needs frame_mode = lines");
}

static void
config_validate_route_tls(struct config *cfg, struct route_config *r, const struct option_group *ro,
                          const char *label)
{
    if (!r->target_tls) {
        config_refuse_prefixed(cfg, ro, &r->marks, "target_tls_", label, "needs target_tls = yes");
    } else {
        char err[512];
        r->target_tls_client = tls_client_new(r, err, sizeof err);
        if (r->target_tls_client == NULL)
            config_error_at(cfg, config_key_line(ro, &r->marks, 0, "target_tls"), label, "target_tls", "%s",
                            err);
    }
    if (r->client_cert_names.count == 0)
        return;
    /* An allow-list is only meaningful where client certificates are asked for. */
    int line = config_key_line(ro, &r->marks, 0, "client_cert_names");
    for (size_t i = 0; i < cfg->listener_count; i++) {
        const struct listener_config *l = &cfg->listeners[i];
        bool serves = r->listeners.count == 0;
        for (size_t k = 0; k < r->listeners.count; k++)
            serves = serves || strcmp(r->listeners.items[k], l->head.name) == 0;
        if (serves && l->tls.verify_client == TLS_VERIFY_NONE)
            config_error_at(cfg, line, label, "client_cert_names",
                            "[listener:%s] serves this route without tls_verify_client", l->head.name);
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
    bool serves_files = false;
    for (size_t i = 0; i < cfg->listener_count; i++)
        serves_files = serves_files || cfg->listeners[i].web_root != NULL;
    if (cfg->route_count == 0 && !serves_files)
        config_error_at(cfg, 0, NULL, NULL, "no [route:NAME] section: nothing to proxy to");
    if (cfg->listener_count > ROUTE_MAX_LISTENERS)
        config_error_at(cfg, 0, NULL, NULL, "more than %d listeners", ROUTE_MAX_LISTENERS);
    if (cfg->resolver == RESOLVER_SYSTEM) {
        static const struct option_group gw = GROUP(gateway_options);
        int line = config_key_line(&gw, &cfg->marks, 0, "resolv_conf");
        if (line > 0)
            config_error_at(
                cfg, line, "gateway", "resolv_conf",
                "applies only with resolver = evdns (the system resolver reads /etc/resolv.conf)");
    }

    for (size_t i = 0; i < cfg->listener_count; i++) {
        struct listener_config *l = &cfg->listeners[i];
        char llabel[SECTION_NAME_MAX + 16];
        snprintf(llabel, sizeof llabel, "listener:%s", l->head.name);
        config_check_required(cfg, &lo, l->marks.set[0], l->head.line, "listener", l->head.name);
        config_inherit(&ll, l->marks.set[1], &l->limits, &cfg->listener_defaults);
        config_validate_listener_tls(cfg, l, &lo, llabel);
        config_validate_listener_web(cfg, l, &lo, llabel);
        if (config_set_line(&l->marks, 0, LISTENER_OPT_BIND) == 0)
            continue;
        for (size_t j = 0; j < i; j++) {
            struct listener_config *o = &cfg->listeners[j];
            if (config_set_line(&o->marks, 0, LISTENER_OPT_BIND) > 0 && o->bind.port != 0 &&
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
        config_validate_route_tls(cfg, r, &ro, label);
        config_validate_route_framing(cfg, r, &ro, &rl, label);
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
        r.cert_names = rc->client_cert_names.items;
        r.cert_name_count = rc->client_cert_names.count;
        r.target_tls = rc->target_tls_client;
        r.frame_mode = (enum route_frame_mode)rc->frame_mode;
        r.text_invalid = (enum route_text_invalid)rc->text_invalid;
        int rv = route_table_add(cfg->routes, &r);
        free(path);
        if (rv == -1)
            return -1;
        if (rc->target_tls_client != NULL) {
            /* The table may outlive this config (sessions hold it across reloads). */
            if (route_table_attach(cfg->routes, rc->target_tls_client, tls_client_free) == -1)
                return -1;
            rc->target_tls_client = NULL;
        }
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
    atomic_init(&cfg->refs, 1);
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
config_ref(struct config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
}

void
config_free(struct config *cfg)
{
    struct option_group groups[3];
    void *bases[3];
    struct option_marks *marks;

    if (cfg == NULL || atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < cfg->listener_count; i++) {
        size_t n = config_groups(cfg, SECTION_LISTENER, i, groups, bases, &marks);
        for (size_t g = 0; g < n; g++)
            config_free_group(&groups[g], bases[g]);
        tls_server_unref(cfg->listeners[i].tls_server);
        webroot_unref(cfg->listeners[i].webroot);
        free(cfg->listeners[i].head.name);
    }
    free(cfg->listeners);
    for (size_t i = 0; i < cfg->route_count; i++) {
        size_t n = config_groups(cfg, SECTION_ROUTE, i, groups, bases, &marks);
        for (size_t g = 0; g < n; g++)
            config_free_group(&groups[g], bases[g]);
        if (cfg->route_configs[i].target_tls_client != NULL)
            tls_client_free(cfg->route_configs[i].target_tls_client);
        free(cfg->route_configs[i].head.name);
    }
    free(cfg->route_configs);
    size_t n = config_groups(cfg, SECTION_GATEWAY, 0, groups, bases, &marks);
    for (size_t g = 0; g < n; g++)
        config_free_group(&groups[g], bases[g]);
    route_table_unref(cfg->routes);
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

/* Format an option's value; returns false when it is unset (no default, not given). */
static bool
config_format_value(const struct option_spec *spec, const void *base, char *buf, size_t size)
{
    const void *field = (const char *)base + spec->offset;
    uint64_t n;

    buf[0] = '\0';
    switch (spec->type) {
    case OPT_LOG_LEVEL:
        snprintf(buf, size, "%s", log_level_str(*(const enum log_level *)field));
        return true;
    case OPT_UINT:
        snprintf(buf, size, "%llu", (unsigned long long)config_load_uint(field, spec->size));
        return true;
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
        return true;
    case OPT_SECONDS:
    case OPT_RATE:
        config_milli_text(config_load_uint(field, spec->size), buf, size);
        return true;
    case OPT_BOOL:
        snprintf(buf, size, "%s", *(const bool *)field ? "yes" : "no");
        return true;
    case OPT_CHOICE:
        config_choice_text(spec->choices, (uint32_t)config_load_uint(field, spec->size), buf, size);
        return true;
    case OPT_BIND:
    case OPT_TARGET:
        addr_format((const struct addr *)field, buf, size);
        return true;
    case OPT_PATH:
    case OPT_FILE:
    case OPT_STRING:
        snprintf(buf, size, "%s", *(char *const *)field ? *(char *const *)field : "");
        return *(char *const *)field != NULL;
    case OPT_HOSTS:
    case OPT_NAMES:
    case OPT_FILES:
    case OPT_CERT_NAMES: {
        const struct str_list *l = field;
        const char *sep = spec->type == OPT_CERT_NAMES ? ", " : " ";
        size_t o = 0;
        if (l->count == 0 && (spec->type == OPT_HOSTS || spec->type == OPT_NAMES))
            snprintf(buf, size, "*");
        for (size_t i = 0; i < l->count && o < size; i++)
            o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? sep : "", l->items[i]);
        return l->count > 0 || spec->type == OPT_HOSTS || spec->type == OPT_NAMES;
    }
    }
    return false;
}

/* Free what an option table's string and list fields hold. */
static void
config_free_group(const struct option_group *group, void *base)
{
    for (size_t i = 0; i < group->count; i++) {
        void *field = (char *)base + group->specs[i].offset;
        switch (group->specs[i].type) {
        case OPT_PATH:
        case OPT_FILE:
        case OPT_STRING:
            free(*(char **)field);
            *(char **)field = NULL;
            break;
        case OPT_HOSTS:
        case OPT_NAMES:
        case OPT_FILES:
        case OPT_CERT_NAMES:
            str_list_clear(field);
            break;
        default:
            break;
        }
    }
}

static void
config_dump_group(FILE *out, const struct option_group *group, const void *base, const void *inherited,
                  bool in_gateway, const struct option_marks *marks, size_t g)
{
    char value[512], from[512];

    for (size_t i = 0; i < group->count; i++) {
        const struct option_spec *spec = &group->specs[i];
        if (in_gateway && (spec->flags & OPTF_NOT_IN_GATEWAY))
            continue;
        bool set = config_set_line(marks, g, i) > 0;
        if (!config_format_value(spec, base, value, sizeof value))
            fprintf(out, "; %s\n;%s =\n", spec->help, spec->name); /* unset */
        else if (!set && ((spec->def != NULL && strcmp(value, spec->def) == 0) ||
                          (inherited != NULL && config_format_value(spec, inherited, from, sizeof from) &&
                           strcmp(value, from) == 0)))
            fprintf(out, "; %s\n;%s = %s\n", spec->help, spec->name, value); /* default or inherited */
        else
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
    config_dump_group(out, &gw, cfg, NULL, true, &cfg->marks, 0);
    config_dump_group(out, &ll, &cfg->listener_defaults, NULL, true, &cfg->marks, 1);
    config_dump_group(out, &rl, &cfg->route_defaults, NULL, true, &cfg->marks, 2);
    for (size_t i = 0; i < cfg->listener_count; i++) {
        const struct listener_config *l = &cfg->listeners[i];
        fprintf(out, "\n[listener:%s]\n", l->head.name);
        config_dump_group(out, &lo, l, NULL, false, &l->marks, 0);
        config_dump_group(out, &ll, &l->limits, &cfg->listener_defaults, false, &l->marks, 1);
    }
    for (size_t i = 0; i < cfg->route_count; i++) {
        const struct route_config *r = &cfg->route_configs[i];
        fprintf(out, "\n[route:%s]\n", r->head.name);
        config_dump_group(out, &ro, r, NULL, false, &r->marks, 0);
        config_dump_group(out, &rl, &r->limits, &cfg->route_defaults, false, &r->marks, 1);
    }
}
