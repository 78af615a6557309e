#!/usr/bin/python3
"""Soak runner for wsplice: hundreds of concurrent WebSocket sessions through the real
gateway on loopback, opening and closing continuously, with random sizes (1 B .. 4 MiB),
directions (echo, up into a hashing sink, down from a seeded source), frame sizes and
fragmentation, pings, and random faults from both sides. Every healthy session's bytes
are hash-checked end to end; faulted sessions are checked where the outcome is
deterministic. Exits 1 on any lost or corrupted byte, any failed healthy session, any
failed deterministic fault check, a gateway crash or sanitizer report, descriptors that
do not return to the idle figure, or RSS growth over --rss-slack-mib.

    /usr/bin/python3 tests/soak/soak.py --seconds 60 [--sessions 200] [--gateway build/wsplice]

One asyncio loop (client and backend sides both), raw sockets and its own frame codec.
"""

import argparse
import asyncio
import base64
import collections
import fcntl
import hashlib
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GATEWAY = os.path.join(HERE, "..", "..", "build", "wsplice")

MIB = 1 << 20
MAX_SIZE = 4 * MIB
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# The first 32 bytes a client sends tell the backend what to do with this session.
HDR = struct.Struct("!4sQBBHQII")  # magic, session id, mode, fault, pad, size, offset, cut
MAGIC = b"WSPK"
ECHO, UP, DOWN = 0, 1, 2
MODE_NAMES = {ECHO: "echo", UP: "up", DOWN: "down"}
# Faults. NONE and the slow readers are healthy sessions: every byte must arrive.
NONE, SLOW_CLIENT, SLOW_BACKEND, CLIENT_RST, CLIENT_CLOSE, BACKEND_RST, BACKEND_HALF = range(7)
FAULT_NAMES = ["none", "slow_client", "slow_backend", "client_rst", "client_close", "backend_rst", "backend_half"]
HEALTHY = (NONE, SLOW_CLIENT, SLOW_BACKEND, BACKEND_HALF)

OP_TIMEOUT = 60.0  # no single step of a session may take longer (a hang is a failure)


class SessionError(Exception):
    pass


class Stats:
    def __init__(self):
        self.sessions = 0
        self.healthy = 0
        self.faulted = 0
        self.bytes = 0
        self.lost = 0
        self.corrupted = 0
        self.healthy_failed = 0
        self.fault_failed = 0
        self.refused = collections.Counter()
        self.kinds = collections.Counter()
        self.failures = []

    def fail(self, healthy, what):
        if healthy:
            self.healthy_failed += 1
        else:
            self.fault_failed += 1
        if len(self.failures) < 30:
            self.failures.append(what)


# --------------------------------------------------------------------------- data


class Data:
    """One seeded block; a session's payload is a slice of it (cheap, reproducible)."""

    def __init__(self, seed):
        self.block = random.Random(seed).randbytes(2 * MAX_SIZE)

    def get(self, offset, n):
        return memoryview(self.block)[offset : offset + n]


def sha(b):
    return hashlib.sha256(b).hexdigest()


