"""Shared pieces of the integration suite: the real wsplice binary on loopback, real
backends (echo, sink, source, silent, black hole), and a small WebSocket client that can
also send what a well-behaved client never would.

Everything here uses real sockets and real processes; nothing is mocked.
"""

import hashlib
import os
import random
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

WSPLICE_BIN = os.environ.get("WSPLICE_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "wsplice"))
GATEWAY_WRAPPER = os.environ.get("GATEWAY_WRAPPER", "")
# Valgrind makes everything slower; tests that wait for the gateway scale their timeouts.
SLOW = 20.0 if "valgrind" in GATEWAY_WRAPPER else 1.0
# The exit status valgrind gives a gateway in which it found errors (its --error-exitcode).
_m = re.search(r"--error-exitcode=(\d+)", GATEWAY_WRAPPER)
VALGRIND_ERROR_EXIT = int(_m.group(1)) if _m and "valgrind" in GATEWAY_WRAPPER else None
# What memcheck writes for an error or a leak (with -q it writes nothing else but warnings).
VALGRIND_REPORT = re.compile(
    r"^==\d+== (Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched free|"
    r"Source and destination overlap|.* are (definitely|possibly) lost|ERROR SUMMARY: [1-9])",
    re.M,
)


def memcheck_problems(log, returncode):
    """What valgrind reported in a gateway's log, or None (always None without valgrind)."""
    if VALGRIND_ERROR_EXIT is None:
        return None
    # An exit code the gateway uses itself (1 runtime, 2 usage) proves nothing: then only
    # the reports in the log count.
    if returncode == VALGRIND_ERROR_EXIT and returncode not in (1, 2):
        return "valgrind found errors (exit %d)" % returncode
    m = VALGRIND_REPORT.search(log)
    return "valgrind reported: " + m.group(0) if m else None

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# --------------------------------------------------------------------------- gateway


class Gateway:
    """The real binary, started on a generated config (or command-line arguments).

    Listener addresses use port 0; the bound ports are read back from the log.
    """

    def __init__(self, config=None, args=None, env=None, wait=True, rlimit_nofile=None, prefix=None):
        self.dir = tempfile.mkdtemp(prefix="wsplice-test-")
        self.log_path = os.path.join(self.dir, "gateway.log")
        self.config_path = None
        if config is not None:
            self.config_path = os.path.join(self.dir, "wsplice.ini")
            with open(self.config_path, "w") as f:
                f.write(config)
            argv = [WSPLICE_BIN, "-c", self.config_path] + list(args or [])
        else:
            argv = [WSPLICE_BIN] + list(args or [])
        if GATEWAY_WRAPPER:
            argv = shlex.split(GATEWAY_WRAPPER) + argv
        if prefix:  # a command that sets the stage and then execs the rest (same process)
            argv = list(prefix) + argv
        preexec = None
        if rlimit_nofile is not None:
            import resource

            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (rlimit_nofile, rlimit_nofile))

        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
        )
        self.ports = {}
        if wait:
            self.wait_listening()

    # -- lifecycle

    def wait_listening(self, timeout=10.0):
        """Wait for every listener's 'listening' line; fill self.ports {name: port}."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            text = self.log()
            if "started:" in text:
                for name, addr in re.findall(r"listener name=(\S+) addr=(\S+) listening", text):
                    self.ports[name] = int(addr.rsplit(":", 1)[1])
                return
            if self.proc.poll() is not None:
                raise RuntimeError("wsplice exited with %s:\n%s" % (self.proc.returncode, text))
            time.sleep(0.02)
        raise RuntimeError("wsplice did not start:\n" + self.log())

    @property
    def port(self):
        """The port of the only (or first) listener."""
        return next(iter(self.ports.values()))

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, timeout=5.0):
        """Wait until the log matches the regex 'pattern'; return the match."""
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            time.sleep(0.02)
        raise AssertionError("log never matched %r:\n%s" % (pattern, self.log()))

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the gateway and wait for it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("wsplice did not exit after %s:\n%s" % (sig, self.log()))
        self._log.close()
        return self.proc.returncode

    def shutdown(self):
        """End a test's gateway the way an operator would: SIGTERM, and a second SIGTERM
        (exit at once) if sessions are still draining. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(0.5 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10.0 * SLOW)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- observation

    def _pid(self):
        # Under a wrapper (valgrind) the wrapper is the gateway process itself.
        return self.proc.pid

    def rss_kb(self, field="VmRSS"):
        """A memory figure from /proc/PID/status in KiB: VmRSS (resident), VmHWM (its peak),
        VmPeak (the peak address space)."""
        with open("/proc/%d/status" % self._pid()) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError("no " + field)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self._pid()))


