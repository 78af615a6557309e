/* tls.c - OpenSSL 3 contexts for listeners and backends. A listener's certificates are
 * grouped by the names they carry: one SSL_CTX per group (so an RSA and an ECDSA
 * certificate for the same names live side by side), chosen by SNI, the first group the
 * default. Client certificates are verified during the handshake but judged afterwards,
 * so a failure becomes an HTTP 403 with a reason instead of a bare TLS alert. */
#include "tls.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "log.h"

#define TLS_PASSWORD_MAX        1024
#define TLS_BATCH_MAX           (256 * 1024) /* records held before they go out in one write */
#define TLS_ERR(err, size, ...) snprintf((err), (size), __VA_ARGS__)

struct tls_group {
    SSL_CTX *ctx;
    char **names; /* lower-case DNS names (SAN, else CN) the group's certificates carry */
    size_t name_count;
};

struct tls_server {
    atomic_uint refs;
    struct tls_group *groups; /* groups[0] is the default */
    size_t group_count;
    bool only;
    enum tls_verify_client verify;
};

struct tls_client {
    SSL_CTX *ctx;
    char *server_name; /* SNI and verified name; NULL: none */
    bool name_is_ip;
    bool verify;
};

enum tls_sniff
tls_sniff_first_byte(uint8_t first)
{
    if (first == 0x16) /* TLS record type 22: handshake (RFC 8446 §5.1) */
        return TLS_SNIFF_TLS;
    if (first & 0x80) /* SSLv2-compatible hello: let OpenSSL refuse it properly */
        return TLS_SNIFF_TLS;
    return TLS_SNIFF_PLAIN;
}

void
log_tls_errors(const char *what)
{
    unsigned long e;
    char buf[256];

    while ((e = ERR_get_error()) != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        log_warn("tls %s: %s", what, buf);
    }
}

/* The most recent OpenSSL error as text (the queue is then cleared). */
static const char *
tls_last_error(char *buf, size_t size)
{
    unsigned long e, last = 0;

    while ((e = ERR_get_error()) != 0)
        last = e;
    if (last == 0)
        return "unknown error";
    ERR_error_string_n(last, buf, size);
    return buf;
}

/* TLS files must be regular files: a device or FIFO named by mistake (/dev/zero,
 * /dev/stdin) would block or never end the load. 0, or -1 with 'err'. */
static int
tls_check_file(const char *what, const char *path, char *err, size_t err_size)
{
    struct stat st;

    if (stat(path, &st) == -1) {
        TLS_ERR(err, err_size, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        TLS_ERR(err, err_size, "%s %s: not a regular file", what, path);
        return -1;
    }
    return 0;
}

static int
tls_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    const char *pw = userdata;
    (void)rwflag;
    if (pw == NULL)
        return 0;
    int n = (int)strlen(pw);
    if (n > size)
        n = size;
    memcpy(buf, pw, (size_t)n);
    return n;
}

/* The passphrase from tls_key_password_file or _env into 'pw'. 0, or -1 with 'err'. */
static int
tls_read_password(const struct listener_tls_config *cfg, char *pw, size_t size, char *err, size_t err_size)
{
    pw[0] = '\0';
    if (cfg->key_password_file != NULL) {
        if (tls_check_file("tls_key_password_file", cfg->key_password_file, err, err_size) == -1)
            return -1;
        FILE *fp = fopen(cfg->key_password_file, "r");
        if (fp == NULL) {
            TLS_ERR(err, err_size, "tls_key_password_file %s: %s", cfg->key_password_file, strerror(errno));
            return -1;
        }
        if (fgets(pw, (int)size, fp) == NULL)
            pw[0] = '\0';
        fclose(fp);
        pw[strcspn(pw, "\r\n")] = '\0';
    } else if (cfg->key_password_env != NULL) {
        const char *v = getenv(cfg->key_password_env);
        if (v == NULL) {
            TLS_ERR(err, err_size, "tls_key_password_env: $%s is not set", cfg->key_password_env);
            return -1;
        }
        snprintf(pw, size, "%s", v);
    }
    return 0;
}