def mask(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(opcode, payload=b"", fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    key = os.urandom(4)
    return head + key + mask(bytes(payload), key)


def log_uniform(rnd, lo, hi):
    import math

    return int(math.exp(rnd.uniform(math.log(lo), math.log(hi + 1)))) if hi > lo else lo


def frames_for(rnd, data):
    """Split 'data' into messages of 1..4 fragments of random sizes; sometimes a ping
    between frames. Yields (wire bytes, payload bytes carried)."""
    i, n = 0, len(data)
    while i < n:
        msg = min(n - i, log_uniform(rnd, 1, 1 * MIB))
        parts = rnd.randint(1, 4) if msg > 1 else 1
        cuts = sorted(rnd.randint(0, msg) for _ in range(parts - 1))
        bounds = [0] + cuts + [msg]
        for k in range(parts):
            a, b = i + bounds[k], i + bounds[k + 1]
            op = OP_BINARY if k == 0 else OP_CONT
            yield frame(op, data[a:b], fin=(k == parts - 1)), b - a
            if rnd.random() < 0.02:
                yield frame(OP_PING, b"soak"), 0
        i += msg


# --------------------------------------------------------------------------- sockets


def outq(sock):
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


async def wait_acked(writer, timeout=OP_TIMEOUT):
    """Drain asyncio's buffer and wait until the peer's kernel acknowledged everything."""
    await asyncio.wait_for(writer.drain(), timeout)
    sock = writer.get_extra_info("socket")
    deadline = time.monotonic() + timeout
    while writer.transport.get_write_buffer_size() or outq(sock):
        if time.monotonic() > deadline:
            raise SessionError("peer never acknowledged the data")
        await asyncio.sleep(0.005)


def rst(writer):
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


# --------------------------------------------------------------------------- backend


class Backend:
    def __init__(self, data, stats):
        self.data = data
        self.stats = stats
        self.results = {}  # session id -> future of (bytes after header, sha256, how it ended)
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, backlog=1024, limit=65536)
        self.port = self.server.sockets[0].getsockname()[1]

    def future(self, sid):
        fut = self.results.get(sid)
        if fut is None:
            fut = self.results[sid] = asyncio.get_running_loop().create_future()
        return fut

    async def handle(self, reader, writer):
        sid = None
        try:
            hdr = await asyncio.wait_for(reader.readexactly(HDR.size), OP_TIMEOUT)
            magic, sid, mode, fault, _pad, size, offset, cut = HDR.unpack(hdr)
            if magic != MAGIC:
                raise SessionError("bad header")
            rnd = random.Random(sid)
            if mode == ECHO:
                res = await self.echo(reader, writer, fault)
            elif mode == UP:
                res = await self.sink(reader, writer, fault, rnd)
            else:
                res = await self.source(reader, writer, fault, size, offset, cut, rnd)
            if not self.future(sid).done():
                self.future(sid).set_result(res)
        except Exception as e:  # noqa: BLE001 - every backend failure is reported
            if sid is not None and not self.future(sid).done():
                self.future(sid).set_result((-1, "", "backend error %r" % e))
        finally:
            writer.transport.abort() if writer.transport.is_closing() else writer.close()

    async def read_to_end(self, reader, slow=False, rnd=None):
        h, n = hashlib.sha256(), 0
        how = "eof"
        try:
            while True:
                d = await asyncio.wait_for(reader.read(65536), OP_TIMEOUT)
                if not d:
                    break
                h.update(d)
                n += len(d)
                if slow:
                    await asyncio.sleep(rnd.uniform(0.005, 0.03))
        except (ConnectionResetError, BrokenPipeError):
            how = "reset"
        except asyncio.TimeoutError:
            how = "timeout"
        return n, h.hexdigest(), how

    async def echo(self, reader, writer, fault):
        n, how = 0, "eof"
        try:
            while True:
                d = await asyncio.wait_for(reader.read(262144), OP_TIMEOUT)
                if not d:
                    break
                n += len(d)
                writer.write(d)
                await asyncio.wait_for(writer.drain(), OP_TIMEOUT)
        except (ConnectionResetError, BrokenPipeError):
            how = "reset"
        except asyncio.TimeoutError:
            how = "timeout"
        return n, "", how

    async def sink(self, reader, writer, fault, rnd):
        return await self.read_to_end(reader, slow=(fault == SLOW_BACKEND), rnd=rnd)

    async def source(self, reader, writer, fault, size, offset, cut, rnd):
        data = self.data.get(offset, size)
        # A reader that notices the gateway ending the connection (client faults).
        eof = asyncio.ensure_future(self.read_to_end(reader))
        limit = cut if fault == BACKEND_RST else size
        i = 0
        try:
            while i < limit and not eof.done():
                k = min(limit - i, rnd.randint(1, 300000))
                writer.write(data[i : i + k])
                i += k
                await asyncio.wait_for(writer.drain(), OP_TIMEOUT)
        except (ConnectionResetError, BrokenPipeError):
            pass
        except asyncio.TimeoutError:
            eof.cancel()
            return i, "", "timeout"
        if eof.done() and fault not in (CLIENT_RST, CLIENT_CLOSE):
            return -1, "", "gateway ended the backend connection early: %r" % (eof.result(),)
        if fault == BACKEND_RST:
            await wait_acked(writer)
            eof.cancel()
            rst(writer)
            return i, "", "reset-sent"
        if fault == BACKEND_HALF:
            writer.write_eof()
            n, _, how = await eof
            return n, "", how  # the gateway shuts its side once the client answered
        if fault in (CLIENT_RST, CLIENT_CLOSE):
            n, _, how = await eof  # must end: the gateway closes us after the client left
            return n, "", how
        eof.cancel()
        writer.close()
        return i, "", "closed"


# --------------------------------------------------------------------------- client


class WS:
    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer

    @classmethod
    async def connect(cls, port, path="/soak"):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, limit=65536), OP_TIMEOUT
        )
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, port, key)
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), OP_TIMEOUT)
        m = re.match(rb"HTTP/1\.1 (\d{3})", head)
        status = int(m.group(1)) if m else None
        if status != 101:
            writer.close()
            return None, status
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        if accept.encode() not in head:
            raise SessionError("bad Sec-WebSocket-Accept")
        return cls(reader, writer), 101

    async def recv_frame(self):
        h = await asyncio.wait_for(self.r.readexactly(2), OP_TIMEOUT)
        if h[1] & 0x80 or h[0] & 0x70:
            raise SessionError("server frame masked or with RSV bits: %r" % h)
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", await asyncio.wait_for(self.r.readexactly(2), OP_TIMEOUT))[0]
        elif n == 127:
            n = struct.unpack("!Q", await asyncio.wait_for(self.r.readexactly(8), OP_TIMEOUT))[0]
        payload = await asyncio.wait_for(self.r.readexactly(n), OP_TIMEOUT) if n else b""
        return h[0] & 0x0F, payload

    async def recv_until_close(self, h, limit=None, slow=None):
        """Hash data frames into 'h' until a close frame (answer pings). Returns (bytes,
        close code). With 'limit', return (bytes, None) once that many arrived."""
        n = 0
        since_pause = 0
        while limit is None or n < limit:
            op, payload = await self.recv_frame()
            if op in (OP_BINARY, OP_TEXT, OP_CONT):
                h.update(payload)
                n += len(payload)
                since_pause += len(payload)
                if slow is not None and since_pause >= 65536:
                    since_pause = 0
                    await asyncio.sleep(slow.uniform(0.01, 0.06))
            elif op == OP_PING:
                self.w.write(frame(OP_PONG, payload))
            elif op == OP_PONG:
                pass
            elif op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return n, code
            else:
                raise SessionError("unexpected opcode %d" % op)
        return n, None

    async def expect_eof(self):
        try:
            while True:
                d = await asyncio.wait_for(self.r.read(65536), OP_TIMEOUT)
                if not d:
                    return
        except (ConnectionResetError, BrokenPipeError):
            return

    def close_frame(self, code=1000):
        self.w.write(frame(OP_CLOSE, struct.pack("!H", code)))

    def abort(self):
        self.w.transport.abort()


