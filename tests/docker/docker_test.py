"""End-to-end check of the wsplice image with rootful podman (make docker-test).

Runs the image with a published loopback port and a mounted INI whose route points at an
echo backend on the host (through podman's host.containers.internal, the bridge's gateway
address), then checks: the listener answers, a WebSocket session is spliced byte-exact,
`podman healthcheck run` passes, the process is wsplice as PID 1 running as a non-root
user with no compiler in the image, and `podman stop` drains an open session (close 1001)
and the container exits 0 within a couple of seconds. Exits nonzero on any failure and
always removes its container. Python 3 standard library only.
"""

import base64
import hashlib
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

IMAGE = os.environ.get("WSPLICE_IMAGE", "wsplice")
PODMAN = os.environ.get("PODMAN", "podman")
STOP_LIMIT_S = 3.0  # SIGTERM to exit, with one session draining
START_LIMIT_S = 15.0


def step(msg):
    print("docker-test: " + msg, flush=True)


class Failure(Exception):
    pass


def podman(*args, check=True, timeout=120):
    r = subprocess.run([PODMAN] + list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise Failure("podman %s -> %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------- backend


class EchoBackend:
    """Echoes every connection on (host, port); records what each one received."""

    def __init__(self, host, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.received = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        got = bytearray()
        self.received.append(got)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
                c.sendall(d)
        except OSError:
            pass
        c.close()

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------- client


class WS:
    """A minimal masked-frame WebSocket client (RFC 6455 §5.3) over a blocking socket."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
                % (path, port, key)
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1] != "101":
            raise Failure("handshake answered %r" % lines[0])
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        if headers.get("sec-websocket-accept") != accept:
            raise Failure("wrong Sec-WebSocket-Accept: %r" % headers)

    def _fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise Failure("connection closed by the gateway")
        self.buf += d

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        k = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
        self.sock.sendall(head + mask + masked)

    def recv_frame(self):
        while len(self.buf) < 2:
            self._fill()
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if b1 & 0x80:
            raise Failure("server frame is masked")
        if n == 126:
            while len(self.buf) < 4:
                self._fill()
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill()
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < off + n:
            self._fill()
        payload, self.buf = self.buf[off : off + n], self.buf[off + n :]
        return b0 & 0x0F, payload

    def recv_data(self, n):
        out = bytearray()
        while len(out) < n:
            op, payload = self.recv_frame()
            if op == 0x8:
                raise Failure("close frame after %d of %d bytes: %r" % (len(out), n, payload))
            if op in (0x0, 0x1, 0x2):
                out += payload
        return bytes(out)

    def recv_close(self):
        """Frames until a close; returns its code (None if empty)."""
        while True:
            op, payload = self.recv_frame()
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def wait_eof(self, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()


def http_answers(port):
    """True when something on 127.0.0.1:port answers an HTTP request with a status line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


# --------------------------------------------------------------------------- test


def run(tmp, name):
    host_port = free_port()
    echo_port = free_port()
    ini = os.path.join(tmp, "wsplice.ini")
    with open(ini, "w") as f:
        f.write(
            "[gateway]\nlog_level = info\ndrain_timeout_s = 5\n"
            "[listener:public]\nbind = 0.0.0.0:6080\n"
            "[route:echo]\npath = /websockify\ntarget = host.containers.internal:%d\n" % echo_port
        )
    os.chmod(tmp, 0o755)
    os.chmod(ini, 0o644)

    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip())
    step("image %s: %.1f MB" % (IMAGE, size / 1e6))

    step("podman run -p 127.0.0.1:%d:6080 with the INI mounted at /etc/wsplice/wsplice.ini" % host_port)
    t0 = time.monotonic()
    podman(
        "run", "-d", "--name", name, "-p", "127.0.0.1:%d:6080" % host_port,
        "-v", "%s:/etc/wsplice/wsplice.ini:ro" % ini,
        "--health-interval", "disable",  # no systemd timers here; `podman healthcheck run` below
        IMAGE,
    )
    while not http_answers(host_port):
        if time.monotonic() - t0 > START_LIMIT_S:
            raise Failure("no HTTP answer on 127.0.0.1:%d within %.0fs" % (host_port, START_LIMIT_S))
        if podman("inspect", name, "--format", "{{.State.Running}}").stdout.strip() != "true":
            raise Failure("the container exited during startup")
        time.sleep(0.01)
    step("listener answering %.2fs after podman run" % (time.monotonic() - t0))

    gw = podman("inspect", name, "--format", "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}").stdout
    gw = gw.strip()
    if not gw:
        raise Failure("no bridge gateway address for the container (host.containers.internal)")
    echo = EchoBackend(gw, echo_port)
    step("echo backend on the host at %s:%d (host.containers.internal)" % (gw, echo_port))
    try:
        who = podman("exec", name, "sh", "-c", "id -u; id -g; cat /proc/1/comm").stdout.split()
        if who[:2] == ["0", "0"] or who[0] == "0":
            raise Failure("the gateway runs as root: %r" % who)
        if who[2] != "wsplice":
            raise Failure("PID 1 is %r, not wsplice" % who[2])
        step("PID 1 is wsplice, uid=%s gid=%s" % (who[0], who[1]))
        tools = podman("exec", name, "sh", "-c", "command -v gcc cc make ld apt-get 2>/dev/null || true").stdout
        if any(t in tools for t in ("gcc", "/cc", "make", "/ld")):
            raise Failure("build tools in the runtime image: %r" % tools)

        data = random.Random(6455).randbytes(3 << 20)
        ws = WS(host_port, "/websockify")
        sizes = [1, 125, 126, 65535, 65536, 100000]
        off, i = 0, 0
        sent_hash = hashlib.sha256()
        got_hash = hashlib.sha256()
        while off < len(data):
            chunk = data[off : off + sizes[i % len(sizes)]]
            ws.send(0x2, chunk)
            sent_hash.update(chunk)
            got_hash.update(ws.recv_data(len(chunk)))
            off += len(chunk)
            i += 1
        if sent_hash.digest() != got_hash.digest():
            raise Failure("echoed bytes differ from the bytes sent")
        ws.send(0x8, struct.pack("!H", 1000))
        code = ws.recv_close()
        if code != 1000:
            raise Failure("close answered with %r, not 1000" % code)
        ws.wait_eof()
        ws.close()
        deadline = time.monotonic() + 5
        while not echo.received or len(echo.received[0]) < len(data):
            if time.monotonic() > deadline:
                raise Failure("the backend did not receive every byte")
            time.sleep(0.02)
        if bytes(echo.received[0]) != data:
            raise Failure("the backend received different bytes")
        step("session: %d bytes in %d frames spliced byte-exact both ways, close 1000" % (len(data), i))

        r = podman("healthcheck", "run", name, check=False)
        if r.returncode != 0:
            raise Failure("podman healthcheck run -> %d: %s%s" % (r.returncode, r.stdout, r.stderr))
        step("podman healthcheck run: healthy")
        r = podman("exec", name, "wsplice", "--healthcheck-strict", "ws://127.0.0.1:6080/websockify", check=False)
        if r.returncode != 0 or "101" not in r.stdout:
            raise Failure("strict healthcheck: %d %s%s" % (r.returncode, r.stdout, r.stderr))
        step("wsplice --healthcheck-strict: " + r.stdout.strip().split("healthy: ", 1)[-1])

        ws = WS(host_port, "/websockify")  # held open across the stop
        ws.send(0x2, b"before stop")
        if ws.recv_data(11) != b"before stop":
            raise Failure("second session did not echo")
        result = {}

        def stop():
            t = time.monotonic()
            result["rc"] = podman("stop", "-t", "10", name, check=False)
            result["s"] = time.monotonic() - t

        stopper = threading.Thread(target=stop)
        stopper.start()
        code = ws.recv_close()
        ws.send(0x8, struct.pack("!H", code or 1000))
        ws.wait_eof()
        ws.close()
        stopper.join(30)
        if code != 1001:
            raise Failure("open session got close %r on SIGTERM, not 1001" % code)
        exit_code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        if result["rc"].returncode != 0 or exit_code != "0":
            raise Failure("podman stop -> %d, container exit code %s" % (result["rc"].returncode, exit_code))
        if result["s"] > STOP_LIMIT_S:
            raise Failure("podman stop took %.2fs (limit %.1fs): SIGTERM not handled promptly" % (result["s"], STOP_LIMIT_S))
        logs = podman("logs", name).stderr + podman("logs", name).stdout
        if "signal TERM: draining 1 sessions" not in logs or "wsplice stopped" not in logs:
            raise Failure("no drain in the log:\n" + logs)
        step("podman stop: open session got close 1001, exit code 0 after %.2fs" % result["s"])
    finally:
        echo.close()


# An echo server in Perl (perl-base is in every Debian image, even minbase): one child per
# connection, so several sessions can run at once.
PERL_ECHO = (
    "use IO::Socket::INET; $SIG{CHLD}='IGNORE';"
    "my $s=IO::Socket::INET->new(LocalPort=>5900,Listen=>16,ReuseAddr=>1) or die $!;"
    "while(my $c=$s->accept){ if(!fork){ my $b; while(sysread($c,$b,65536)){ syswrite($c,$b) } exit } }"
)
BASE_IMAGE = os.environ.get("WSPLICE_BASE_IMAGE", "docker.io/library/debian:bookworm-slim")


def run_network(tmp, name):
    """The image's own default config (/websockify -> backend:5900) on a podman network,
    with the backend as another container named by a network alias: the gateway must
    resolve it through the network's DNS server, like a compose service name."""
    net, backend = name + "-net", name + "-backend"
    host_port = free_port()
    try:
        podman("network", "create", net)
        podman("run", "-d", "--name", backend, "--network", net, "--network-alias", "backend",
               BASE_IMAGE, "perl", "-e", PERL_ECHO)
        podman("run", "-d", "--name", name, "--network", net, "-p", "127.0.0.1:%d:6080" % host_port,
               "--health-interval", "disable", IMAGE)
        t0 = time.monotonic()
        while not http_answers(host_port):
            if time.monotonic() - t0 > START_LIMIT_S:
                raise Failure("no HTTP answer on 127.0.0.1:%d within %.0fs" % (host_port, START_LIMIT_S))
            time.sleep(0.02)
        resolv = podman("exec", name, "cat", "/etc/resolv.conf").stdout
        for i in range(6):  # each session resolves the name again
            payload = b"session %d through backend:5900 " % i * 100
            ws = WS(host_port, "/websockify")
            ws.send(0x2, payload)
            if ws.recv_data(len(payload)) != payload:
                raise Failure("session %d: echo differs" % i)
            ws.send(0x8, struct.pack("!H", 1000))
            if ws.recv_close() != 1000:
                raise Failure("session %d: no close 1000" % i)
            ws.close()
        step("container network: 6 sessions to backend:5900 by its network alias (resolv.conf: %s)"
             % " ".join(l.split()[1] for l in resolv.splitlines() if l.startswith("nameserver")))
        podman("stop", "-t", "10", name)
        exit_code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        if exit_code != "0":
            raise Failure("container exit code %s" % exit_code)
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)
        podman("rm", "-f", "-t", "0", backend, check=False)
        podman("network", "rm", "-f", net, check=False)


def main():
    name = "wsplice-test-%d" % os.getpid()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wsplice-docker-") as tmp:
        try:
            run(tmp, name)
            podman("rm", "-f", "-t", "0", name, check=False)
            run_network(tmp, name)
        except (Failure, subprocess.TimeoutExpired, OSError) as e:
            print("docker-test: FAILED: %s" % e, file=sys.stderr, flush=True)
            r = podman("logs", name, check=False)
            if r.returncode == 0:
                print("---- container log\n" + r.stdout + r.stderr, file=sys.stderr)
            return 1
        finally:
            podman("rm", "-f", "-t", "0", name, check=False)
    step("passed in %.1fs" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
