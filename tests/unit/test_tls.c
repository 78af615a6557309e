/* test_tls.c - the first-byte sniff that lets one port serve ws:// and wss://, the
 * error messages of contexts built from unusable files (real certificates are exercised
 * by the integration tests, which make them with the openssl command), and the read feed
 * and write batch of tls_relay_start() between two in-memory TLS 1.3 endpoints. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "check.h"
#include "tls.h"

static void
test_sniff(void)
{
    /* TLS record header of a ClientHello: type 22, version 3.1 */
    static const unsigned char hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
    /* SSLv2-compatible hello: the length's high bit is set */
    static const unsigned char v2hello[] = {0x80, 0x2e, 0x01, 0x03, 0x01};

    CHECK(tls_sniff_first_byte(hello[0]) == TLS_SNIFF_TLS);
    CHECK(tls_sniff_first_byte(v2hello[0]) == TLS_SNIFF_TLS);
    CHECK(tls_sniff_first_byte('G') == TLS_SNIFF_PLAIN); /* "GET / HTTP/1.1" */
    CHECK(tls_sniff_first_byte('P') == TLS_SNIFF_PLAIN);
    CHECK(tls_sniff_first_byte('\r') == TLS_SNIFF_PLAIN);
    /* Every byte: exactly 0x16 and the high half are TLS; the HTTP parser judges the rest. */
    int tls = 0;
    for (unsigned b = 0; b < 256; b++) {
        enum tls_sniff want = (b == 0x16 || b >= 0x80) ? TLS_SNIFF_TLS : TLS_SNIFF_PLAIN;
        CHECK(tls_sniff_first_byte((uint8_t)b) == want);
        tls += tls_sniff_first_byte((uint8_t)b) == TLS_SNIFF_TLS;
    }
    CHECK(tls == 129);
}

static void
test_server_errors(void)
{
    char err[512];
    char missing[] = "/nonexistent/wsplice-test.pem", hostname[] = "/etc/hostname",
         var[] = "WSPLICE_TEST_SURELY_UNSET";
    char *certs[] = {missing};
    struct listener_tls_config cfg = {0};

    cfg.certs.items = certs;
    cfg.certs.count = 1;
    CHECK(tls_server_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/wsplice-test.pem") != NULL);

    /* A file that exists but holds no certificate. */
    char *not_pem[] = {hostname};
    cfg.certs.items = not_pem;
    CHECK(tls_server_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "no PEM certificate") != NULL);

    /* A passphrase from an unset variable is an error, not an empty passphrase. */
    cfg.key_password_env = var;
    CHECK(tls_server_new(&cfg, err, sizeof err) == NULL);
    CHECK(strstr(err, "WSPLICE_TEST_SURELY_UNSET") != NULL);
}

/* ---- the read feed ---- */

/* A client and a server SSL joined by two BIO pairs (the kernel's socket buffers, in
 * memory), the server with a throwaway P-256 certificate made here. */
struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *server, *client;
    BIO *to_server; /* the end of the client -> server pair that the server would read */
    BIO *to_client; /* the end of the server -> client pair that the client reads */
};

