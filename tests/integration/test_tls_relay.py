"""wss:// relaying in volume. A relaying TLS side is read in large chunks that the gateway
feeds to OpenSSL itself (tls_feed_* in tls.c, session_read_tls in session.c) instead of
bufferevent_openssl's 4 KiB reads, and a TLS side with a large backlog is corked. These
tests push many TLS records of every size through both directions and check every byte
(sha256), the end of a stream in the same read as its last data (close_notify, or a TCP
half-close without one), and a KeyUpdate that arrives while the gateway cannot write to
the client. test_backpressure runs its stalled-reader cases over wss:// as well."""

import os
import random
import socket
import ssl

import pytest

import harness
import tlslib
from harness import SLOW
from tlslib import tls_listener
from wsplice_testlib import (
    MIB,
    HalfCloseSource,
    random_frame_stream,
    recv_hash,
    send_in_random_writes,
    send_upstream_and_close,
    sender_thread,
    sha256,
    wait_sink_result,
)

def tls_gateway(gw_factory, pki, backend_port, gateway=None, **route_opts):
    """A gateway with a TLS listener and one route /* to 127.0.0.1:backend_port."""
    route = {"path": "/*", "target": "127.0.0.1:%d" % backend_port}
    route.update(route_opts)
    text, _ = tlslib.config({"main": tls_listener(pki.ecdsa)}, {"r": route}, gateway)
    return gw_factory(text)


def close_politely(c):
    """The client's half of a close the gateway started: answer it and wait for EOF."""
    c.send_close(1000)
    assert c.wait_eof()
    c.close()


def sink_session(gw_factory, cleanup, pki, paused=False):
    """A sink backend, a gateway with a TLS listener routing to it, and a wss client."""
    sink = harness.SinkBackend(paused=paused)
    cleanup.append(sink)
    gw = tls_gateway(gw_factory, pki, sink.port)
    return sink, gw, tlslib.wss_connect(gw.port, pki)


# --------------------------------------------------------------------------- byte-exact volume


def test_wss_upstream_random_framing_arrives_byte_exact(gw_factory, cleanup, pki):
    """Frames of 1 B to 1 MiB in TLS writes of 1 B to 512 KiB: records of every size, cut
    anywhere by the gateway's reads, and frames cut anywhere by records."""
    sink, gw, c = sink_session(gw_factory, cleanup, pki)
    size = 24 * MIB + 12345
    data = send_upstream_and_close(c, size, 301)
    assert wait_sink_result(sink, timeout=60) == (size, sha256(data))
    gw.wait_log(r"close .*up=%d down=0 .*code=1000 by=client" % size)


def test_wss_downstream_arrives_byte_exact(gw_factory, cleanup, pki):
    size = 24 * MIB + 54321
    src = harness.SourceBackend(size, seed=302, end="close")
    cleanup.append(src)
    gw = tls_gateway(gw_factory, pki, src.port)
    c = tlslib.wss_connect(gw.port, pki)
    assert recv_hash(c, size) == sha256(harness.seeded_bytes(size, 302))
    assert c.expect_close(1000) == b"backend closed"
    close_politely(c)


def test_tls_backend_relays_both_directions_byte_exact(gw_factory, cleanup, pki):
    """The backend side is read the same way: a TLS echo backend returns 16 MiB sent in
    random framing while it is still being sent."""
    b = tlslib.TLSEchoBackend(pki.ecdsa)
    cleanup.append(b)
    route = {"path": "/*", "target": "127.0.0.1:%d" % b.port, "target_tls": "yes", "target_tls_ca": pki.ca.cert,
             "target_tls_server_name": "localhost"}
    gw = gw_factory(harness.config(routes={"tlsb": route}))
    c = harness.connect(gw.port)
    size = 16 * MIB + 777
    data = harness.seeded_bytes(size, 303)
    rnd = random.Random(303)
    t = sender_thread(send_in_random_writes, c.sock, random_frame_stream(rnd, data, max_message=MIB), rnd)
    assert recv_hash(c, size) == sha256(data)
    t.join(30 * SLOW)
    assert t.error is None, t.error
    c.send_close(1000)
    c.expect_close(1000)
    c.close()
    assert b.errors == [], b.errors


# --------------------------------------------------------------------------- the end of a stream


