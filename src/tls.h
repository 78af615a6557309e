/* tls.h - OpenSSL contexts built from the config: a listener's server side (several
 * certificates chosen by SNI, optional client certificates) and a route's client side
 * (TLS to the backend), and BIOs that batch a relaying connection's reads and writes.
 * Also OpenSSL's error queue as log text. No sockets here. */
#ifndef WSPLICE_TLS_H
#define WSPLICE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"

struct tls_server;
struct tls_client;

/* Default cipher preferences (tls_ciphers, tls_ciphersuites), also offered to TLS backends:
 * forward-secret AEAD only, AES-128-GCM first. It is as safe as AES-256-GCM against any
 * attack in reach and encrypts about 5% faster, which wss:// streams feel. A client that
 * puts ChaCha20 first (no AES instructions) gets it (SSL_OP_PRIORITIZE_CHACHA). */
#define TLS_CIPHERS_DEFAULT      "ECDHE+AES128+AESGCM:ECDHE+AES256+AESGCM:ECDHE+CHACHA20"
#define TLS_CIPHERSUITES_DEFAULT "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

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

/* Large reads and writes for a relaying connection. Without help OpenSSL reads each
 * record with two read(2) calls (header, then body) and writes each record (at most 16 KiB)
 * with a write(2) of its own. tls_relay_start() swaps the BIOs of an established 'ssl': 0,
 * or -1 with nothing changed (no memory, or a TLS 1.2 connection that may renegotiate,
 * which needs bufferevent_openssl's own reads).
 *
 * Reads: the caller reads the socket itself, up to hundreds of KiB at once, and feeds the
 * bytes to a read BIO that hands them out as SSL_read asks. tls_feed_space() returns room
 * for what 'want' bytes leave beside those not yet read (its size in *len, possibly 0),
 * NULL without memory or a feed; tls_feed_commit() adds the 'n' bytes written there.
 * tls_feed_end() says no more will come: 'err' 0 for EOF (SSL_read then sees the peer's
 * close), else the errno of the failed read. tls_feed_pending() is true while SSL_read
 * can return data without more input; tls_feed_trim() frees the buffer once everything
 * fed was read, so idle connections hold none.
 *
 * Writes: the records SSL_write makes are held (up to 256 KiB) and go to the socket BIO
 * in one write when the buffer fills, when OpenSSL flushes (handshake messages, alerts
 * such as close_notify) or when the caller calls tls_batch_flush() at the end of a run of
 * writes: 1 everything went (also for an SSL without a batch), 0 some waits for the
 * socket to be writable, -1 the socket failed. The buffer is freed when empty. */
int tls_relay_start(SSL *ssl);
uint8_t *tls_feed_space(SSL *ssl, size_t want, size_t *len);
void tls_feed_commit(SSL *ssl, size_t n);
void tls_feed_end(SSL *ssl, int err);
bool tls_feed_pending(SSL *ssl);
void tls_feed_trim(SSL *ssl);
int tls_batch_flush(SSL *ssl);

/* Log and clear this thread's OpenSSL error queue, one line each, prefixed with 'what'. */
void log_tls_errors(const char *what);

/* A short description of a connection's TLS parameters ("TLSv1.3 TLS_AES_256_GCM_SHA384
 * sni=name") into 'buf'. */
const char *tls_describe(SSL *ssl, char *buf, size_t size);

#endif
