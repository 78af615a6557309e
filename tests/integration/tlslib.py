"""TLS pieces for the integration suite: a throwaway PKI made with the real `openssl`
command, INI text for TLS listeners, TLS clients (Python's ssl, `openssl s_client`, and
libssl itself through ctypes for what Python's ssl cannot do) and a real TLS echo backend.
Nothing is mocked.

Run as a script it only builds the PKI (tests/tls/testssl.sh uses that):
    python3 tlslib.py DIR
"""

import ctypes
import os
import re
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import SLOW  # noqa: E402

OPENSSL = os.environ.get("OPENSSL", "openssl")
PASSPHRASE = "correct horse battery staple"

_REQ_CNF = """\
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

# `openssl ca` is the only OpenSSL 3.0 command that takes explicit validity dates
# (-startdate/-enddate); `openssl x509 -req` got -not_before/-not_after only in 3.4.
_CA_CNF = """\
[ca]
default_ca = d
[d]
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = p
unique_subject = no
[p]
organizationName = optional
commonName = supplied
"""


def openssl(*args, cwd=None, input=None):
    """Run the openssl command; raise with its output if it fails."""
    p = subprocess.run([OPENSSL] + list(args), cwd=cwd, input=input, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s%s" % (" ".join(args), p.stdout.decode(), p.stderr.decode()))
    return p.stdout


class Cert:
    """One certificate: .cert (PEM path), .key (PEM path), .der (bytes), .serial (int)."""

    def __init__(self, name, cert, key):
        self.name = name
        self.cert = cert
        self.key = key
        with open(cert) as f:
            self.der = ssl.PEM_cert_to_DER_cert(f.read())
        out = openssl("x509", "-in", cert, "-noout", "-serial").decode()
        self.serial = int(out.strip().split("=", 1)[1], 16)

    def __repr__(self):
        return "<Cert %s serial=%x>" % (self.name, self.serial)


class PKI:
    """A directory of keys and certificates made with `openssl`."""

    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.req_cnf = self.path("req.cnf")
        with open(self.req_cnf, "w") as f:
            f.write(_REQ_CNF)

    def path(self, name):
        return os.path.join(self.dir, name)

    def key(self, name, kind="ec"):
        out = self.path(name + ".key")
        if kind == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out)
        elif kind == "rsa":
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", out)
        else:
            raise ValueError(kind)
        return out

    def ca(self, name, cn, kind="ec"):
        key = self.key(name, kind)
        cert = self.path(name + ".pem")
        openssl("req", "-x509", "-new", "-key", key, "-subj", "/O=wsplice tests/CN=%s" % cn, "-days", "3650",
                "-sha256", "-config", self.req_cnf, "-extensions", "v3_ca", "-out", cert)
        # For `openssl ca` (certificates with chosen dates).
        d = self.path(name + ".db")
        os.makedirs(os.path.join(d, "newcerts"), exist_ok=True)
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write(secrets.token_hex(8).upper() + "\n")
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(_CA_CNF.format(dir=d))
        return Cert(name, cert, key)

    def leaf(self, name, ca, cn, sans=(), kind="ec", usage="server", org="wsplice tests", startdate=None,
             enddate=None, intermediate=False, days=397, crl_uri=None):
        """A certificate signed by 'ca'. sans: "DNS:x" / "IP:x" / "email:x" entries.
        startdate/enddate (YYYYMMDDHHMMSSZ) give explicit validity dates, else it is valid
        for 'days' from now (397: the longest a public CA may issue). crl_uri: a CRL
        distribution point, as a public CA's certificates carry."""
        key = self.key(name, kind)
        csr = self.path(name + ".csr")
        cert = self.path(name + ".pem")
        openssl("req", "-new", "-key", key, "-subj", "/O=%s/CN=%s" % (org, cn), "-config", self.req_cnf,
                "-out", csr)
        ext = ["[ext]"]
        if intermediate:
            ext += ["basicConstraints = critical,CA:TRUE,pathlen:0", "keyUsage = critical,keyCertSign,cRLSign"]
        else:
            ext += ["basicConstraints = critical,CA:FALSE",
                    "keyUsage = critical,digitalSignature" + (",keyEncipherment" if kind == "rsa" else ""),
                    "extendedKeyUsage = %s" % ("serverAuth" if usage == "server" else "clientAuth")]
        ext += ["subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid,issuer"]
        if sans:
            ext.append("subjectAltName = " + ",".join(sans))
        if crl_uri:
            ext.append("crlDistributionPoints = URI:" + crl_uri)
        extfile = self.path(name + ".ext")
        with open(extfile, "w") as f:
            f.write("\n".join(ext) + "\n")
        if startdate or enddate:
            d = self.path(ca.name + ".db")
            openssl("ca", "-batch", "-config", os.path.join(d, "ca.cnf"), "-cert", ca.cert, "-keyfile", ca.key,
                    "-in", csr, "-out", cert, "-notext", "-startdate", startdate, "-enddate", enddate,
                    "-extfile", extfile, "-extensions", "ext")
        else:
            openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial",
                    "0x" + secrets.token_hex(8), "-days", str(days), "-sha256", "-extfile", extfile, "-extensions",
                    "ext", "-out", cert)
        return Cert(name, cert, key)

    def encrypt_key(self, cert, passphrase=PASSPHRASE):
        """The key of 'cert' encrypted (PKCS#8, AES-256) with 'passphrase'; returns its path."""
        out = self.path(cert.name + ".enc.key")
        openssl("pkey", "-in", cert.key, "-aes256", "-passout", "pass:" + passphrase, "-out", out)
        return out

    def concat(self, name, *paths):
        out = self.path(name)
        with open(out, "w") as f:
            for p in paths:
                with open(p) as g:
                    f.write(g.read())
        return out


