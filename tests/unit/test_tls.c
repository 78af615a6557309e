/* test_tls.c - the first-byte sniff that lets one port serve ws:// and wss://, and the
 * error messages of contexts built from unusable files (real certificates are exercised
 * by the integration tests, which make them with the openssl command). */
#include <stdlib.h>
#include <string.h>

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

int
main(void)
{
    test_sniff();
    test_server_errors();
    return check_report();
}
