"""Backend names are resolved per connection without blocking the event loop.

resolver = system (the default) runs getaddrinfo on helper threads, so names resolve the way
every other program on the machine resolves them (/etc/hosts, nsswitch, name servers in
order). resolver = evdns is libevent's asynchronous resolver with the name servers from
[gateway] resolv_conf. The evdns tests run their own name server on a loopback port; the
system-resolver tests give the gateway its own /etc/resolv.conf and /etc/hosts in a private
mount namespace (root only) with name servers on 127.0.0.x port 53."""

import os
import shutil
import socket
import struct
import subprocess
import threading

import pytest

import harness


def dns_question(query):
    """(name, qtype, end offset) of the first question in a DNS query."""
    labels, i = [], 12
    while query[i] != 0:
        n = query[i]
        labels.append(query[i + 1 : i + 1 + n].decode("ascii").lower())
        i += 1 + n
    qtype = struct.unpack("!H", query[i + 1 : i + 3])[0]
    return ".".join(labels), qtype, i + 5


class NameServer:
    """A UDP name server. mode 'silent' reads queries and never answers; 'nxdomain' answers
    every query with RCODE 3 (no such name); 'answer' gives an A record for each name in
    'names' ({name: ipv4}), no data for other types, and 'no such name' for anything else."""

    def __init__(self, tmpdir, mode, host="127.0.0.1", port=0, names=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.mode = mode
        self.names = names or {}
        self.queries = 0
        self.asked = []
        self.stopped = False
        self.resolv_conf = str(tmpdir / ("resolv-%s-%d.conf" % (host, self.port)))
        with open(self.resolv_conf, "w") as f:
            f.write("nameserver %s:%d\noptions timeout:30 attempts:1\n" % (host, self.port))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _reply(self, query):
        qid, flags = struct.unpack("!HH", query[:4])
        # QR=1, keep opcode and RD, RA=1.
        reply_flags = 0x8000 | (flags & 0x7900) | 0x0080
        name, qtype, end = dns_question(query)
        self.asked.append((name, qtype))
        if self.mode == "nxdomain" or name not in self.names:
            return struct.pack("!HHHHHH", qid, reply_flags | 3, 1, 0, 0, 0) + query[12:end]
        answers = b""
        if qtype == 1:  # A
            answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(self.names[name])
        count = 1 if answers else 0
        return struct.pack("!HHHHHH", qid, reply_flags, 1, count, 0, 0) + query[12:end] + answers

    def _run(self):
        while not self.stopped:
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if self.mode != "silent" and len(query) >= 17:
                self.sock.sendto(self._reply(query), peer)

    def close(self):
        self.stopped = True
        self.sock.close()


def name_gateway(gw_factory, ns, target, **route):
    opts = {"path": "/*", "target": target}
    opts.update(route)
    gateway = {"resolver": "evdns", "resolv_conf": ns.resolv_conf}
    return gw_factory(harness.config(gateway=gateway, routes={"r": opts}))


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


def echo_once(gw, payload):
    c = harness.connect(gw.port)
    c.send_binary(payload)
    assert c.recv_data(len(payload)) == payload
    c.send_close(1000)
    c.expect_close(1000)


def test_system_resolver_reads_hosts_file(gw_factory, echo):
    # The default resolver: localhost from /etc/hosts; ::1 may come first and is refused
    # (the echo backend is IPv4 only), so each address is tried in turn.
    gw = gw_factory(harness.config(routes={"r": {"path": "/*", "target": "localhost:%d" % echo.port}}))
    for i in range(3):
        echo_once(gw, b"system resolver %d" % i)
    assert "backend name lookup failed" not in gw.log()


def private_etc_prefix(tmp_path, resolv_conf_text, hosts_text):
    """A command prefix that runs the gateway with its own /etc/resolv.conf and /etc/hosts
    (bind mounts in a private mount namespace); the gateway keeps the pid."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private /etc/resolv.conf")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(resolv_conf_text)
    hosts = tmp_path / "hosts"
    hosts.write_text(hosts_text)
    script = 'mount --bind "$0" /etc/resolv.conf && mount --bind "$1" /etc/hosts && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(resolv), str(hosts)]


def test_system_resolver_asks_name_servers_in_order(gw_factory, cleanup, echo, tmp_path):
    # What a container network looks like: the first name server knows the service names,
    # the ones after it (the host's) say "no such name". The system resolver asks the first
    # one first, every time; libevent's evdns rotated over all three and failed most lookups.
    names = {"backend.wsplice.test": "127.0.0.1"}
    servers = []
    try:
        servers.append(NameServer(tmp_path, "answer", host="127.0.0.2", port=53, names=names))
        servers.append(NameServer(tmp_path, "nxdomain", host="127.0.0.3", port=53))
        servers.append(NameServer(tmp_path, "nxdomain", host="127.0.0.4", port=53))
    except PermissionError:
        pytest.skip("cannot bind port 53 on 127.0.0.x")
    finally:
        cleanup.extend(servers)
    prefix = private_etc_prefix(
        tmp_path,
        "nameserver 127.0.0.2\nnameserver 127.0.0.3\nnameserver 127.0.0.4\noptions timeout:2 attempts:1\n",
        "127.0.0.1 localhost\n127.0.0.1 from-hosts.wsplice.test\n",
    )
    routes = {
        "dns": {"path": "/dns", "target": "backend.wsplice.test:%d" % echo.port},
        "hosts": {"path": "/hosts", "target": "from-hosts.wsplice.test:%d" % echo.port},
        "unknown": {"path": "/unknown", "target": "unknown.wsplice.test:%d" % echo.port},
    }
    gw = gw_factory(harness.config(routes=routes), prefix=prefix)
    for i in range(8):
        c = harness.connect(gw.port, path="/dns")
        c.send_binary(b"lookup %d" % i)
        assert c.recv_data(8) == b"lookup %d" % i
        c.send_close(1000)
        c.expect_close(1000)
    assert servers[0].queries >= 1
    assert servers[1].queries == 0 and servers[2].queries == 0, "asked a later name server first"
    # /etc/hosts names never reach a name server.
    asked_before = servers[0].asked[:]
    c = harness.connect(gw.port, path="/hosts")
    c.send_binary(b"hosts")
    assert c.recv_data(5) == b"hosts"
    c.send_close(1000)
    c.expect_close(1000)
    assert all(name != "from-hosts.wsplice.test" for name, _ in servers[0].asked[len(asked_before):])
    assert "backend name lookup failed" not in gw.log()
    # A name nobody knows: the first server's "no such name" is the answer, 502.
    c = harness.WSClient(gw.port)
    status, _ = c.handshake(path="/unknown", expect=None)
    assert status == 502
    gw.wait_log(r"backend name lookup failed .*target=unknown\.wsplice\.test:\d+")


def test_reload_switches_resolver_kind(gw_factory, cleanup, echo, tmp_path):
    # Start on evdns with a name server that knows nothing, then reload onto the system
    # resolver: the next session resolves localhost from /etc/hosts.
    ns = NameServer(tmp_path, "nxdomain")
    cleanup.append(ns)
    route = {"r": {"path": "/*", "target": "no-such-name.wsplice.test:%d" % echo.port}}
    gw = gw_factory(harness.config(gateway={"resolver": "evdns", "resolv_conf": ns.resolv_conf}, routes=route))
    c = harness.WSClient(gw.port)
    status, _ = c.handshake(expect=None)
    assert status == 502
    assert ns.queries >= 1
    with open(gw.config_path, "w") as f:
        f.write(harness.config(routes={"r": {"path": "/*", "target": "localhost:%d" % echo.port}}))
    gw.send_signal(__import__("signal").SIGHUP)
    gw.wait_log(r"reload of .* done")
    queries = ns.queries
    echo_once(gw, b"after reload")
    assert ns.queries == queries, "the retired evdns resolver was asked again"