class TestPKI:
    """Everything the TLS tests use, made once per session (a few hundred ms)."""

    def __init__(self, directory):
        p = self.pki = PKI(directory)
        self.dir = p.dir
        self.ca = p.ca("ca", "wsplice Test CA")
        self.client_ca = p.ca("client-ca", "wsplice Client CA")
        self.rogue_ca = p.ca("rogue-ca", "Rogue CA")
        names = ("DNS:localhost", "IP:127.0.0.1")
        self.ecdsa = p.leaf("server-ecdsa", self.ca, "localhost", names, kind="ec", org="ECDSA cert")
        self.rsa = p.leaf("server-rsa", self.ca, "localhost", names, kind="rsa", org="RSA cert")
        self.other = p.leaf("server-other", self.ca, "other.test", ("DNS:other.test",), org="other cert")
        self.wild = p.leaf("server-wild", self.ca, "*.wild.test", ("DNS:*.wild.test",), org="wildcard cert")
        # For tests/tls/testssl.sh: like a public CA's certificate, it names a CRL (on a
        # loopback port where nothing listens; the scan fetches nothing).
        self.scan = p.leaf("server-scan", self.ca, "localhost", names, org="scan cert",
                           crl_uri="http://127.0.0.1:9/wsplice-test-ca.crl")
        self.cert_b = p.leaf("server-b", self.ca, "localhost", names, org="cert B")
        self.alice = p.leaf("alice", self.client_ca, "alice", usage="client")
        self.bob = p.leaf("bob", self.client_ca, "bob", usage="client")
        self.gateway_client = p.leaf("gateway-client", self.client_ca, "wsplice-gateway", usage="client")
        self.mallory = p.leaf("mallory", self.rogue_ca, "alice", usage="client")  # untrusted CA, same CN
        self.expired = p.leaf("server-expired", self.ca, "localhost", names, org="expired",
                              startdate="20200101000000Z", enddate="20200102000000Z")
        self.not_yet = p.leaf("server-not-yet", self.ca, "localhost", names, org="not yet valid",
                              startdate="20990101000000Z", enddate="20991231000000Z")
        # A chain: leaf signed by an intermediate; the file holds leaf then intermediate.
        self.intermediate = p.leaf("intermediate", self.ca, "wsplice Intermediate CA", intermediate=True)
        self.chained = p.leaf("server-chained", self.intermediate, "localhost", names, org="chained cert")
        self.chain_file = p.concat("server-chained.chain.pem", self.chained.cert, self.intermediate.cert)
        # Certificate and key in one file (tls_key unset).
        self.combined = p.concat("server-ecdsa.combined.pem", self.ecdsa.cert, self.ecdsa.key)
        self.encrypted_key = p.encrypt_key(self.ecdsa)
        self.password_file = p.path("key-password")
        with open(self.password_file, "w") as f:
            f.write(PASSPHRASE + "\n")
        self.wrong_password_file = p.path("wrong-password")
        with open(self.wrong_password_file, "w") as f:
            f.write("not the passphrase\n")
        self.garbage = p.path("garbage.pem")
        with open(self.garbage, "w") as f:
            f.write("this is not a certificate\n")


# --------------------------------------------------------------------------- config