def config(listeners=None, routes=None, gateway=None):
    """Build INI text. listeners: {name: bind}; routes: {name: {key: value}}."""
    lines = ["[gateway]"]
    for k, v in (gateway or {}).items():
        lines.append("%s = %s" % (k, v))
    for name, bind in (listeners or {"main": "127.0.0.1:0"}).items():
        lines += ["[listener:%s]" % name, "bind = %s" % bind]
    for name, opts in (routes or {}).items():
        lines.append("[route:%s]" % name)
        for k, v in opts.items():
            lines.append("%s = %s" % (k, v))
    return "\n".join(lines) + "\n"


def simple_gateway(target_port, path="/*", route_opts=None, gateway_opts=None, **kw):
    """One loopback listener and one route to 127.0.0.1:target_port."""
    opts = {"path": path, "target": "127.0.0.1:%d" % target_port}
    opts.update(route_opts or {})
    return Gateway(config(routes={"r": opts}, gateway=gateway_opts), **kw)


# --------------------------------------------------------------------------- backends


class Backend:
    """A TCP server on 127.0.0.1 in a thread; subclasses handle each connection."""

    def __init__(self, backlog=128):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.accepted = threading.Semaphore(0)
        self._stop = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self._stop:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.1)
                if not r:
                    continue
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            self.accepted.release()
            threading.Thread(target=self._run, args=(c,), daemon=True).start()

    def _run(self, c):
        try:
            self.handle(c)
        except OSError:
            pass

    def handle(self, c):
        raise NotImplementedError

    def wait_accept(self, timeout=5.0):
        assert self.accepted.acquire(timeout=timeout * SLOW), "backend never got a connection"

    def close(self):
        self._stop = True
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


class EchoBackend(Backend):
    def handle(self, c):
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.close()


class SinkBackend(Backend):
    """Hashes everything it receives per connection; records EOF. Can start paused."""

    def __init__(self, paused=False, **kw):
        self.results = []  # (bytes, sha256 hex) per finished connection, in finish order
        self.done = threading.Semaphore(0)
        self.resume = threading.Event()
        if not paused:
            self.resume.set()
        super().__init__(**kw)

    def handle(self, c):
        self.resume.wait()
        self.sink(c)

    def sink(self, c):
        """Hash everything 'c' sends until EOF, record it, and close."""
        h = hashlib.sha256()
        n = 0
        while True:
            d = c.recv(262144)
            if not d:
                break
            h.update(d)
            n += len(d)
        with self.lock:
            self.results.append((n, h.hexdigest()))
        self.done.release()
        c.close()

    def wait_done(self, count=1, timeout=30.0):
        for _ in range(count):
            assert self.done.acquire(timeout=timeout * SLOW), "sink never saw EOF"


class SourceBackend(Backend):
    """Sends `size` seeded bytes in writes of random size, then closes (or half-closes,
    or resets). Optionally waits for `start` before sending."""

    def __init__(self, size, seed=1, end="close", paused=False, **kw):
        self.size = size
        self.seed = seed
        self.end = end  # "close", "shutdown" (half-close, keep reading), "reset", "none"
        self.start = threading.Event()
        if not paused:
            self.start.set()
        self.sent = threading.Event()
        super().__init__(**kw)

    def handle(self, c):
        self.start.wait()
        data = seeded_bytes(self.size, self.seed)
        rnd = random.Random(self.seed)
        i = 0
        while i < len(data):
            n = rnd.randint(1, 200000)
            c.sendall(data[i : i + n])
            i += n
        self.sent.set()
        if self.end == "close":
            c.close()
        elif self.end == "shutdown":
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass
            c.close()
        elif self.end == "reset":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()


class SilentBackend(Backend):
    """Accepts and never reads (its receive window fills) nor writes."""

    def handle(self, c):
        while not self._stop:
            time.sleep(0.1)