async def send_frames(ws, rnd, data, stop_at=None):
    """Send 'data' in random frames; with stop_at, stop after the first whole frame that
    reaches it. Returns the payload bytes sent."""
    sent = 0
    queued = 0
    for wire, carried in frames_for(rnd, data):
        ws.w.write(wire)
        sent += carried
        queued += len(wire)
        if queued > 256 * 1024:
            queued = 0
            await asyncio.wait_for(ws.w.drain(), OP_TIMEOUT)
        if stop_at is not None and sent >= stop_at:
            break
    await asyncio.wait_for(ws.w.drain(), OP_TIMEOUT)
    return sent


class Runner:
    def __init__(self, args, data, backend, gw_port, stats):
        self.args = args
        self.data = data
        self.backend = backend
        self.port = gw_port
        self.stats = stats
        self.next_id = 1

    def plan(self, rnd):
        mode = rnd.choice([ECHO, UP, DOWN])
        size = log_uniform(rnd, 1, MAX_SIZE)
        r = rnd.random()
        if r < 0.55:
            fault = NONE
        elif r < 0.65:
            fault = SLOW_CLIENT if mode != UP else SLOW_BACKEND
        elif r < 0.75:
            fault = CLIENT_RST
        elif r < 0.85:
            fault = CLIENT_CLOSE
        elif mode == DOWN:
            fault = BACKEND_RST if r < 0.93 else BACKEND_HALF
        else:
            fault = NONE
        cut = rnd.randint(0, size) if fault in (CLIENT_RST, CLIENT_CLOSE, BACKEND_RST) else size
        offset = rnd.randint(0, MAX_SIZE)
        return mode, fault, size, offset, cut

    async def worker(self, wid, deadline):
        rnd = random.Random(self.args.seed * 100003 + wid)
        while time.monotonic() < deadline:
            sid = self.next_id
            self.next_id += 1
            mode, fault, size, offset, cut = self.plan(rnd)
            healthy = fault in HEALTHY
            name = "s=%d %s/%s size=%d cut=%d" % (sid, MODE_NAMES[mode], FAULT_NAMES[fault], size, cut)
            try:
                ok = await asyncio.wait_for(
                    self.session(sid, rnd, mode, fault, size, offset, cut, healthy), 4 * OP_TIMEOUT
                )
            except (SessionError, asyncio.TimeoutError, asyncio.IncompleteReadError, OSError) as e:
                self.stats.fail(healthy, "%s: %s" % (name, repr(e)[:300]))
                ok = None
            finally:
                self.backend.results.pop(sid, None)
            if ok is False:  # refused (503 under load would be a failure too, see below)
                continue
            self.stats.sessions += 1
            self.stats.kinds["%s/%s" % (MODE_NAMES[mode], FAULT_NAMES[fault])] += 1
            if healthy:
                self.stats.healthy += 1
            else:
                self.stats.faulted += 1

    def check_bytes(self, healthy, name, expect_n, expect_sha, got_n, got_sha):
        if got_n < expect_n:
            self.stats.lost += expect_n - got_n
        if got_n == expect_n and got_sha != expect_sha:
            self.stats.corrupted += got_n
        if got_n > expect_n:
            self.stats.corrupted += got_n - expect_n
        if (got_n, got_sha) != (expect_n, expect_sha):
            self.stats.fail(healthy, "%s: %d bytes (sha %s), expected %d" % (name, got_n, got_sha[:12], expect_n))
            return False
        self.stats.bytes += got_n
        return True

    async def backend_result(self, sid):
        return await asyncio.wait_for(self.backend.future(sid), OP_TIMEOUT)

    async def session(self, sid, rnd, mode, fault, size, offset, cut, healthy):
        st = self.stats
        name = "s=%d %s/%s size=%d cut=%d" % (sid, MODE_NAMES[mode], FAULT_NAMES[fault], size, cut)
        data = self.data.get(offset, size)
        ws, status = await WS.connect(self.port)
        if ws is None:
            st.refused[status] += 1
            st.fail(True, "%s: handshake got %s" % (name, status))
            return False
        hdr = HDR.pack(MAGIC, sid, mode, fault, 0, size, offset, cut)
        ws.w.write(frame(OP_BINARY, hdr))
        slow = random.Random(sid) if fault == SLOW_CLIENT else None

        if mode == ECHO:
            h = hashlib.sha256()
            if fault in (NONE, SLOW_CLIENT):
                # The backend echoes what follows the header.
                reader = asyncio.ensure_future(ws.recv_until_close(h, limit=size, slow=slow))
                await send_frames(ws, rnd, data)
                n, code = await reader
                if code is not None:
                    raise SessionError("close %s after %d echoed bytes" % (code, n))
                self.check_bytes(healthy, name, size, sha(data), n, h.hexdigest())
                ws.close_frame(1000)
                n2, code = await ws.recv_until_close(hashlib.sha256())
                if (n2, code) != (0, 1000):
                    raise SessionError("close answer %s after %d extra bytes" % (code, n2))
                await ws.expect_eof()
                ws.w.close()
                return True
            if fault == CLIENT_CLOSE:
                reader = asyncio.ensure_future(ws.recv_until_close(h))
                sent = await send_frames(ws, rnd, data, stop_at=cut)
                ws.close_frame(1000)
                n, code = await reader
                expect = sha(data[:n])
                if code != 1000 or n > sent or h.hexdigest() != expect:
                    st.fail(False, "%s: echo after client close: code %s, %d of %d bytes, prefix ok %s"
                            % (name, code, n, sent, h.hexdigest() == expect))
                await ws.expect_eof()
                ws.w.close()
                res = await self.backend_result(sid)
                if res[0] != sent or res[2] not in ("eof", "reset"):
                    st.fail(False, "%s: echo backend got %r, client sent %d" % (name, res, sent))
                return True
            if fault == CLIENT_RST:
                sent = await send_frames(ws, rnd, data, stop_at=cut)
                await wait_acked(ws.w)
                rst(ws.w)
                res = await self.backend_result(sid)
                # The echo backend's writes may fail once the gateway drops it: only the
                # fact that it is closed is deterministic.
                if res[2] not in ("eof", "reset") or res[0] > sent:
                    st.fail(False, "%s: echo backend after client reset: %r" % (name, res))
                return True

        if mode == UP:
            if fault in (NONE, SLOW_BACKEND):
                await send_frames(ws, rnd, data)
                ws.close_frame(1000)
                n, code = await ws.recv_until_close(hashlib.sha256())
                if (n, code) != (0, 1000):
                    raise SessionError("close answer %s after %d bytes" % (code, n))
                await ws.expect_eof()
                ws.w.close()
                res = await self.backend_result(sid)
                self.check_bytes(healthy, name, size, sha(data), res[0], res[1])
                if res[2] != "eof":
                    st.fail(True, "%s: sink ended with %s" % (name, res[2]))
                return True
            sent = await send_frames(ws, rnd, data, stop_at=cut)
            if fault == CLIENT_CLOSE:
                ws.close_frame(1000)
                n, code = await ws.recv_until_close(hashlib.sha256())
                if code != 1000:
                    st.fail(False, "%s: close answer %s" % (name, code))
                await ws.expect_eof()
                ws.w.close()
            else:
                await wait_acked(ws.w)
                rst(ws.w)
            res = await self.backend_result(sid)
            # Every whole frame sent before the fault reaches the backend, then it is closed.
            if res[2] not in ("eof", "reset"):
                st.fail(False, "%s: sink ended with %s" % (name, res[2]))
            self.check_bytes(False, name, sent, sha(data[:sent]), res[0], res[1])
            return True

        # DOWN
        h = hashlib.sha256()
        if fault in (NONE, SLOW_CLIENT, BACKEND_HALF, BACKEND_RST):
            n, code = await ws.recv_until_close(h, slow=slow)
            expect_n = cut if fault == BACKEND_RST else size
            self.check_bytes(healthy, name, expect_n, sha(data[:expect_n]), n, h.hexdigest())
            want = 1014 if fault == BACKEND_RST else 1000
            if code != want:
                st.fail(healthy, "%s: close code %s, expected %d" % (name, code, want))
            ws.close_frame(1000)
            await ws.expect_eof()
            ws.w.close()
            res = await self.backend_result(sid)
            if fault == BACKEND_HALF and res[2] != "eof":
                st.fail(True, "%s: half-closed backend ended with %r" % (name, res))
            return True
        # Client faults while the backend streams: the backend must be closed in the end.
        n, code = await ws.recv_until_close(h, limit=cut)
        if code is not None:
            n = -1  # the whole stream came before the cut: nothing to fault
        if fault == CLIENT_CLOSE:
            ws.close_frame(1000)
            _, code = await ws.recv_until_close(hashlib.sha256())
            if code != 1000:
                st.fail(False, "%s: close answer %s" % (name, code))
            await ws.expect_eof()
            ws.w.close()
        else:
            rst(ws.w)
        res = await self.backend_result(sid)
        if res[0] < 0 or res[2] == "timeout":
            st.fail(False, "%s: source after client fault: %r" % (name, res))
        return True