def config(listeners, routes=None, gateway=None):
    """INI text. listeners: {name: {key: value}} (bind defaults to 127.0.0.1:0);
    routes: {name: {key: value}}. Returns (text, {(section, key): line number})."""
    lines = ["[gateway]"]
    where = {}
    for k, v in (gateway or {}).items():
        lines.append("%s = %s" % (k, v))
    for kind, sections in (("listener", listeners), ("route", routes or {})):
        for name, opts in sections.items():
            lines.append("[%s:%s]" % (kind, name))
            opts = dict(opts)
            if kind == "listener":
                opts.setdefault("bind", "127.0.0.1:0")
            for k, v in opts.items():
                lines.append("%s = %s" % (k, v))
                where[("%s:%s" % (kind, name), k)] = len(lines)
    return "\n".join(lines) + "\n", where


def tls_listener(cert, key=None, **opts):
    """Listener options for one certificate (a Cert, or a list of Certs)."""
    certs = cert if isinstance(cert, (list, tuple)) else [cert]
    d = {"tls_cert": " ".join(c.cert for c in certs)}
    if key is not False:
        d["tls_key"] = key or " ".join(c.key for c in certs)
    d.update(opts)
    return d


# --------------------------------------------------------------------------- clients


def client_context(cafile=None, cert=None, verify=True, min_version=None, max_version=None, ciphers=None,
                   alpn=None):
    """A client SSLContext trusting 'cafile' (the system store when None)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        if cafile:
            ctx.load_verify_locations(cafile)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(port, ctx, server_hostname="localhost", timeout=5.0):
    """A TLS socket to 127.0.0.1:port after a completed handshake."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def peer_der(port, ctx, server_hostname="localhost"):
    """(DER of the certificate the gateway presented, TLS version, cipher name)."""
    s = tls_connect(port, ctx, server_hostname)
    try:
        return s.getpeercert(binary_form=True), s.version(), s.cipher()[0]
    finally:
        s.close()


class TLSWSClient(harness.WSClient):
    """harness.WSClient over TLS: the same raw frame control, on an SSL socket."""

    def __init__(self, port, ctx, server_hostname="localhost", timeout=10.0, session=None):
        super().__init__(port, timeout=timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname, session=session)

    def peer_der(self):
        return self.sock.getpeercert(binary_form=True)


class LibsslSocket:
    """A TLS 1.3 client on the system's libssl through ctypes, for what Python's ssl module
    cannot do: SSL_key_update(). Blocking, with the socket's timeouts as SO_RCVTIMEO and
    SO_SNDTIMEO; it has the sendall/recv/settimeout/close that harness.WSClient uses.
    No certificate verification (the tests check certificates elsewhere)."""

    SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE, SSL_ERROR_ZERO_RETURN = 2, 3, 6
    SSL_KEY_UPDATE_REQUESTED = 1
    _lib = None

    @classmethod
    def lib(cls):
        if cls._lib is None:
            lib = ctypes.CDLL("libssl.so.3")
            vp, ip = ctypes.c_void_p, ctypes.c_int
            for name, res, args in (("TLS_client_method", vp, []), ("SSL_CTX_new", vp, [vp]),
                                    ("SSL_CTX_set_verify", None, [vp, ip, vp]), ("SSL_new", vp, [vp]),
                                    ("SSL_set_fd", ip, [vp, ip]), ("SSL_connect", ip, [vp]),
                                    ("SSL_write", ip, [vp, ctypes.c_char_p, ip]),
                                    ("SSL_read", ip, [vp, vp, ip]), ("SSL_get_error", ip, [vp, ip]),
                                    ("SSL_key_update", ip, [vp, ip]), ("SSL_do_handshake", ip, [vp]),
                                    ("SSL_free", None, [vp]), ("SSL_CTX_free", None, [vp])):
                f = getattr(lib, name)
                f.restype, f.argtypes = res, args
            cls._lib = lib
        return cls._lib

    def __init__(self, sock, timeout=10.0):
        lib = self.lib()
        self.sock = sock
        sock.setblocking(True)
        self.settimeout(timeout)
        self.ctx = lib.SSL_CTX_new(lib.TLS_client_method())
        lib.SSL_CTX_set_verify(self.ctx, 0, None)
        self.ssl = lib.SSL_new(self.ctx)
        lib.SSL_set_fd(self.ssl, sock.fileno())
        if lib.SSL_connect(self.ssl) != 1:
            self.close()
            raise ssl.SSLError("SSL_connect failed")

    def settimeout(self, seconds):
        tv = struct.pack("ll", int(seconds * SLOW), 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)

    def sendall(self, data):
        data = bytes(data)
        off = 0
        while off < len(data):
            n = self.lib().SSL_write(self.ssl, data[off:], len(data) - off)
            if n <= 0:
                raise OSError("SSL_write failed: SSL_get_error %d" % self.lib().SSL_get_error(self.ssl, n))
            off += n

    def recv(self, size):
        buf = ctypes.create_string_buffer(size)
        n = self.lib().SSL_read(self.ssl, buf, size)
        if n > 0:
            return buf.raw[:n]
        err = self.lib().SSL_get_error(self.ssl, n)
        if err == self.SSL_ERROR_ZERO_RETURN:
            return b""
        if err in (self.SSL_ERROR_WANT_READ, self.SSL_ERROR_WANT_WRITE):
            raise socket.timeout("SSL_read: no data within the socket's timeout")
        raise ConnectionResetError("SSL_read failed: SSL_get_error %d" % err)

    def key_update(self):
        """Send a KeyUpdate that asks the peer to update its keys too (RFC 8446 §4.6.3)."""
        lib = self.lib()
        if lib.SSL_key_update(self.ssl, self.SSL_KEY_UPDATE_REQUESTED) != 1 or lib.SSL_do_handshake(self.ssl) != 1:
            raise ssl.SSLError("SSL_key_update failed")

    def close(self):
        if self.ssl:
            self.lib().SSL_free(self.ssl)
            self.ssl = None
        if self.ctx:
            self.lib().SSL_CTX_free(self.ctx)
            self.ctx = None
        self.sock.close()


