/* tls.h - OpenSSL contexts built from the config: a listener's server side (several
 * certificates chosen by SNI, optional client certificates) and a route's client side
 * (TLS to the backend). Also OpenSSL's error queue as log text. No sockets here. */
#ifndef WSPLICE_TLS_H
#define WSPLICE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"

struct tls_server;
struct tls_client;

enum tls_sniff {
    TLS_SNIFF_PLAIN = 0, /* an HTTP request (or garbage the HTTP parser will reject) */
    TLS_SNIFF_TLS,       /* a TLS handshake record, or an SSLv2-style hello */
};

/* Classify a connection by its first byte: 0x16 starts a TLS handshake record, and a set
 * high bit an SSLv2-style hello (handed to OpenSSL, which refuses it); HTTP starts with
 * a token character. Pure. */
enum tls_sniff tls_sniff_first_byte(uint8_t first);

/* Build a listener's server contexts from its tls_* options. Every certificate is
 * loaded and checked (readable, key matches, not expired); RSA and ECDSA certificates for
 * the same names share a context. On failure returns NULL and writes one line into 'err'.
 * The result has one reference. */
struct tls_server *tls_server_new(const struct listener_tls_config *cfg, char *err, size_t err_size);
void tls_server_ref(struct tls_server *srv);
void tls_server_unref(struct tls_server *srv);

/* A new SSL for an accepted connection, or NULL (errors logged). */
SSL *tls_server_ssl_new(struct tls_server *srv);
bool tls_server_only(const struct tls_server *srv);
enum tls_verify_client tls_server_verify_client(const struct tls_server *srv);

/* The client certificate verdict for an established server SSL (NULL: plain connection):
 * NULL if acceptable under 'mode', else a reason for the 403 (possibly written into 'buf').
 * 'allowed' (count may be 0) lists subject CN / SAN values of which the certificate must
 * carry one; an allow-list implies a certificate is required. */
const char *tls_client_cert_check(SSL *ssl, enum tls_verify_client mode, char *const *allowed,
                                  size_t allowed_count, char *buf, size_t size);

/* Build a route's backend context (target_tls_* options). NULL and 'err' on failure. */
struct tls_client *tls_client_new(const struct route_config *rc, char *err, size_t err_size);
void tls_client_free(void *client); /* a route table attachment destructor */

/* A new SSL to connect to the backend: SNI and hostname verification use the configured
 * server name, else the target host. NULL on failure (logged). */
SSL *tls_client_ssl_new(const struct tls_client *client);

/* Log and clear this thread's OpenSSL error queue, one line each, prefixed with 'what'. */
void log_tls_errors(const char *what);

/* A short description of a connection's TLS parameters ("TLSv1.3 TLS_AES_256_GCM_SHA384
 * sni=name") into 'buf'. */
const char *tls_describe(SSL *ssl, char *buf, size_t size);

#endif
