"""Backend names are resolved per connection on the event loop (libevent's evdns), with the
name servers from [gateway] resolv_conf and /etc/hosts. Each test runs its own name server
on loopback: one that never answers, and one that answers 'no such name'."""

import socket
import struct
import threading

import harness


class NameServer:
    """A UDP name server on 127.0.0.1. mode 'silent' reads queries and never answers;
    'nxdomain' answers every query with RCODE 3 (no such name)."""

    def __init__(self, tmpdir, mode):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.queries = 0
        self.stopped = False
        self.resolv_conf = str(tmpdir / "resolv.conf")
        with open(self.resolv_conf, "w") as f:
            f.write("nameserver 127.0.0.1:%d\noptions timeout:30 attempts:1\n" % self.port)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped:
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if self.mode == "nxdomain" and len(query) >= 12:
                qid, flags = struct.unpack("!HH", query[:4])
                # QR=1, keep opcode and RD, RA=1, RCODE=3; same question, no answers.
                reply_flags = 0x8000 | (flags & 0x7900) | 0x0080 | 3
                self.sock.sendto(struct.pack("!HH", qid, reply_flags) + query[4:], peer)

    def close(self):
        self.stopped = True
        self.sock.close()


def name_gateway(gw_factory, ns, target, **route):
    opts = {"path": "/*", "target": target}
    opts.update(route)
    return gw_factory(harness.config(gateway={"resolv_conf": ns.resolv_conf}, routes={"r": opts}))


def test_lookup_slower_than_connect_timeout_gets_504(gw_factory, cleanup, tmp_path):
    ns = NameServer(tmp_path, "silent")
    cleanup.append(ns)
    gw = name_gateway(gw_factory, ns, "backend.example.org:80", connect_timeout_s="0.5")
    c = harness.WSClient(gw.port)
    status, _ = c.handshake(expect=None)
    assert status == 504
    assert ns.queries >= 1, "the gateway never asked the name server"
    assert c.wait_eof()
    gw.wait_log(r"backend connect failed .*reason=timeout")
    # A lookup still pending at SIGTERM gets 503, and the gateway exits cleanly.
    c2 = harness.WSClient(gw.port)
    c2.sock.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(int(250 * harness.SLOW)):
        if ns.queries >= 2:
            break
        threading.Event().wait(0.02)
    assert ns.queries >= 2, "the second lookup never reached the name server"
    gw.send_signal(__import__("signal").SIGTERM)
    status, _, _ = c2.read_response()
    assert status == 503
    assert c2.wait_eof()


def test_name_that_does_not_exist_gets_502(gw_factory, cleanup, tmp_path):
    ns = NameServer(tmp_path, "nxdomain")
    cleanup.append(ns)
    gw = name_gateway(gw_factory, ns, "no-such-backend.example.org:80")
    c = harness.WSClient(gw.port)
    status, _ = c.handshake(expect=None)
    assert status == 502
    assert ns.queries >= 1
    gw.wait_log(r"backend name lookup failed")


def test_hosts_file_names_resolve_without_a_name_server(gw_factory, cleanup, echo, tmp_path):
    # localhost comes from /etc/hosts; the silent name server must not be needed.
    # /etc/hosts may list ::1 before 127.0.0.1: the echo backend is IPv4 only, so this
    # also checks that each resolved address is tried in turn.
    ns = NameServer(tmp_path, "silent")
    cleanup.append(ns)
    gw = name_gateway(gw_factory, ns, "localhost:%d" % echo.port, connect_timeout_s="2")
    c = harness.connect(gw.port)
    c.send_binary(b"via /etc/hosts")
    assert c.recv_data(14) == b"via /etc/hosts"
    c.send_close(1000)
    c.expect_close(1000)