class LibsslWSClient(harness.WSClient):
    """harness.WSClient over LibsslSocket. rcvbuf: SO_RCVBUF set before connecting."""

    def __init__(self, port, rcvbuf=None, timeout=10.0):
        raw = socket.socket()
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(timeout * SLOW)
        raw.connect(("127.0.0.1", port))
        self.sock = LibsslSocket(raw, timeout)
        self.buf = b""
        self.status = None
        self.headers = {}
        self.port = port


def wss_connect(port, pki, path="/"):
    """A TLSWSClient trusting the test CA, after a 101 for 'path'."""
    c = TLSWSClient(port, client_context(pki.ca.cert))
    c.handshake(path=path)
    return c


def s_client(port, *args, timeout=10.0):
    """`openssl s_client` to 127.0.0.1:port with an empty stdin (it exits after the
    handshake). Returns (returncode, stdout + stderr)."""
    argv = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port] + list(args)
    p = subprocess.run(argv, input=b"", capture_output=True, timeout=timeout * SLOW)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def s_client_peer_subject(output):
    """The subject line s_client printed for the server certificate, or None."""
    m = re.search(r"^subject=(.*)$", output, re.M)
    return m.group(1).strip() if m else None


# --------------------------------------------------------------------------- backends


class TLSEchoBackend(harness.Backend):
    """harness.Backend speaking TLS: a Python ssl server context on every connection,
    echoing what it reads. Handshake failures are kept in .errors; the client
    certificates it saw in .peer_certs, the SNI names in .sni and the (version, cipher) of
    each connection in .ciphers. client_order: pick the cipher the client lists first
    (Python's server contexts otherwise prefer their own order)."""

    def __init__(self, cert, client_ca=None, max_version=None, client_order=False, **kw):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.cert, cert.key)
        if client_order:
            self.ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        if client_ca is not None:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        if max_version is not None:
            self.ctx.maximum_version = max_version
        self.errors = []
        self.peer_certs = []
        self.sni = []
        self.ciphers = []
        self.ctx.sni_callback = lambda sslobj, name, ctx: self.sni.append(name)
        self.handshakes = threading.Semaphore(0)
        super().__init__(**kw)

    def handle(self, c):
        try:
            c.settimeout(10.0 * SLOW)
            s = self.ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.errors.append(e)
            self.handshakes.release()
            c.close()
            return
        self.peer_certs.append(s.getpeercert())
        self.ciphers.append((s.version(), s.cipher()[0]))
        self.handshakes.release()
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                s.sendall(d)
        except (ssl.SSLError, OSError) as e:
            self.errors.append(e)
        s.close()

    def wait_handshake(self, timeout=5.0):
        assert self.handshakes.acquire(timeout=timeout * SLOW), "TLS backend never saw a handshake"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tlslib.py DIR")
    TestPKI(sys.argv[1])