static int
tls_push_name(char ***names, size_t *count, const char *s, size_t len)
{
    char **n = realloc(*names, (*count + 1) * sizeof *n);
    if (n == NULL)
        return -1;
    *names = n;
    char *d = strndup(s, len);
    if (d == NULL)
        return -1;
    for (char *c = d; *c; c++)
        *c = (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
    n[(*count)++] = d;
    return 0;
}

static void
tls_free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* Names a certificate answers to. dns_only: SAN DNS names, else the CN (what SNI
 * matches); otherwise also SAN e-mail and URI values and the CN (what allow-lists match). */
static int
tls_cert_names(X509 *cert, bool dns_only, char ***names, size_t *count)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int rv = 0;

    *names = NULL;
    *count = 0;
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && rv == 0; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        const ASN1_STRING *v = NULL;
        if (gn->type == GEN_DNS)
            v = gn->d.dNSName;
        else if (!dns_only && gn->type == GEN_EMAIL)
            v = gn->d.rfc822Name;
        else if (!dns_only && gn->type == GEN_URI)
            v = gn->d.uniformResourceIdentifier;
        if (v != NULL)
            rv = tls_push_name(names, count, (const char *)ASN1_STRING_get0_data(v),
                               (size_t)ASN1_STRING_length(v));
    }
    GENERAL_NAMES_free(sans);
    if (rv == 0 && (*count == 0 || !dns_only)) {
        char cn[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
        if (n > 0)
            rv = tls_push_name(names, count, cn, (size_t)n);
    }
    return rv;
}

/* "*.example.com" matches one label in its place; otherwise an exact, case-blind match. */
static bool
tls_name_matches(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot != NULL && dot != name && strcasecmp(dot, pattern + 1) == 0;
    }
    return strcasecmp(pattern, name) == 0;
}