/* 'window': bytes each direction holds before writes must wait. */
static int
pair_init(struct pair *p, size_t window)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();

    memset(p, 0, sizeof *p);
    if (key == NULL || cert == NULL)
        return -1;
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC, (const unsigned char *)"test",
                               -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    X509_sign(cert, key, EVP_sha256());
    p->sctx = SSL_CTX_new(TLS_server_method());
    p->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_use_certificate(p->sctx, cert);
    SSL_CTX_use_PrivateKey(p->sctx, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    /* As tls.c sets it: a TCP close without close_notify reads as the end. */
    SSL_CTX_set_options(p->sctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_min_proto_version(p->sctx, TLS1_3_VERSION);
    p->server = SSL_new(p->sctx);
    p->client = SSL_new(p->cctx);
    BIO *c_out, *s_out;
    if (p->server == NULL || p->client == NULL ||
        BIO_new_bio_pair(&c_out, window, &p->to_server, window) != 1 ||
        BIO_new_bio_pair(&s_out, window, &p->to_client, window) != 1)
        return -1;
    BIO_up_ref(p->to_server);
    SSL_set_bio(p->server, p->to_server, s_out);
    SSL_set_bio(p->client, p->to_client, c_out);
    SSL_set_accept_state(p->server);
    SSL_set_connect_state(p->client);
    for (int i = 0; i < 10; i++) {
        int c = SSL_do_handshake(p->client), s = SSL_do_handshake(p->server);
        if (c == 1 && s == 1)
            break;
    }
    if (!SSL_is_init_finished(p->server) || !SSL_is_init_finished(p->client))
        return -1;
    /* The tests feed the server by hand: it must not have read anything ahead. */
    return SSL_pending(p->server) == 0 && BIO_ctrl_pending(p->to_server) == 0 ? 0 : -1;
}

static void
pair_free(struct pair *p)
{
    BIO_free(p->to_server); /* the reference pair_init took: the server now reads the feed */
    SSL_free(p->server);
    SSL_free(p->client);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
}

/* Move up to 'n' bytes the client wrote into the server's feed; returns how many. */
static size_t
feed_from_client(struct pair *p, size_t n)
{
    size_t room = 0;
    uint8_t *space = tls_feed_space(p->server, n, &room);
    int got = 0;

    if (space == NULL || room == 0)
        return 0;
    got = BIO_read(p->to_server, space, (int)(room < n ? room : n));
    if (got <= 0)
        return 0;
    tls_feed_commit(p->server, (size_t)got);
    return (size_t)got;
}

/* SSL_read on the client until it needs more input; returns what it read into buf. */
static size_t
client_read_all(struct pair *p, uint8_t *buf, size_t size)
{
    size_t got = 0;

    for (;;) {
        int r = SSL_read(p->client, buf + got, (int)(size - got < 65536 ? size - got : 65536));
        if (r <= 0)
            return got;
        got += (size_t)r;
    }
}

/* SSL_read on the server until it needs more input; returns what it read into buf. */
static size_t
server_read_all(struct pair *p, uint8_t *buf, size_t size, int *last_err)
{
    size_t got = 0;

    for (;;) {
        int r = SSL_read(p->server, buf + got, (int)(size - got < 65536 ? size - got : 65536));
        if (r <= 0) {
            *last_err = SSL_get_error(p->server, r);
            return got;
        }
        got += (size_t)r;
    }
}

static void
test_feed(void)
{
    enum { TOTAL = 300 * 1000 };
    static uint8_t sent[TOTAL], got[TOTAL + 1];
    struct pair p;
    int err = 0;

    for (size_t i = 0; i < TOTAL; i++)
        sent[i] = (uint8_t)(i * 7 + i / 251);
    CHECK(pair_init(&p, 1 << 20) == 0);
    CHECK(tls_feed_space(p.server, 16, &(size_t){0}) == NULL); /* no feed yet */
    CHECK(tls_relay_start(p.server) == 0);
    CHECK(!tls_feed_pending(p.server));

    /* Records of every size up to the 16 KiB maximum, fed in pieces that cut them
     * anywhere: 1 byte, a header's 5, odd sizes, and more than several records at once. */
    size_t off = 0;
    for (size_t n = 1; off < TOTAL; n = n * 3 + 1) {
        size_t len = n % 40000 + 1 < TOTAL - off ? n % 40000 + 1 : TOTAL - off;
        CHECK(SSL_write(p.client, sent + off, (int)len) == (int)len);
        off += len;
    }
    static const size_t pieces[] = {1, 5, 4, 1000, 16401, 7, 200000, 3, 65536};
    size_t have = 0, step = 0;
    while (BIO_pending(p.to_server) > 0) {
        size_t fed = feed_from_client(&p, pieces[step++ % (sizeof pieces / sizeof pieces[0])]);
        CHECK(fed > 0);
        have += server_read_all(&p, got + have, sizeof got - have, &err);
        CHECK(err == SSL_ERROR_WANT_READ); /* everything fed was used */
        CHECK(!tls_feed_pending(p.server));
        tls_feed_trim(p.server);
    }
    CHECK(have == TOTAL);
    CHECK(memcmp(got, sent, TOTAL) == 0);

    /* The feed holds no more than 'want' unread bytes; SSL_read can take them in
     * pieces, and tls_feed_pending() says so until they are gone. */
    CHECK(SSL_write(p.client, sent, 50000) == 50000);
    size_t room = 0;
    CHECK(feed_from_client(&p, 30000) == 30000);
    CHECK(tls_feed_space(p.server, 30000, &room) != NULL && room == 0);
    CHECK(tls_feed_space(p.server, 40000, &room) != NULL && room == 10000);
    CHECK(tls_feed_pending(p.server));
    CHECK(SSL_read(p.server, got, 100) == 100);
    CHECK(tls_feed_pending(p.server)); /* the rest of the record is decrypted, unread */
    tls_feed_trim(p.server);           /* not everything was read: the buffer stays */
    have = 100 + server_read_all(&p, got + 100, sizeof got - 100, &err);
    CHECK(err == SSL_ERROR_WANT_READ);
    while (feed_from_client(&p, 100000) > 0)
        have += server_read_all(&p, got + have, sizeof got - have, &err);
    CHECK(have == 50000 && memcmp(got, sent, 50000) == 0);

    /* close_notify after data: the data, then the end. */
    CHECK(SSL_write(p.client, "last", 4) == 4);
    CHECK(SSL_shutdown(p.client) == 0);
    feed_from_client(&p, 100000);
    CHECK(server_read_all(&p, got, sizeof got, &err) == 4 && memcmp(got, "last", 4) == 0);
    CHECK(err == SSL_ERROR_ZERO_RETURN);
    pair_free(&p);

    /* The socket's EOF without close_notify, after a partial record: the whole records
     * before it are read, then the end (SSL_OP_IGNORE_UNEXPECTED_EOF, as in tls.c). */
    CHECK(pair_init(&p, 1 << 20) == 0 && tls_relay_start(p.server) == 0);
    CHECK(SSL_write(p.client, sent, 1000) == 1000);
    CHECK(SSL_write(p.client, sent, 1000) == 1000);
    feed_from_client(&p, 1000 + 22 + 500); /* one record and part of the next */
    tls_feed_end(p.server, 0);
    CHECK(server_read_all(&p, got, sizeof got, &err) == 1000);
    CHECK(err == SSL_ERROR_ZERO_RETURN);
    pair_free(&p);

    /* A read error: after the bytes fed before it, SSL_read fails with its errno. */
    CHECK(pair_init(&p, 1 << 20) == 0 && tls_relay_start(p.server) == 0);
    CHECK(SSL_write(p.client, sent, 3000) == 3000);
    feed_from_client(&p, 100000);
    tls_feed_end(p.server, ECONNRESET);
    tls_feed_end(p.server, 0); /* the first end stays */
    CHECK(server_read_all(&p, got, sizeof got, &err) == 3000);
    CHECK(err == SSL_ERROR_SYSCALL && errno == ECONNRESET && ERR_peek_error() == 0);
    pair_free(&p);
    ERR_clear_error();
}

static void
test_batch(void)
{
    enum { TOTAL = 700 * 1000 };
    static uint8_t sent[TOTAL], got[TOTAL];
    struct pair p;

    for (size_t i = 0; i < TOTAL; i++)
        sent[i] = (uint8_t)(i * 13 + i / 509);

    /* Records are held until the flush, then arrive whole and in order. */
    CHECK(pair_init(&p, 1 << 20) == 0 && tls_relay_start(p.server) == 0);
    CHECK(tls_batch_flush(p.server) == 1);          /* nothing held */
    size_t tickets = BIO_ctrl_pending(p.to_client); /* TLS 1.3 session tickets, from the handshake */
    CHECK(SSL_write(p.server, sent, 100000) == 100000);
    CHECK(BIO_ctrl_pending(p.to_client) == tickets);
    CHECK(tls_batch_flush(p.server) == 1);
    CHECK(BIO_ctrl_pending(p.to_client) > tickets + 100000);
    CHECK(client_read_all(&p, got, sizeof got) == 100000 && memcmp(got, sent, 100000) == 0);
    /* More than a batch's worth goes out as the buffer fills, before any flush. */
    CHECK(SSL_write(p.server, sent, 600000) == 600000);
    CHECK(BIO_ctrl_pending(p.to_client) >= 256 * 1024);
    CHECK(tls_batch_flush(p.server) == 1);
    CHECK(client_read_all(&p, got, sizeof got) == 600000 && memcmp(got, sent, 600000) == 0);
    /* OpenSSL flushes alerts itself: close_notify arrives without tls_batch_flush(). */
    CHECK(SSL_write(p.server, "bye", 3) == 3);
    SSL_shutdown(p.server);
    CHECK(client_read_all(&p, got, sizeof got) == 3 && memcmp(got, "bye", 3) == 0);
    CHECK(SSL_get_error(p.client, SSL_read(p.client, got, 1)) == SSL_ERROR_ZERO_RETURN);
    pair_free(&p);

    /* A window smaller than a batch: a full batch that cannot go out makes SSL_write wait
     * (WANT_WRITE) and the flush report 0; as the client reads, everything arrives. */
    CHECK(pair_init(&p, 48 * 1024) == 0 && tls_relay_start(p.server) == 0);
    size_t off = 0, have = 0;
    int waits = 0, flush_waits = 0;
    while (have < TOTAL) {
        if (off < TOTAL) {
            int chunk = TOTAL - off < 65536 ? (int)(TOTAL - off) : 65536;
            int r = SSL_write(p.server, sent + off, chunk);
            if (r > 0)
                off += (size_t)r;
            else
                waits += SSL_get_error(p.server, r) == SSL_ERROR_WANT_WRITE;
        } else {
            flush_waits += tls_batch_flush(p.server) == 0;
        }
        have += client_read_all(&p, got + have, sizeof got - have);
    }
    CHECK(waits > 0 && flush_waits > 0);
    CHECK(tls_batch_flush(p.server) == 1);
    CHECK(memcmp(got, sent, TOTAL) == 0);
    pair_free(&p);
    ERR_clear_error();
}

int
main(void)
{
    test_sniff();
    test_server_errors();
    test_feed();
    test_batch();
    return check_report();
}
