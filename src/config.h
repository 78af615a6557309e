/* config.h - the INI configuration: option tables, parsing through inih, defaults,
 * cross-section validation, and the effective-config dump. It builds the route table;
 * it opens no sockets. */
#ifndef WSPLICE_CONFIG_H
#define WSPLICE_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "log.h"
#include "resolver.h"
#include "route.h"

/* Handshake and admission limits: per listener, [gateway] gives the defaults. */
struct listener_limits {
    uint32_t handshake_timeout_ms;        /* the whole request head must arrive in this time */
    uint32_t max_request_bytes;           /* request heads above this get 431 */
    uint32_t max_pending_handshakes;      /* accepted, not yet upgraded; more get 503. 0: no limit */
    uint32_t max_sessions_per_ip;         /* connections per client address group; more get 429 */
    uint32_t handshake_rate_per_ip_milli; /* new connections per second per group, x1000; 0: no limit */
    uint32_t handshake_burst_per_ip;      /* the token bucket's size */
    uint32_t per_ip_v6_prefix;            /* IPv6 clients are grouped by this prefix length */
};

struct str_list {
    char **items;
    size_t count;
};

#define CONFIG_MAX_GROUP_OPTIONS 16

/* Which options a section set, and on which line, per option table of the section. */
struct option_marks {
    uint64_t set[3];
    int line[3][CONFIG_MAX_GROUP_OPTIONS];
};

/* The first member of every named section's struct. */
struct section_head {
    char *name;
    int line; /* of the section header */
};

enum tls_verify_client {
    TLS_VERIFY_NONE = 0,
    TLS_VERIFY_OPTIONAL, /* ask; a certificate that is sent must verify */
    TLS_VERIFY_REQUIRE,  /* no valid certificate: 403 before the upgrade */
};

enum tls_min_version {
    TLS_MIN_1_2 = 0,
    TLS_MIN_1_3,
};

/* A listener's tls_* options, as written. */
struct listener_tls_config {
    struct str_list certs;   /* PEM chains; the first is the default for SNI */
    struct str_list keys;    /* one per cert; empty: each cert file holds its key */
    char *key_password_file; /* first line is the passphrase */
    char *key_password_env;  /* name of an environment variable holding it */
    bool only;               /* refuse plain WebSocket on this port */
    uint32_t min_version;    /* enum tls_min_version */
    char *ciphers;           /* TLS 1.2 cipher list */
    char *ciphersuites;      /* TLS 1.3 suites */
    char *client_ca;         /* CA file for client certificates */
    uint32_t verify_client;  /* enum tls_verify_client */
};

struct tls_server;
struct tls_client;
struct webroot;

struct listener_config {
    struct section_head head;
    struct addr bind;
    struct listener_limits limits;
    struct listener_tls_config tls;
    struct tls_server *tls_server; /* built from 'tls' when it has certificates; owned */
    char *web_root;                /* directory served to plain HTTP requests; NULL: none */
    bool web_listing;              /* list directories that have no index.html */
    struct webroot *webroot;       /* opened from web_root by validation; owned */
    struct option_marks marks;
};

struct route_config {
    struct section_head head;
    char *path; /* as written, '*' included */
    struct str_list hosts;
    struct str_list listeners; /* names; empty: every listener */
    struct addr target;
    struct limits limits;
    struct str_list client_cert_names; /* mTLS allow-list: subject CN or SAN values */
    bool target_tls;
    char *target_tls_ca;          /* CA file; unset: the system's trust store */
    char *target_tls_server_name; /* SNI and the name verified; unset: the target host */
    bool target_tls_verify;
    char *target_tls_cert, *target_tls_key; /* client certificate for the backend */
    struct tls_client *target_tls_client;   /* built when target_tls; moves to the route table */
    uint32_t frame_mode;                    /* enum route_frame_mode */
    uint32_t text_invalid;                  /* enum route_text_invalid */
    struct option_marks marks;
};

struct config_error {
    int line;   /* 0: about the whole file */
    char *text; /* "file:line: [section] key: what is wrong" */
};

struct config {
    atomic_uint refs; /* config_ref(); the last config_free() frees */
    char *source;     /* file name, or "command line" */
    enum log_level log_level;
    uint32_t max_sessions; /* 0: derived from the descriptor limit */
    uint32_t workers;      /* 0: one per core */
    uint32_t drain_timeout_ms;
    enum resolver_kind resolver;
    char *resolv_conf; /* resolver = evdns: its name servers */
    struct listener_limits listener_defaults;
    struct limits route_defaults;
    struct option_marks marks;

    struct listener_config *listeners;
    size_t listener_count;
    struct route_config *route_configs;
    size_t route_count;

    struct route_table *routes; /* built by a successful load; the config holds one reference */

    struct config_error *errors; /* in file order */
    size_t error_count;
};

/* Parse and validate a config file. Always returns a config (NULL only on ENOMEM); when
 * error_count > 0 it is unusable and the caller reports the errors and frees it. */
struct config *config_load_file(const char *path);

/* The same from INI text in memory; 'source' names it in error messages. */
struct config *config_load_string(const char *text, const char *source);

/* Configs are shared by the worker threads: config_ref() takes another reference, and
 * config_free() drops one (the last frees). NULL is ignored. */
void config_ref(struct config *cfg);
void config_free(struct config *cfg);

/* Print every error, one per line, to 'out'. */
void config_print_errors(const struct config *cfg, FILE *out);

/* Print the effective configuration (defaults filled in) as INI with each option's help
 * as a comment: what `wsplice -t -v` shows. */
void config_dump(const struct config *cfg, FILE *out);

/* Index of a listener by name, or -1. */
int config_listener_index(const struct config *cfg, const char *name);

#endif