static bool
tls_same_names(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = strcmp(a[i], b[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *out_len, const unsigned char *in,
            unsigned int in_len, void *arg)
{
    (void)ssl;
    (void)arg;
    /* Only HTTP/1.1 carries the WebSocket upgrade; otherwise negotiate no protocol. */
    for (unsigned int i = 0; i < in_len;) {
        unsigned int n = in[i];
        if (i + 1 + n > in_len)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *out_len = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int
tls_sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_server *srv = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    (void)alert;
    if (name == NULL)
        return SSL_TLSEXT_ERR_OK;
    for (size_t g = 0; g < srv->group_count; g++) {
        for (size_t i = 0; i < srv->groups[g].name_count; i++) {
            if (tls_name_matches(srv->groups[g].names[i], name)) {
                if (g != 0)
                    SSL_set_SSL_CTX(ssl, srv->groups[g].ctx);
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_OK; /* unknown names get the default certificate */
}

/* Accept any client certificate during the handshake; the verdict is read afterwards
 * (SSL_get_verify_result) so the client gets a 403 that says why. */
static int
tls_verify_accept_cb(int ok, X509_STORE_CTX *store)
{
    (void)ok;
    (void)store;
    return 1;
}

static SSL_CTX *
tls_server_ctx_new(const struct listener_tls_config *cfg, struct tls_server *srv, char *err, size_t err_size)
{
    char ebuf[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        TLS_ERR(err, err_size, "cannot create a TLS context: %s", tls_last_error(ebuf, sizeof ebuf));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, cfg->min_version == TLS_MIN_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* SSL_OP_IGNORE_UNEXPECTED_EOF: a peer that closes TCP without close_notify (browsers
     * do) is an EOF, as libevent's dirty-shutdown setting intends, not an error. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Idle connections give their read and write buffers back (kilobytes per session). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"wsplice", 7);
    if (cfg->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, cfg->ciphers) != 1) {
        TLS_ERR(err, err_size, "tls_ciphers \"%s\": no usable cipher", cfg->ciphers);
        goto fail;
    }
    if (cfg->ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites) != 1) {
        TLS_ERR(err, err_size, "tls_ciphersuites \"%s\": no usable suite", cfg->ciphersuites);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, tls_sni_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, srv);
    if (cfg->verify_client != TLS_VERIFY_NONE) {
        if (tls_check_file("tls_client_ca", cfg->client_ca, err, err_size) == -1)
            goto fail;
        if (SSL_CTX_load_verify_locations(ctx, cfg->client_ca, NULL) != 1) {
            TLS_ERR(err, err_size, "tls_client_ca %s: %s", cfg->client_ca, tls_last_error(ebuf, sizeof ebuf));
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_ca);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify_accept_cb);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Load certificate 'i' (and its key) into the group for its names, making the group if
 * needed. 0, or -1 with 'err'. */
static int
tls_server_add_cert(struct tls_server *srv, const struct listener_tls_config *cfg, size_t i, const char *pw,
                    char *err, size_t err_size)
{
    const char *cert_file = cfg->certs.items[i];
    const char *key_file = cfg->keys.count ? cfg->keys.items[i] : cert_file;
    char ebuf[256];
    char **names = NULL;
    size_t name_count = 0;
    X509 *leaf = NULL;
    FILE *fp;

    if (tls_check_file("certificate", cert_file, err, err_size) == -1 ||
        tls_check_file("key", key_file, err, err_size) == -1)
        return -1;
    fp = fopen(cert_file, "r");
    if (fp == NULL) {
        TLS_ERR(err, err_size, "%s: %s", cert_file, strerror(errno));
        return -1;
    }
    leaf = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    if (leaf == NULL) {
        TLS_ERR(err, err_size, "%s: no PEM certificate in it (%s)", cert_file,
                tls_last_error(ebuf, sizeof ebuf));
        return -1;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
        TLS_ERR(err, err_size, "%s: the certificate has expired", cert_file);
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0) {
        TLS_ERR(err, err_size, "%s: the certificate is not valid yet", cert_file);
        goto fail;
    }
    if (tls_cert_names(leaf, true, &names, &name_count) == -1) {
        TLS_ERR(err, err_size, "out of memory");
        goto fail;
    }
    struct tls_group *group = NULL;
    for (size_t g = 0; g < srv->group_count && group == NULL; g++)
        if (tls_same_names(srv->groups[g].names, srv->groups[g].name_count, names, name_count))
            group = &srv->groups[g];
    if (group == NULL) {
        struct tls_group *n = realloc(srv->groups, (srv->group_count + 1) * sizeof *n);
        if (n == NULL) {
            TLS_ERR(err, err_size, "out of memory");
            goto fail;
        }
        srv->groups = n;
        group = &n[srv->group_count];
        group->ctx = tls_server_ctx_new(cfg, srv, err, err_size);
        if (group->ctx == NULL)
            goto fail;
        group->names = names;
        group->name_count = name_count;
        names = NULL;
        name_count = 0;
        srv->group_count++;
    }
    SSL_CTX_set_default_passwd_cb(group->ctx, tls_password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(group->ctx, (void *)(uintptr_t)pw);
    if (SSL_CTX_use_certificate_chain_file(group->ctx, cert_file) != 1) {
        TLS_ERR(err, err_size, "%s: %s", cert_file, tls_last_error(ebuf, sizeof ebuf));
        goto fail_pw;
    }
    if (SSL_CTX_use_PrivateKey_file(group->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        TLS_ERR(err, err_size, "%s: cannot load the private key (%s)", key_file,
                tls_last_error(ebuf, sizeof ebuf));
        goto fail_pw;
    }
    if (SSL_CTX_check_private_key(group->ctx) != 1) {
        TLS_ERR(err, err_size, "%s does not match the certificate %s", key_file, cert_file);
        goto fail_pw;
    }
    SSL_CTX_set_default_passwd_cb_userdata(group->ctx, NULL); /* the passphrase is not kept */
    tls_free_names(names, name_count);
    X509_free(leaf);
    return 0;
fail_pw:
    SSL_CTX_set_default_passwd_cb_userdata(group->ctx, NULL);
fail:
    tls_free_names(names, name_count);
    X509_free(leaf);
    ERR_clear_error();
    return -1;
}

struct tls_server *
tls_server_new(const struct listener_tls_config *cfg, char *err, size_t err_size)
{
    char pw[TLS_PASSWORD_MAX];
    struct tls_server *srv = calloc(1, sizeof *srv);

    if (srv == NULL) {
        TLS_ERR(err, err_size, "out of memory");
        return NULL;
    }
    atomic_init(&srv->refs, 1);
    srv->only = cfg->only;
    srv->verify = (enum tls_verify_client)cfg->verify_client;
    if (tls_read_password(cfg, pw, sizeof pw, err, err_size) == -1)
        goto fail;
    for (size_t i = 0; i < cfg->certs.count; i++)
        if (tls_server_add_cert(srv, cfg, i, pw, err, err_size) == -1)
            goto fail;
    OPENSSL_cleanse(pw, sizeof pw);
    return srv;
fail:
    OPENSSL_cleanse(pw, sizeof pw);
    tls_server_unref(srv);
    return NULL;
}

void
tls_server_ref(struct tls_server *srv)
{
    atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
}

void
tls_server_unref(struct tls_server *srv)
{
    if (srv == NULL || atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t g = 0; g < srv->group_count; g++) {
        SSL_CTX_free(srv->groups[g].ctx);
        tls_free_names(srv->groups[g].names, srv->groups[g].name_count);
    }
    free(srv->groups);
    free(srv);
}

SSL *
tls_server_ssl_new(struct tls_server *srv)
{
    SSL *ssl = srv->group_count > 0 ? SSL_new(srv->groups[0].ctx) : NULL;

    if (ssl == NULL)
        log_tls_errors("new connection");
    return ssl;
}

bool
tls_server_only(const struct tls_server *srv)
{
    return srv->only;
}

enum tls_verify_client
tls_server_verify_client(const struct tls_server *srv)
{
    return srv->verify;
}

const char *
tls_client_cert_check(SSL *ssl, enum tls_verify_client mode, char *const *allowed, size_t allowed_count,
                      char *buf, size_t size)
{
    X509 *cert;
    long result;

    if (mode == TLS_VERIFY_NONE && allowed_count == 0)
        return NULL;
    cert = ssl != NULL ? SSL_get1_peer_certificate(ssl) : NULL;
    if (cert == NULL) {
        if (mode == TLS_VERIFY_REQUIRE || allowed_count > 0)
            return "a client certificate is required";
        return NULL;
    }
    result = SSL_get_verify_result(ssl);
    if (result != X509_V_OK) {
        snprintf(buf, size, "client certificate not accepted: %s", X509_verify_cert_error_string(result));
        X509_free(cert);
        return buf;
    }
    if (allowed_count > 0) {
        char **names = NULL;
        size_t count = 0;
        bool ok = false;
        if (tls_cert_names(cert, false, &names, &count) == 0)
            for (size_t i = 0; i < count && !ok; i++)
                for (size_t j = 0; j < allowed_count && !ok; j++)
                    ok = strcasecmp(names[i], allowed[j]) == 0;
        snprintf(buf, size, "client certificate %s is not allowed on this route",
                 count > 0 ? names[0] : "(no name)");
        tls_free_names(names, count);
        X509_free(cert);
        return ok ? NULL : buf;
    }
    X509_free(cert);
    return NULL;
}

struct tls_client *
tls_client_new(const struct route_config *rc, char *err, size_t err_size)
{
    char ebuf[256];
    struct tls_client *c = calloc(1, sizeof *c);
    const char *name = rc->target_tls_server_name;

    if (c == NULL) {
        TLS_ERR(err, err_size, "out of memory");
        return NULL;
    }
    c->verify = rc->target_tls_verify;
    if (name == NULL && rc->target.kind == ADDR_INET)
        name = rc->target.host;
    if (name == NULL && c->verify) {
        TLS_ERR(err, err_size,
                "a unix: target needs target_tls_server_name to verify (or target_tls_verify = no)");
        goto fail;
    }
    if (name != NULL) {
        c->server_name = strdup(name);
        if (c->server_name == NULL) {
            TLS_ERR(err, err_size, "out of memory");
            goto fail;
        }
        unsigned char ip[16];
        c->name_is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    }
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        TLS_ERR(err, err_size, "cannot create a TLS context: %s", tls_last_error(ebuf, sizeof ebuf));
        goto fail;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF); /* a backend's plain close is its EOF */
    if (SSL_CTX_set_cipher_list(c->ctx, TLS_CIPHERS_DEFAULT) != 1 ||
        SSL_CTX_set_ciphersuites(c->ctx, TLS_CIPHERSUITES_DEFAULT) != 1) {
        TLS_ERR(err, err_size, "cannot set the TLS ciphers: %s", tls_last_error(ebuf, sizeof ebuf));
        goto fail;
    }
    const char *files[][2] = {{"target_tls_ca", rc->target_tls_ca},
                              {"target_tls_cert", rc->target_tls_cert},
                              {"target_tls_key", rc->target_tls_key}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (files[i][1] != NULL && tls_check_file(files[i][0], files[i][1], err, err_size) == -1)
            goto fail;
    if (c->verify) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        int ok = rc->target_tls_ca != NULL ? SSL_CTX_load_verify_locations(c->ctx, rc->target_tls_ca, NULL)
                                           : SSL_CTX_set_default_verify_paths(c->ctx);
        if (ok != 1) {
            TLS_ERR(err, err_size, "target_tls_ca %s: %s", rc->target_tls_ca ? rc->target_tls_ca : "(system)",
                    tls_last_error(ebuf, sizeof ebuf));
            goto fail;
        }
    }
    if (rc->target_tls_cert != NULL) {
        const char *key = rc->target_tls_key ? rc->target_tls_key : rc->target_tls_cert;
        if (SSL_CTX_use_certificate_chain_file(c->ctx, rc->target_tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(c->ctx) != 1) {
            TLS_ERR(err, err_size, "target_tls_cert %s: %s", rc->target_tls_cert,
                    tls_last_error(ebuf, sizeof ebuf));
            goto fail;
        }
    }
    return c;
fail:
    ERR_clear_error();
    tls_client_free(c);
    return NULL;
}

void
tls_client_free(void *client)
{
    struct tls_client *c = client;

    if (c == NULL)
        return;
    SSL_CTX_free(c->ctx);
    free(c->server_name);
    free(c);
}

SSL *
tls_client_ssl_new(const struct tls_client *c)
{
    SSL *ssl = SSL_new(c->ctx);

    if (ssl == NULL) {
        log_tls_errors("backend connection");
        return NULL;
    }
    if (c->server_name != NULL && !c->name_is_ip)
        SSL_set_tlsext_host_name(ssl, c->server_name);
    if (c->verify && c->server_name != NULL) {
        int ok = c->name_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->server_name)
                               : SSL_set1_host(ssl, c->server_name);
        if (ok != 1) {
            log_tls_errors("backend name");
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

const char *
tls_describe(SSL *ssl, char *buf, size_t size)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char shown[LOG_ESCAPE_MAX];

    snprintf(buf, size, "%s/%s sni=%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
             log_escape(shown, sizeof shown, sni, sni ? strlen(sni) : 0));
    return buf;
}

/* ---- reading a relaying connection in large chunks ---- */

/* Bytes a BIO holds: in the feed, read from the socket by the caller and waiting for
 * OpenSSL to ask for them; in the batch, records waiting to go to the socket BIO. */
struct tls_held {
    uint8_t *buf;    /* owned; NULL whenever nothing is held */
    size_t off, len; /* held: buf[off, len) */
    size_t cap;      /* size of buf */
    int end_err;     /* feed: after the held bytes, 0 more may come, -1 EOF, else an errno */
};

static BIO_METHOD *tls_feed_method; /* made once, kept for the life of the process */
static int tls_feed_type;

static struct tls_held *
tls_feed_of(SSL *ssl)
{
    BIO *bio = SSL_get_rbio(ssl);

    if (bio == NULL || tls_feed_method == NULL || BIO_method_type(bio) != tls_feed_type)
        return NULL;
    return BIO_get_data(bio);
}

static int
tls_feed_bio_read(BIO *bio, char *out, int out_len)
{
    struct tls_held *f = BIO_get_data(bio);
    size_t avail = f->len - f->off;

    BIO_clear_retry_flags(bio);
    if (out_len <= 0)
        return 0;
    if (avail == 0) {
        if (f->end_err == -1)
            return 0; /* OpenSSL checks BIO_eof() to tell this from an error */
        if (f->end_err != 0) {
            errno = f->end_err;
            return -1;
        }
        BIO_set_retry_read(bio); /* the caller reads the socket when it is readable */
        return -1;
    }
    size_t n = avail < (size_t)out_len ? avail : (size_t)out_len;
    memcpy(out, f->buf + f->off, n);
    f->off += n;
    return (int)n;
}

static long
tls_feed_bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    struct tls_held *f = BIO_get_data(bio);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_EOF:
        return f->off == f->len && f->end_err == -1;
    case BIO_CTRL_PENDING:
        return (long)(f->len - f->off);
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int
tls_held_bio_create(BIO *bio)
{
    struct tls_held *h = calloc(1, sizeof *h);

    if (h == NULL)
        return 0;
    BIO_set_data(bio, h);
    BIO_set_init(bio, 1);
    return 1;
}

static int
tls_held_bio_destroy(BIO *bio)
{
    struct tls_held *h = BIO_get_data(bio);

    if (h != NULL) {
        free(h->buf);
        free(h);
    }
    BIO_set_data(bio, NULL);
    return 1;
}

/* A BIO_METHOD made once and kept for the life of the process (NULL without memory);
 * 'rd' or 'wr' NULL: the BIO does not do that. */
static BIO_METHOD *
tls_method_new(int kind, const char *name, int *type, int (*rd)(BIO *, char *, int),
               int (*wr)(BIO *, const char *, int), long (*ctrl)(BIO *, int, long, void *))
{
    *type = BIO_get_new_index() | kind;
    BIO_METHOD *m = BIO_meth_new(*type, name);

    if (m == NULL || (rd != NULL && BIO_meth_set_read(m, rd) != 1) ||
        (wr != NULL && BIO_meth_set_write(m, wr) != 1) || BIO_meth_set_ctrl(m, ctrl) != 1 ||
        BIO_meth_set_create(m, tls_held_bio_create) != 1 ||
        BIO_meth_set_destroy(m, tls_held_bio_destroy) != 1) {
        BIO_meth_free(m);
        ERR_clear_error();
        return NULL;
    }
    return m;
}

uint8_t *
tls_feed_space(SSL *ssl, size_t want, size_t *len)
{
    struct tls_held *f = tls_feed_of(ssl);

    if (f == NULL)
        return NULL;
    if (f->off > 0) { /* keep the unread bytes at the front */
        memmove(f->buf, f->buf + f->off, f->len - f->off);
        f->len -= f->off;
        f->off = 0;
    }
    if (f->cap < want) {
        uint8_t *grown = realloc(f->buf, want);
        if (grown == NULL)
            return NULL;
        f->buf = grown;
        f->cap = want;
    }
    *len = f->len < want ? want - f->len : 0;
    return f->buf + f->len;
}

void
tls_feed_commit(SSL *ssl, size_t n)
{
    struct tls_held *f = tls_feed_of(ssl);

    assert(f != NULL && n <= f->cap - f->len);
    f->len += n;
}

void
tls_feed_end(SSL *ssl, int err)
{
    struct tls_held *f = tls_feed_of(ssl);

    if (f != NULL && f->end_err == 0)
        f->end_err = err == 0 ? -1 : err;
}

bool
tls_feed_pending(SSL *ssl)
{
    struct tls_held *f = tls_feed_of(ssl);

    return SSL_pending(ssl) > 0 || (f != NULL && f->off < f->len);
}

void
tls_feed_trim(SSL *ssl)
{
    struct tls_held *f = tls_feed_of(ssl);

    if (f == NULL || f->off < f->len)
        return;
    free(f->buf); /* idle connections hold no buffer */
    f->buf = NULL;
    f->off = f->len = f->cap = 0;
}

/* ---- writing a relaying connection in batches ---- */

/* The records SSL_write makes are held until the caller says a run of writes is over (or
 * the buffer is full), then passed on to the next BIO (the socket) in one write. */
static BIO_METHOD *tls_batch_method;
static int tls_batch_type;

/* Pass what is held to the next BIO: 1 all of it went, 0 some must wait (retry flags
 * copied), -1 the next BIO failed. */
static int
tls_batch_push(BIO *bio, struct tls_held *b)
{
    BIO *next = BIO_next(bio);

    while (b->off < b->len) {
        int n = BIO_write(next, b->buf + b->off, (int)(b->len - b->off));
        if (n <= 0) {
            BIO_copy_next_retry(bio);
            return BIO_should_retry(next) ? 0 : -1;
        }
        b->off += (size_t)n;
    }
    free(b->buf); /* idle connections hold no buffer */
    b->buf = NULL;
    b->off = b->len = b->cap = 0;
    return 1;
}

static int
tls_batch_bio_write(BIO *bio, const char *in, int in_len)
{
    struct tls_held *b = BIO_get_data(bio);

    BIO_clear_retry_flags(bio);
    if (in_len <= 0)
        return 0;
    if (b->len - b->off + (size_t)in_len > TLS_BATCH_MAX && tls_batch_push(bio, b) != 1)
        return -1;                        /* full: OpenSSL keeps the record and writes it again later */
    if ((size_t)in_len > TLS_BATCH_MAX) { /* more than a batch (never a record): pass it on */
        int n = BIO_write(BIO_next(bio), in, in_len);
        BIO_copy_next_retry(bio);
        return n;
    }
    if (b->buf == NULL) {
        if ((b->buf = malloc(TLS_BATCH_MAX)) == NULL)
            return -1;
        b->cap = TLS_BATCH_MAX;
    }
    if (b->len + (size_t)in_len > TLS_BATCH_MAX) { /* room only once the sent part is gone */
        memmove(b->buf, b->buf + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    memcpy(b->buf + b->len, in, (size_t)in_len);
    b->len += (size_t)in_len;
    return in_len;
}

static long
tls_batch_bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    struct tls_held *b = BIO_get_data(bio);

    switch (cmd) {
    case BIO_CTRL_FLUSH: { /* OpenSSL flushes handshake messages and alerts itself */
        int r = tls_batch_push(bio, b);
        return r == 1 ? BIO_ctrl(BIO_next(bio), cmd, num, ptr) : r;
    }
    case BIO_CTRL_WPENDING:
        return (long)(b->len - b->off) + BIO_ctrl(BIO_next(bio), cmd, num, ptr);
    default: /* the descriptor and the rest are the socket BIO's */
        return BIO_ctrl(BIO_next(bio), cmd, num, ptr);
    }
}

static pthread_once_t tls_methods_once = PTHREAD_ONCE_INIT;

static void
tls_methods_init(void)
{
    tls_feed_method = tls_method_new(BIO_TYPE_SOURCE_SINK, "wsplice feed", &tls_feed_type, tls_feed_bio_read,
                                     NULL, tls_feed_bio_ctrl);
    tls_batch_method = tls_method_new(BIO_TYPE_FILTER, "wsplice batch", &tls_batch_type, NULL,
                                      tls_batch_bio_write, tls_batch_bio_ctrl);
}

int
tls_relay_start(SSL *ssl)
{
    /* A TLS 1.2 renegotiation lets SSL_write wait for input, which bufferevent_openssl then
     * reads itself: only where it cannot happen do reads go through the feed. */
    if (SSL_version(ssl) < TLS1_3_VERSION && !(SSL_get_options(ssl) & SSL_OP_NO_RENEGOTIATION))
        return -1;
    pthread_once(&tls_methods_once, tls_methods_init); /* worker threads may race here */
    BIO *sock = SSL_get_wbio(ssl);
    BIO *feed = tls_feed_method ? BIO_new(tls_feed_method) : NULL;
    BIO *batch = tls_batch_method ? BIO_new(tls_batch_method) : NULL;
    if (sock == NULL || feed == NULL || batch == NULL || BIO_up_ref(sock) != 1) {
        BIO_free(feed);
        BIO_free(batch);
        ERR_clear_error();
        return -1;
    }
    SSL_set0_rbio(ssl, feed);
    BIO_push(batch, sock);     /* the batch now owns the reference taken above */
    SSL_set0_wbio(ssl, batch); /* drops the SSL's own reference to the socket BIO */
    return 0;
}

int
tls_batch_flush(SSL *ssl)
{
    BIO *bio = SSL_get_wbio(ssl);

    if (bio == NULL || tls_batch_method == NULL || BIO_method_type(bio) != tls_batch_type)
        return 1;
    return tls_batch_push(bio, BIO_get_data(bio));
}