class BlackHole:
    """A listening port whose accept queue is full, so new SYNs are dropped and a connect
    hangs until the connecting side times out."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(f)
        time.sleep(0.05)

    def close(self):
        for f in self.fillers:
            f.close()
        self.sock.close()


def free_port():
    """A loopback port with nothing listening (connects are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def seeded_bytes(n, seed):
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------- client


def mask_bytes(data, key):
    """XOR 'data' with the 4-byte key, fast for large payloads."""
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, key=None, length_form=None):
    """A client frame. length_form forces 7/16/64-bit length encoding for tests."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    mbit = 0x80 if mask else 0
    if form == 7:
        head = struct.pack("!BB", b0, mbit | n)
    elif form == 16:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + mask_bytes(payload, key)


class Closed(Exception):
    pass


class WSClient:
    """A raw-socket WebSocket client. It does exactly what it is told, so tests can send
    malformed frames and observe the gateway's exact answers."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, source=None):
        # 'source' binds the client to another loopback address (127.0.0.2, ...), so one
        # machine can act as several client IPs.
        self.sock = socket.create_connection(
            (host, port), timeout=timeout * SLOW, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.status = None
        self.headers = {}
        self.port = port

    # -- handshake

    def handshake(self, path="/", protocols=None, headers=None, key=None, expect=101):
        """Send an upgrade request; returns (status, headers). Asserts 'expect' if given."""
        key = key or __import__("base64").b64encode(os.urandom(16)).decode()
        h = {
            "Host": "127.0.0.1:%d" % self.port,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }
        if protocols:
            h["Sec-WebSocket-Protocol"] = ", ".join(protocols)
        for k, v in (headers or {}).items():
            if v is None:
                h.pop(k, None)
            else:
                h[k] = v
        req = "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        self.sock.sendall(req.encode())
        self.key = key
        status, headers, _body = self.read_response(body=expect != 101)
        if expect is not None:
            assert status == expect, "expected %s, got %s %s" % (expect, status, headers)
        return status, headers

    def read_response(self, body=True):
        """Read an HTTP response head (and, if body, a Content-Length body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.status_line = lines[0]
        self.headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.body = b""
        if body and "content-length" in self.headers:
            n = int(self.headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            self.body, self.buf = self.buf[:n], self.buf[n:]
        return self.status, self.headers, self.body

    # -- frames

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, opcode, payload=b"", **kw):
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def send_binary(self, payload):
        self.send(OP_BINARY, payload)

    def send_text(self, text):
        self.send(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_close(self, code=1000, reason=b""):
        payload = b"" if code is None else struct.pack("!H", code) + reason
        self.send(OP_CLOSE, payload)

    def _fill(self):
        d = self.sock.recv(262144)
        if not d:
            raise Closed("connection closed")
        self.buf += d

    def _need(self, n):
        while len(self.buf) < n:
            self._fill()

    def recv_frame(self):
        """Returns (fin, opcode, payload). Server frames must not be masked."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "server frame is masked"
        assert b0 & 0x70 == 0, "server frame has RSV bits"
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        self._need(off + n)
        payload = self.buf[off : off + n]
        self.buf = self.buf[off + n :]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_data(self, n):
        """Collect n payload bytes from data frames (answering nothing; pings are skipped)."""
        out = bytearray()
        while len(out) < n:
            fin, op, payload = self.recv_frame()
            if op in (OP_BINARY, OP_TEXT, OP_CONT):
                out += payload
            elif op == OP_CLOSE:
                raise Closed("close frame after %d of %d bytes: %r" % (len(out), n, payload))
        return bytes(out)

    def recv_close(self):
        """Read frames until a close frame; returns (code, reason, data_before)."""
        data = bytearray()
        while True:
            fin, op, payload = self.recv_frame()
            if op == OP_CLOSE:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:], bytes(data)
                return None, b"", bytes(data)
            if op in (OP_BINARY, OP_TEXT, OP_CONT):
                data += payload

    def expect_close(self, code):
        got, reason, _ = self.recv_close()
        assert got == code, "expected close %s, got %s (%r)" % (code, got, reason)
        return reason

    def wait_eof(self, timeout=5.0):
        """Wait until the server closes TCP (EOF or reset). Returns True if it did."""
        self.sock.settimeout(timeout * SLOW)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connect(port, path="/", protocols=None, **kw):
    c = WSClient(port)
    c.handshake(path=path, protocols=protocols, **kw)
    return c


def read_until_close(s):
    """Read a socket until the peer closes it. Returns (data, closed): closed is False
    when the socket's timeout ran out first; a reset counts as closed."""
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return data, True
            data += d
    except ConnectionResetError:
        return data, True
    except socket.timeout:
        return data, False


def ipv6_loopback_available():
    """Whether ::1 can be bound here (IPv6 tests depend on it, and say so)."""
    if not socket.has_ipv6:
        return False
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def http_exchange(port, raw, timeout=5.0):
    """Send raw bytes, read until the server closes; returns (status or None, all bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW)
    s.sendall(raw)
    data, _ = read_until_close(s)
    s.close()
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    return (int(m.group(1)) if m else None), data