# --------------------------------------------------------------------------- gateway


def gw_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def gw_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_gateway(path, backend_port, tmp):
    for _attempt in range(5):
        port = free_port()
        r = try_start_gateway(path, backend_port, tmp, port)
        if r is not None:
            return r
    sys.exit("wsplice did not start:\n" + open(os.path.join(tmp, "gateway.log"), "rb").read().decode("utf-8", "replace"))


def try_start_gateway(path, backend_port, tmp, port):
    """log_level is warn (a soak makes many sessions), so the port is chosen here and
    readiness is a successful connect."""
    cfg = os.path.join(tmp, "wsplice.ini")
    with open(cfg, "w") as f:
        f.write(
            "[gateway]\nlog_level = warn\ndrain_timeout_s = 2\n"
            "handshake_timeout_s = 30\nclose_timeout_s = 20\nping_interval_s = 2\nping_timeout_s = 60\n"
            "[listener:soak]\nbind = 127.0.0.1:%d\n"
            "[route:soak]\npath = /soak\ntarget = 127.0.0.1:%d\n" % (port, backend_port)
        )
    log_path = os.path.join(tmp, "gateway.log")
    logf = open(log_path, "wb")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def pre():
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    proc = subprocess.Popen([path, "-c", cfg], stdout=logf, stderr=subprocess.STDOUT, preexec_fn=pre)
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            return None  # e.g. the port was taken meanwhile
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(0.2)  # let the probe connection go away before the idle figures
            return proc, port, log_path
        except OSError:
            time.sleep(0.02)
    proc.kill()
    proc.wait()
    return None