@pytest.mark.parametrize("end", ["close_notify", "tcp_half_close"])
def test_tls_client_end_right_after_data_delivers_every_byte(gw_factory, cleanup, pki, end):
    """A client that ends its TLS stream right behind its last frames (often in the same
    read): everything before the end reaches the backend, then the backend gets EOF."""
    sink, gw, c = sink_session(gw_factory, cleanup, pki)
    size = 3 * MIB + 99
    data = harness.seeded_bytes(size, 304)
    frames = b"".join(random_frame_stream(random.Random(304), data, max_message=256 * 1024))
    c.sock.sendall(frames)
    if end == "close_notify":
        try:
            c.sock.unwrap()  # close_notify; the gateway then closes TCP without answering it
        except (ssl.SSLError, OSError):
            pass
    else:
        c.sock.shutdown(socket.SHUT_WR)  # SSLSocket.shutdown: TCP FIN, no close_notify
    assert wait_sink_result(sink) == (size, sha256(data))
    line = gw.wait_log(r"session s=\d+ close client=.*").group(0)
    assert "up=%d " % size in line and 'reason="client closed TCP"' in line, line
    assert "tls error" not in gw.log(), gw.log()
    c.close()


def test_tls_backend_close_notify_right_after_data(gw_factory, cleanup, pki):
    """A TLS backend that sends a burst and at once close_notify: the client gets every
    byte, then close 1000."""
    size = 5 * MIB + 5

    class BurstBackend(tlslib.TLSEchoBackend):
        def handle(self, conn):
            s = self.ctx.wrap_socket(conn, server_side=True)
            s.sendall(harness.seeded_bytes(size, 305))
            try:
                s.unwrap()
            except (ssl.SSLError, OSError):
                pass
            s.close()

    b = BurstBackend(pki.ecdsa)
    cleanup.append(b)
    route = {"path": "/*", "target": "127.0.0.1:%d" % b.port, "target_tls": "yes", "target_tls_ca": pki.ca.cert,
             "target_tls_server_name": "localhost"}
    gw = gw_factory(harness.config(routes={"tlsb": route}))
    c = harness.connect(gw.port)
    assert recv_hash(c, size) == sha256(harness.seeded_bytes(size, 305))
    assert c.expect_close(1000) == b"backend closed"
    close_politely(c)


# --------------------------------------------------------------------------- KeyUpdate


def test_key_update_while_the_client_does_not_read(gw_factory, cleanup, pki):
    """A client that reads nothing while 16 MiB comes its way (the socket to it is full)
    asks for a KeyUpdate (RFC 8446 §4.6.3) and sends more. The gateway's SSL_read takes the
    KeyUpdate from the fed input and the data behind it; OpenSSL 3.0 sends the answering
    KeyUpdate with the next SSL_write, once the socket drains. Both directions complete
    byte-exact under the new keys."""
    size = 16 * MIB
    src = HalfCloseSource(size, seed=308)  # sends, shuts its side, then hashes what it gets
    cleanup.append(src)
    # A queue limit above the stream: reading the client never stops for backpressure.
    gw = tls_gateway(gw_factory, pki, src.port, gateway={"log_level": "debug"}, buffer_bytes="32m")
    c = tlslib.LibsslWSClient(gw.port, rcvbuf=64 * 1024)
    c.handshake()
    # The backend's EOF was read: all 16 MiB are queued in the gateway or the kernel.
    gw.wait_log(r"session s=\d+ OPEN -> CLOSING", timeout=20)
    c.sock.key_update()
    up = harness.seeded_bytes(300000, 309)
    c.send_binary(up)
    assert recv_hash(c, size) == sha256(harness.seeded_bytes(size, 308))
    assert c.expect_close(1000) == b"backend closed"
    c.send_close(1000)
    assert c.wait_eof()
    c.close()
    assert wait_sink_result(src) == (len(up), sha256(up))


def test_corrupt_record_after_the_upgrade_is_a_logged_tls_error(gw_factory, echo, pki):
    """A record that fails authentication, read through the feed: the session ends as a
    TLS error whose log line carries OpenSSL's reason, and other sessions go on."""
    gw = tls_gateway(gw_factory, pki, echo.port)
    c = tlslib.wss_connect(gw.port, pki)
    c.send_binary(b"before")
    assert c.recv_data(6) == b"before"
    # An application_data record (type 23, TLS 1.2 on the wire, 32 bytes) of random bytes,
    # written under the TLS layer: its AEAD tag cannot verify.
    os.write(c.sock.fileno(), b"\x17\x03\x03\x00\x20" + os.urandom(32))
    try:  # the gateway may answer with an alert before it closes
        while c.sock.recv(65536):
            pass
    except (ssl.SSLError, ConnectionResetError):
        pass
    c.close()
    m = gw.wait_log(r'session s=\d+ tls error client=\S+ state=OPEN reason="([^"]*)"')
    assert "bad record mac" in m.group(1) or "decrypt" in m.group(1), m.group(0)
    line = gw.wait_log(r"session s=\d+ close client=.*").group(0)
    assert "up=6 down=6 " in line and 'reason="client connection reset"' in line, line
    other = tlslib.wss_connect(gw.port, pki)
    other.send_binary(b"after")
    assert other.recv_data(5) == b"after"
    other.close()