async def wait_idle(pid, idle, timeout):
    deadline = time.monotonic() + timeout
    while gw_fds(pid) > idle and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return gw_fds(pid)


async def main_async(args):
    stats = Stats()
    data = Data(args.seed)
    backend = Backend(data, stats)
    await backend.start()
    tmp = tempfile.mkdtemp(prefix="wsplice-soak-")
    proc, port, log_path = start_gateway(args.gateway, backend.port, tmp)
    runner = Runner(args, data, backend, port, stats)
    try:
        # Warm up (one session of each kind), then take the idle figures.
        for mode in (ECHO, UP, DOWN):
            sid = runner.next_id
            runner.next_id += 1
            await runner.session(sid, random.Random(sid), mode, NONE, 1000, 0, 1000, True)
        stats.bytes = 0
        await asyncio.sleep(0.5)
        idle_fds, idle_rss = gw_fds(proc.pid), gw_rss_kb(proc.pid)
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        workers = [asyncio.ensure_future(runner.worker(w, deadline)) for w in range(args.sessions)]
        last = t0
        while not all(w.done() for w in workers):
            await asyncio.sleep(1.0)
            if proc.poll() is not None:
                break
            if args.progress and time.monotonic() - last >= 10:
                last = time.monotonic()
                print(
                    "[%4.0fs] sessions=%d bytes=%.1f MiB failed=%d/%d fds=%d rss=%d KiB"
                    % (last - t0, stats.sessions, stats.bytes / MIB, stats.healthy_failed, stats.fault_failed,
                       gw_fds(proc.pid), gw_rss_kb(proc.pid)),
                    flush=True,
                )
        for w in workers:
            if not w.done():
                w.cancel()
        elapsed = time.monotonic() - t0
        crashed = proc.poll() is not None
        end_fds = end_rss = -1
        if not crashed:
            end_fds = await wait_idle(proc.pid, idle_fds, 60.0)
            end_rss = gw_rss_kb(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        else:
            rc = proc.returncode
        backend.server.close()
    log = open(log_path, "rb").read().decode("utf-8", "replace")
    sanitizer = [m for m in ("AddressSanitizer", "runtime error:", "LeakSanitizer") if m in log]

    print("wsplice soak: %.0f s, %d concurrent session slots, seed %d" % (elapsed, args.sessions, args.seed))
    print("  sessions run:        %d (healthy %d, faulted %d)" % (stats.sessions, stats.healthy, stats.faulted))
    print("  bytes moved:         %d (%.1f MiB, %.1f MiB/s)" % (stats.bytes, stats.bytes / MIB, stats.bytes / MIB / max(elapsed, 1)))
    print("  lost bytes:          %d" % stats.lost)
    print("  corrupted bytes:     %d" % stats.corrupted)
    print("  healthy failed:      %d" % stats.healthy_failed)
    print("  fault checks failed: %d" % stats.fault_failed)
    if stats.refused:
        print("  refused handshakes:  %s" % dict(stats.refused))
    print("  gateway fds:         idle %d, end %d" % (idle_fds, end_fds))
    print("  gateway RSS:         idle %d KiB, end %d KiB (%+d KiB)" % (idle_rss, end_rss, end_rss - idle_rss))
    print("  gateway exit:        %s%s" % (rc, " (CRASHED during the run)" if crashed else ""))
    print("  kinds:               %s" % ", ".join("%s=%d" % kv for kv in sorted(stats.kinds.items())))
    for f in stats.failures:
        print("  FAIL " + f)
    problems = []
    if stats.lost or stats.corrupted:
        problems.append("lost/corrupted bytes")
    if stats.healthy_failed:
        problems.append("healthy sessions failed")
    if stats.fault_failed:
        problems.append("fault checks failed")
    if crashed or rc != 0:
        problems.append("gateway crashed or exited %s" % rc)
    if end_fds != idle_fds:
        problems.append("fd count %d, idle was %d" % (end_fds, idle_fds))
    if end_rss - idle_rss > args.rss_slack_mib * 1024:
        problems.append("RSS grew by %d KiB" % (end_rss - idle_rss))
    if sanitizer:
        problems.append("sanitizer report in the log: %s" % sanitizer)
    if stats.sessions == 0:
        problems.append("no session ran")
    if problems:
        print("FAIL: " + "; ".join(problems))
        print("  gateway log: %s" % log_path)
        return 1
    print("PASS")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--sessions", type=int, default=200, help="concurrent sessions")
    ap.add_argument("--gateway", default=os.environ.get("WSPLICE_BIN", DEFAULT_GATEWAY))
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--rss-slack-mib", type=int, default=64)
    ap.add_argument("--progress", action="store_true", help="a status line every 10 s")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 8 * args.sessions + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
