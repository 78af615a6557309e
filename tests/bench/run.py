#!/usr/bin/python3
"""wsplice benchmark: the same traffic, side by side, against direct TCP (no gateway), a raw
TCP relay (the ceiling), wsplice, and Debian's websockify (the reference), each case
repeated and reported as the median. Prints one table; see tests/bench/README.md.

Everything runs on loopback on ephemeral ports. Every child process is ended on the way
out, normal or not: the C tools exit when their stdin (a pipe from here) closes, the
gateways get SIGTERM through PR_SET_PDEATHSIG if this process dies, and each gateway runs
in its own process group, which is signalled by id when it is stopped.

Usage: run.py --gateway build/wsplice --tools build/bench [--quick] [--only SECTIONS]
              [--targets KINDS] [--repeat N] [--duration S] [--sessions N] ...
"""

import argparse
import ctypes
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SECTIONS = ("throughput", "latency", "connections", "tls")
TLS_COLUMNS = ("wsplice", "wsplice-tls", "websockify-tls")  # the tls section's table
PR_SET_PDEATHSIG = 1


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die_with_parent():
    """preexec_fn: the child gets SIGTERM if this process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


# --------------------------------------------------------------------------- processes


class Child:
    """A started process we own: its output goes to a log file (or a line queue), and
    stop() ends it and its process group, by id, escalating to SIGKILL."""

    def __init__(self, name, argv, workdir, lines=False, stdin_pipe=True, new_group=False, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(workdir, f"{name}.log")
        self._log = open(self.log_path, "wb")
        self.lines = queue.Queue() if lines else None
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if lines else self._log,
            stderr=self._log,
            preexec_fn=die_with_parent,
            start_new_session=new_group,
            env=env,
        )
        self.new_group = new_group
        if lines:
            threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no output within {timeout:.0f}s (log: {self.log_path})")
        if line is None:
            raise RuntimeError(f"{self.name}: exited early (log: {self.log_path}): {self.log_tail()}")
        return line

    def log_tail(self, n=3):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-n:])
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, grace=3.0):
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.new_group:
            self._signal(signal.SIGKILL, group_only=True)  # stragglers, e.g. websockify's children
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self._log.close()

    def _signal(self, sig, group_only=False):
        try:
            if self.new_group:
                os.killpg(self.proc.pid, sig)
            elif not group_only:
                self.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass


def descendants(root):
    """root and every process below it (websockify forks one per session)."""
    result, todo = [], [root]
    while todo:
        pid = todo.pop()
        result.append(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                todo.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            pass
    return result


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds_with_reaped(pid):
    """User+system CPU of pid and of its children it has waited for (websockify reaps
    its per-session processes, most of which live shorter than a sampling interval)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def cpu_seconds(pid):
    """User+system CPU of pid itself (not of its children)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU used by a target's processes between start() and stop(). Processes that come
    and go (one per session) are sampled every 100 ms from a thread, so one that exits
    inside the window loses at most its last 100 ms; fixed processes are read at the two
    moments only."""

    def __init__(self, pid_source, sample):
        self.pid_source = pid_source
        self.sample = sample
        self.first, self.last = {}, {}
        self.started = False
        self.result = None
        self._stop = threading.Event()
        self._thread = None

    def _read(self, initial=False):
        for pid in self.pid_source():
            v = cpu_seconds(pid)
            if v is None:
                continue
            self.first.setdefault(pid, v if initial else 0.0)  # born inside the window: from zero
            self.last[pid] = v

    def _loop(self):
        while not self._stop.wait(0.1):
            self._read()

    def start(self):
        self._read(initial=True)
        self.started = True
        if self.sample:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def stop(self):
        if not self.started or self.result is not None:
            return self.result
        if self._thread:
            self._stop.set()
            self._thread.join()
        self._read()
        self.result = sum(self.last[p] - self.first[p] for p in self.last)
        return self.result

    def on_event(self, event):
        if event == "start":
            self.start()
        elif event == "stop":
            self.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_listening(port):
    """True once something listens on 127.0.0.1:port (read from /proc, no connection:
    websockify forks a process for every connection it accepts)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            return any(line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:])
    except OSError:
        return False


# --------------------------------------------------------------------------- backend


class Backend:
    """tests/bench/backend: echo, sink and source listeners in one process."""

    def __init__(self, tools, workdir):
        self.child = Child("backend", [os.path.join(tools, "backend"), "--echo", "127.0.0.1:0", "--sink",
                                       "127.0.0.1:0", "--source", "127.0.0.1:0"], workdir, lines=True)
        self.ports = json.loads(self.child.next_line(10))

    def stats(self):
        self.child.proc.send_signal(signal.SIGUSR1)
        return json.loads(self.child.next_line(5))

    def wait_idle(self, timeout):
        """Wait until the previous run's connections are gone; returns how many remain."""
        deadline = time.monotonic() + timeout
        while True:
            active = self.stats()["active"]
            if active == 0 or time.monotonic() >= deadline:
                return active
            time.sleep(0.05)

    def stop(self):
        self.child.stop()


# --------------------------------------------------------------------------- targets
#
# A target kind puts something between the load client and the backend. Each has a
# scheme (what loadgen speaks: "tcp", "ws" or "wss"), starts on the three backend ports,
# and says which processes to measure. The "-tls" kinds serve wss:// with a throwaway
# ECDSA P-256 certificate (Context.tls_files()).


class Target:
    kind = "?"
    scheme = "tcp"
    forks_per_session = False

    @classmethod
    def available(cls, ctx):
        return True, ""

    def __init__(self, ctx, backend_ports, modes=("echo", "sink", "source")):
        self.ctx = ctx
        self.children = []
        self.endpoints = {}  # backend mode -> (port, path)
        self.start(backend_ports, modes)

    def start(self, backend_ports, modes):
        raise NotImplementedError

    def endpoint(self, mode):
        return self.endpoints[mode]

    def measured_pids(self, mode):
        """Processes whose CPU and memory count as this target's, for one backend mode."""
        return []

    def stop(self):
        for child in self.children:
            child.stop()
        self.children = []


class DirectTarget(Target):
    kind = "direct"

    def start(self, backend_ports, modes):
        self.endpoints = {m: (backend_ports[m], "/") for m in modes}


class RelayTarget(Target):
    kind = "relay"

    def start(self, backend_ports, modes):
        self.by_mode = {}
        for m in modes:
            child = Child(f"relay-{m}-{len(self.ctx.started)}", [os.path.join(self.ctx.tools, "relay"), "--listen",
                          "127.0.0.1:0", "--target", f"127.0.0.1:{backend_ports[m]}"], self.ctx.workdir, lines=True)
            self.ctx.started.append(child)
            self.children.append(child)
            port = json.loads(child.next_line(10))["port"]
            self.endpoints[m] = (port, "/")
            self.by_mode[m] = child

    def measured_pids(self, mode):
        return [self.by_mode[mode].pid]


class WsspliceTarget(Target):
    kind = "wsplice"
    scheme = "ws"

    def config(self, backend_ports, modes):
        lines = [
            "[gateway]",
            "log_level = info",
            "ping_interval_s = 0  ; idle sessions stay silent",
            "drain_timeout_s = 1",
            "",
            "[listener:bench]",
            "bind = 127.0.0.1:0",
        ]
        if self.scheme == "wss":
            cert, key = self.ctx.tls_files()
            lines += [f"tls_cert = {cert}", f"tls_key = {key}"]
        for m in modes:
            lines += ["", f"[route:{m}]", f"path = /{m}", f"target = 127.0.0.1:{backend_ports[m]}"]
        return "\n".join(lines) + "\n"

    def start(self, backend_ports, modes):
        n = len(self.ctx.started)
        path = os.path.join(self.ctx.workdir, f"wsplice-{n}.ini")
        with open(path, "w") as f:
            f.write(self.config(backend_ports, modes))
        child = Child(f"wsplice-{n}", [self.ctx.gateway, "-c", path], self.ctx.workdir, stdin_pipe=False,
                      new_group=True)
        self.ctx.started.append(child)
        self.children.append(child)
        deadline = time.monotonic() + 10
        port = None
        while port is None:
            with open(child.log_path, errors="replace") as f:
                m = re.search(r"listener name=bench addr=127\.0\.0\.1:(\d+) listening", f.read())
            if m:
                port = int(m.group(1))
            elif not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"wsplice did not start: {child.log_tail()}")
            else:
                time.sleep(0.02)
        self.child = child
        self.endpoints = {m: (port, f"/{m}") for m in modes}

    def measured_pids(self, mode):
        return [self.child.pid]


class WebsockifyTarget(Target):
    kind = "websockify"
    scheme = "ws"
    forks_per_session = True

    @classmethod
    def available(cls, ctx):
        if ctx.websockify:
            return True, ""
        return False, "websockify is not installed (apt-get install websockify, as root)"

    def extra_args(self):
        return []

    def start(self, backend_ports, modes):
        self.by_mode = {}
        for m in modes:
            for attempt in range(5):
                port = free_port()  # websockify cannot report a port it picked itself
                child = Child(f"{self.kind}-{m}-{len(self.ctx.started)}",
                              [self.ctx.websockify, *self.extra_args(), f"127.0.0.1:{port}",
                               f"127.0.0.1:{backend_ports[m]}"],
                              self.ctx.workdir, stdin_pipe=False, new_group=True)
                self.ctx.started.append(child)
                deadline = time.monotonic() + 15
                while child.alive() and not port_listening(port) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if child.alive() and port_listening(port):
                    break
                child.stop()  # the port was taken meanwhile; try another
            else:
                raise RuntimeError(f"websockify did not start: {child.log_tail()}")
            self.children.append(child)
            self.by_mode[m] = child
            self.endpoints[m] = (port, "/")

    def measured_pids(self, mode):
        return descendants(self.by_mode[mode].pid)  # one process per session


class WsspliceTlsTarget(WsspliceTarget):
    """wsplice with tls_cert and tls_key on its listener: wss:// (and ws://) on one port."""
    kind = "wsplice-tls"
    scheme = "wss"

    @classmethod
    def available(cls, ctx):
        if ctx.tls_files() is None:
            return False, f"no certificate: {ctx.tls_problem}"
        return True, ""


class WebsockifyTlsTarget(WebsockifyTarget):
    """websockify --cert --key: wss:// (and ws://) on one port, a process per session."""
    kind = "websockify-tls"
    scheme = "wss"

    @classmethod
    def available(cls, ctx):
        if ctx.tls_files() is None:
            return False, f"no certificate: {ctx.tls_problem}"
        return WebsockifyTarget.available(ctx)

    def extra_args(self):
        cert, key = self.ctx.tls_files()
        return ["--cert", cert, "--key", key]


class WsspliceWorkersTarget(WsspliceTarget):
    """wsplice with `workers = 2`: two event-loop threads on SO_REUSEPORT sockets."""

    kind = "wsplice-w2"

    @staticmethod
    def wants(case):
        """Only where a second thread can matter: many connections (one session stays on
        one thread). Latency and single-connection runs would only use up the time budget."""
        return case["section"] == "throughput" and case["conns"] > 1

    def config(self, backend_ports, modes):
        return super().config(backend_ports, modes).replace("[gateway]\n", "[gateway]\nworkers = 2\n", 1)


TARGET_KINDS = {cls.kind: cls for cls in (DirectTarget, RelayTarget, WsspliceTarget, WebsockifyTarget,
                                          WsspliceTlsTarget, WebsockifyTlsTarget, WsspliceWorkersTarget)}
DEFAULT_TARGETS = ("direct", "relay", "wsplice", "wsplice-w2", "websockify")


# --------------------------------------------------------------------------- runs


class Context:
    def __init__(self, args, workdir):
        self.args = args
        self.tools = os.path.abspath(args.tools)
        self.gateway = os.path.abspath(args.gateway)
        self.workdir = workdir
        self.started = []
        self.websockify = None
        self.t0 = time.monotonic()
        self.failures = []
        self.skipped = []
        self.results = []  # every run, for --json

    def elapsed(self):
        return time.monotonic() - self.t0

    def tls_files(self):
        """(cert, key): a throwaway self-signed ECDSA P-256 certificate for CN=localhost,
        made once per run in the work directory with the openssl command; None if that
        failed (self.tls_problem says why)."""
        if getattr(self, "_tls", None) is not None or getattr(self, "tls_problem", None):
            return getattr(self, "_tls", None)
        cert, key = os.path.join(self.workdir, "cert.pem"), os.path.join(self.workdir, "key.pem")
        if not shutil.which("openssl"):
            self.tls_problem = "the openssl command is not installed"
            return None
        proc = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                               "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                               "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            self.tls_problem = f"openssl req failed: {proc.stderr.strip()[-200:]}"
            return None
        self._tls = (cert, key)
        return self._tls

    def over_budget(self, need):
        return self.elapsed() + need > self.args.budget


def run_loadgen(argv, timeout, on_event=None):
    """Run loadgen once; returns its result JSON (with "ok"), never raises for a failed
    run. Its {"event": ...} lines (window start and stop) go to on_event as they come."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        result = None
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").strip()
                if not line.startswith("{"):
                    continue
                msg = json.loads(line)
                if "event" in msg:
                    if on_event:
                        on_event(msg["event"])
                else:
                    result = msg
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace").strip()
    if result is None:
        if proc.returncode == -signal.SIGKILL:
            return {"ok": False, "why": f"loadgen timed out after {timeout:.0f}s"}
        return {"ok": False, "why": f"loadgen exit {proc.returncode}: {stderr[-200:]}"}
    result["ok"] = proc.returncode == 0
    if not result["ok"]:
        result["why"] = (f"errors={result.get('errors', 0)} failed={result.get('failed', 0)} "
                         f"{result.get('fail_reasons', {})}")
    return result


def loadgen_base(ctx, target, mode):
    port, path = target.endpoint(mode)
    argv = [os.path.join(ctx.tools, "loadgen"), "--proto", target.scheme, "--target", f"127.0.0.1:{port}"]
    if target.scheme in ("ws", "wss"):
        argv += ["--path", path]
    return argv


def traffic_run(ctx, backend, target, case):
    """One throughput or latency run; gateway CPU is measured around it."""
    backend_mode = {"up": "sink", "down": "source", "echo": "echo"}[case["mode"]]
    argv = loadgen_base(ctx, target, backend_mode) + ["--mode", case["mode"], "--conns", str(case["conns"]),
                                                      "--duration", str(ctx.args.duration)]
    if case["mode"] == "up":
        argv += ["--frame", str(case["frame"])]
    if case["mode"] == "echo":
        argv += ["--msg", "64"]
    meter = None
    if target.measured_pids(backend_mode):
        meter = CpuMeter(lambda: target.measured_pids(backend_mode), sample=target.forks_per_session)
    result = run_loadgen(argv, timeout=ctx.args.duration + 30, on_event=meter.on_event if meter else None)
    result["gateway_cpu_s"] = meter.stop() if meter else None  # over the measured window
    left = backend.wait_idle(10)  # the gateway has finished with the run's sessions
    if left:
        result["note"] = f"{left} backend connections still open 10s after the run"
    return result


def connections_run(ctx, backend, kind):
    """Ramp idle sessions on a fresh instance; memory is measured before and after."""
    cls = TARGET_KINDS[kind]
    try:
        target = cls(ctx, backend.ports, modes=("echo",))
    except RuntimeError as e:
        return {"ok": False, "why": f"could not start: {e}"}
    try:
        time.sleep(0.2)
        pids = target.measured_pids("echo")
        before = pss_kib(pids)
        sessions = ctx.args.websockify_sessions if kind.startswith("websockify") else ctx.args.sessions
        argv = loadgen_base(ctx, target, "echo") + ["--mode", "idle", "--sessions", str(sessions), "--hold", "60",
                                                    "--timeout", "10", "--ramp-timeout", "60"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                                preexec_fn=die_with_parent)
        lines = queue.Queue()

        def reader():
            for raw in proc.stdout:
                lines.put(raw.decode(errors="replace"))
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        try:
            ramp_line = lines.get(timeout=90)
            if ramp_line is None:
                raise RuntimeError(proc.stderr.read().decode(errors="replace")[-200:])
            ramp = json.loads(ramp_line)
            time.sleep(0.5)  # let the last sessions settle before measuring
            after = pss_kib(target.measured_pids("echo"))
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            final_line = lines.get(timeout=60)
            if final_line is None:
                raise RuntimeError("loadgen exited before its final report")
            final = json.loads(final_line)
            proc.wait(timeout=30)
        except (queue.Empty, RuntimeError, subprocess.TimeoutExpired) as e:
            proc.kill()
            proc.wait()
            return {"ok": False, "why": f"idle ramp: {e or 'timed out'}"}
        held = final["held"]
        result = dict(final)
        result["ok"] = final.get("errors", 0) == 0
        result["pss_before_kib"] = before
        result["pss_after_kib"] = after
        result["pss_per_session_kib"] = (after - before) / held if held and pids else None
        result["ramp"] = ramp
        if not result["ok"]:
            result["why"] = f"errors={final.get('errors')}"
        return result
    finally:
        target.stop()
        backend.wait_idle(15)


# --------------------------------------------------------------------------- the plan


def throughput_cases():
    cases = []
    for conns in (1, 16):
        for frame in (65536, 1024):
            cases.append({"section": "throughput", "mode": "up", "conns": conns, "frame": frame})
    for conns in (1, 16):
        cases.append({"section": "throughput", "mode": "down", "conns": conns, "frame": None})
    return cases


def latency_cases():
    return [{"section": "latency", "mode": "echo", "conns": c, "frame": 64} for c in (1, 64)]


def case_key(case, scheme):
    # Raw TCP has no frames: one up run per connection count serves both frame sizes.
    frame = case["frame"] if scheme != "tcp" or case["mode"] != "up" else "stream"
    return (case["mode"], case["conns"], frame)


def median_of(runs, field):
    values = [r[field] for r in runs if r.get("ok") and r.get(field) is not None]
    return statistics.median(values) if values else None


def run_traffic_sections(ctx, backend, targets, sections):
    cases = []
    if "throughput" in sections:
        cases += throughput_cases()
    if "latency" in sections:
        cases += latency_cases()
    return cases, run_cases(ctx, backend, targets, cases)


def run_cases(ctx, backend, targets, cases):
    runs = {}  # (kind, case_key) -> [results]
    per_run = ctx.args.duration + 0.6
    for case in cases:
        for rep in range(ctx.args.repeat):
            # Rotate the order every repetition so no target always runs first.
            order = targets[rep % len(targets):] + targets[:rep % len(targets)]
            for target in order:
                key = (target.kind, case_key(case, target.scheme))
                if not getattr(target, "wants", lambda c: True)(case):
                    continue
                if len(runs.get(key, [])) > rep:
                    continue  # already measured for this repetition (shared tcp up runs)
                if ctx.over_budget(per_run + ctx.reserve):
                    ctx.skipped.append(f"{target.kind} {describe(case)} rep {rep + 1} (time budget)")
                    runs.setdefault(key, []).append({"ok": False, "why": "skipped: time budget", "skipped": True})
                    continue
                result = traffic_run(ctx, backend, target, case)
                result.update({"target": target.kind, "case": case, "rep": rep + 1})
                ctx.results.append(result)
                runs.setdefault(key, []).append(result)
                if not result["ok"]:
                    ctx.failures.append(f"{target.kind} {describe(case)} rep {rep + 1}: {result.get('why')}")
                log(f"  {ctx.elapsed():5.0f}s  {target.kind:<10} {describe(case):<28} rep {rep + 1}: "
                    f"{summary(result)}")
    return runs


def ramp_estimate(args, kind):
    """Seconds one idle ramp takes, setup and teardown included (a guess, for the budget)."""
    # Measured on 2 cores: 2-3 s for 10,000 wsplice sessions, about 5 s for 500 websockify ones.
    if kind.startswith("websockify"):
        return 2.5 + args.websockify_sessions / 180.0
    return 1.5 + args.sessions / 8000.0


def run_connections(ctx, backend, kinds):
    runs = {}
    reps = ctx.args.connection_repeat
    for rep in range(reps):
        order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
        for kind in order:
            if ctx.over_budget(ramp_estimate(ctx.args, kind)):
                ctx.skipped.append(f"{kind} connections rep {rep + 1} (time budget)")
                continue
            result = connections_run(ctx, backend, kind)
            result.update({"target": kind, "case": {"section": "connections"}, "rep": rep + 1})
            ctx.results.append(result)
            runs.setdefault(kind, []).append(result)
            if not result["ok"]:
                ctx.failures.append(f"{kind} connections rep {rep + 1}: {result.get('why')}")
            log(f"  {ctx.elapsed():5.0f}s  {kind:<10} idle sessions               rep {rep + 1}: "
                f"held {result.get('held')}/{result.get('attempted')} "
                f"{result.get('hs_per_s', 0):.0f} hs/s, PSS/session {fmt(result.get('pss_per_session_kib'))} KiB "
                f"{'' if result['ok'] else 'FAILED: ' + str(result.get('why'))}")
    return runs


# --------------------------------------------------------------------------- the tls section


def tls_cases():
    return [{"section": "tls", "mode": "up", "conns": 1, "frame": 65536},
            {"section": "tls", "mode": "down", "conns": 1, "frame": None}]


def tls_handshakes_for(args, kind):
    return args.websockify_handshakes if kind.startswith("websockify") else args.tls_handshakes


def tls_estimate(args, kinds):
    """Seconds the tls section takes (a guess, for the budget)."""
    per_run = args.duration + 0.1  # measured: runs of 1.5 s take about 1.55 s here
    t = len(tls_cases()) * args.repeat * len(kinds) * per_run + 1.0 * len(kinds)
    for kind in kinds:
        t += args.connection_repeat * (0.5 + tls_handshakes_for(args, kind) / handshake_rate(kind))
    return t


def handshake_rate(kind):
    """Handshakes per second to expect (measured on 2 cores), for the budget."""
    return {"wsplice": 5000.0, "wsplice-tls": 1500.0}.get(kind, 180.0 if kind.startswith("websockify") else 1000.0)


def handshake_run(ctx, backend, target):
    """Open N sessions (TCP, TLS for wss, upgrade), a bounded number at a time, each closed
    once its 101 is in; the rate is sessions done over the time from first connect to last."""
    n = tls_handshakes_for(ctx.args, target.kind)
    argv = loadgen_base(ctx, target, "echo") + ["--mode", "handshake", "--sessions", str(n), "--concurrency",
                                                str(ctx.args.handshake_concurrency), "--timeout", "10",
                                                "--ramp-timeout", "60"]
    root = target.measured_pids("echo")[0]
    before = cpu_seconds_with_reaped(root)
    result = run_loadgen(argv, timeout=90)
    left = backend.wait_idle(15)
    if left:
        result["note"] = f"{left} backend connections still open 15s after the run"
    # Once the backend is idle the sessions are over (websockify's processes exited and,
    # after a moment, reaped); still-running children are added as they are.
    time.sleep(0.2 if target.forks_per_session else 0)
    after = cpu_seconds_with_reaped(root)
    live = sum(cpu_seconds(p) or 0 for p in descendants(root)[1:])
    result["gateway_cpu_s"] = after - before + live if before is not None and after is not None else None
    return result


def run_tls_section(ctx, backend, kinds):
    """wss:// beside ws://: single-connection throughput, then handshakes per second."""
    targets = []
    for kind in kinds:
        try:
            targets.append(TARGET_KINDS[kind](ctx, backend.ports))
        except RuntimeError as e:
            ctx.failures.append(f"{kind}: could not start: {e}")
    try:
        log(f"tls: {', '.join(t.kind for t in targets)}; {ctx.args.repeat} runs of {ctx.args.duration}s per case, "
            f"then {ctx.args.connection_repeat} handshake ramps each")
        runs = run_cases(ctx, backend, targets, tls_cases()) if targets else {}
        hs = {}
        for rep in range(ctx.args.connection_repeat):
            order = targets[rep % len(targets):] + targets[:rep % len(targets)] if targets else []
            for target in order:
                need = 0.5 + tls_handshakes_for(ctx.args, target.kind) / handshake_rate(target.kind)
                if ctx.over_budget(need + ctx.reserve):
                    ctx.skipped.append(f"{target.kind} handshakes rep {rep + 1} (time budget)")
                    hs.setdefault(target.kind, []).append({"ok": False, "skipped": True, "why": "time budget"})
                    continue
                result = handshake_run(ctx, backend, target)
                result.update({"target": target.kind, "case": {"section": "tls", "mode": "handshake"},
                               "rep": rep + 1})
                ctx.results.append(result)
                hs.setdefault(target.kind, []).append(result)
                if not result["ok"]:
                    why = result.get("why")
                    if result.get("tls_error"):
                        why = f"{why} tls_error={result['tls_error']}"
                    ctx.failures.append(f"{target.kind} handshakes rep {rep + 1}: {why}")
                log(f"  {ctx.elapsed():5.0f}s  {target.kind:<10} handshakes, {result.get('attempted', '?')} sessions"
                    f"     rep {rep + 1}: {result.get('hs_per_s', 0):.0f}/s, client cpu "
                    f"{result.get('cpu_pct', 0):.0f}% {'' if result['ok'] else 'FAILED: ' + str(result.get('why'))}")
    finally:
        for t in targets:
            t.stop()
    return {"kinds": [t.kind for t in targets], "runs": runs, "handshakes": hs}


def print_tls_table(ctx, tls):
    columns = tls["kinds"]
    runs, hs = tls["runs"], tls["handshakes"]
    head = ["", *columns, "wss/ws (wsplice)", "wsplice-tls/websockify-tls", "client cpu wsplice-tls/max"]
    rows = []

    def values_of(field, rs_of):
        values = {}
        for kind in columns:
            rs = rs_of(kind)
            if not rs:
                values[kind] = None
            elif not any(r.get("ok") for r in rs):
                values[kind] = "skipped" if all(r.get("skipped") for r in rs) else "FAIL"
            else:
                values[kind] = field(rs) if callable(field) else median_of(rs, field)
        return values

    def num(v):
        return v if isinstance(v, (int, float)) else None

    def add_row(label, values, client="", compare=True):
        wss = num(values.get("wsplice-tls"))
        rows.append([label, *[fmt(values.get(k)) for k in columns],
                     ratio(wss, num(values.get("wsplice"))) if compare else "-",
                     ratio(wss, num(values.get("websockify-tls"))) if compare else "-", client])

    def client_cpu(rs_of):
        mine = [r["cpu_pct"] for r in rs_of("wsplice-tls") if r.get("ok")]
        every = [r["cpu_pct"] for k in columns for r in rs_of(k) if r.get("ok")]
        if not every:
            return ""
        return f"{statistics.median(mine):.0f}%/{max(every):.0f}%" if mine else f"-/{max(every):.0f}%"

    def per_gb(rs):
        vals = [r["gateway_cpu_s"] / (r["bytes"] / 1e9) for r in rs
                if r.get("ok") and r.get("gateway_cpu_s") is not None and r.get("bytes")]
        return statistics.median(vals) if vals else None

    def case_runs(case):
        return lambda k: runs.get((k, case_key(case, TARGET_KINDS[k].scheme)), [])

    def label_of(case):
        return f"  {case['mode']:<4} {case['conns']:>2} conn" + (f"  {case['frame'] // 1024:>2} KiB frames"
                                                                   if case["frame"] else "")

    rows.append(["wss:// (TLS 1.3) beside ws://, 1 connection, MB/s (higher is better)"])
    for case in tls_cases():
        add_row(label_of(case), values_of("mbps", case_runs(case)), client_cpu(case_runs(case)))
    rows.append(["gateway CPU seconds per GB moved (lower is better)"])
    for case in tls_cases():
        add_row(label_of(case), values_of(per_gb, case_runs(case)))

    def hs_runs(k):
        return hs.get(k, [])

    rows.append([f"handshakes: TCP + TLS (wss) + upgrade, then close; {ctx.args.handshake_concurrency} at a time"])
    add_row("  handshakes/s", values_of("hs_per_s", hs_runs), client_cpu(hs_runs))
    add_row("  sessions attempted", values_of("attempted", hs_runs), compare=False)
    add_row("  gateway CPU ms/handshake", values_of(
        lambda rs: statistics.median([1000 * r["gateway_cpu_s"] / r["done"] for r in rs
                                      if r.get("ok") and r.get("done") and r.get("gateway_cpu_s") is not None])
        if any(r.get("ok") and r.get("done") and r.get("gateway_cpu_s") is not None for r in rs) else None,
        hs_runs))

    print_rows(head, rows)
    # What was negotiated: the first connection of each wss target (any run reports it).
    for kind in columns:
        if TARGET_KINDS[kind].scheme != "wss":
            continue
        seen = [r for rs in list(runs.values()) + list(hs.values()) for r in rs
                if r.get("target") == kind and r.get("tls_version")]
        if seen:
            r = seen[0]
            curve = " (P-256)" if "prime256v1" in r.get("tls_cert_key", "") else ""
            print(f"{kind} negotiated: {r['tls_version']}, cipher {r['tls_cipher']}, key exchange group "
                  f"{r['tls_group']}; server certificate {r['tls_cert_key']}{curve}, signature hash "
                  f"{r['tls_sig_hash']}")
        else:
            print(f"{kind} negotiated: - (no TLS connection completed)")


def describe(case):
    if case["section"] == "latency":
        return f"echo 64 B, {case['conns']} conns"
    frame = f", {case['frame'] // 1024} KiB frames" if case["frame"] else ""
    return f"{case['mode']}, {case['conns']} conns{frame}"


def summary(r):
    if not r.get("ok"):
        return f"FAILED ({r.get('why')})"
    if r.get("mode") == "echo":
        return (f"p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, p999 {r['p999_us']:.0f} us, "
                f"{r['rate']:.0f} rt/s, client cpu {r['cpu_pct']:.0f}%")
    return f"{r['mbps']:.1f} MB/s, client cpu {r['cpu_pct']:.0f}%"


# --------------------------------------------------------------------------- the table


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if float(v).is_integer() or abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    if r >= 100:
        return f"{r:.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    if r >= 0.1:
        return f"{r:.2f}x"
    return f"{r:.2g}x"


def print_rows(head, rows):
    """Print a table: one-cell rows are section titles; the rest align under 'head'."""
    table = [r for r in rows if len(r) > 1] + [head]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]

    def line(r):
        if len(r) == 1:
            return r[0]
        return "  ".join([r[0].ljust(widths[0])] + [c.rjust(widths[i + 1]) for i, c in enumerate(r[1:])])

    print(line(head))
    for r in rows:
        print(line(r))


def print_table(ctx, kinds, traffic, conn_runs):
    cases, runs = traffic
    columns = [k for k in kinds]
    has_relay = "relay" in columns
    has_wsf = "websockify" in columns
    has_w2 = "wsplice-w2" in columns and has_relay
    head = ["", *columns, "wsplice/relay", *(["w2/relay"] if has_w2 else []), "wsplice/websockify",
            "client cpu wsplice/max"]
    rows = []

    def cell_values(field, case=None, section_runs=None):
        values = {}
        for kind in columns:
            if section_runs is not None:
                rs = section_runs.get(kind, [])
            else:
                scheme = TARGET_KINDS[kind].scheme
                rs = runs.get((kind, case_key(case, scheme)), [])
            if not rs:
                values[kind] = None
            elif not any(r.get("ok") for r in rs):
                values[kind] = "skipped" if all(r.get("skipped") for r in rs) else "FAIL"
            else:
                values[kind] = median_of(rs, field) if not callable(field) else field(rs)
        return values

    def add_row(label, values, client=None, comparable=("relay", "websockify")):
        w = values.get("wsplice")

        def num(v):
            return v if isinstance(v, (int, float)) else None

        w2 = [ratio(num(values.get("wsplice-w2")), num(values.get("relay"))) if "relay" in comparable else "-"]
        rows.append([label, *[fmt(values.get(k)) for k in columns],
                     ratio(num(w), num(values.get("relay"))) if has_relay and "relay" in comparable else "-",
                     *(w2 if has_w2 else []),
                     ratio(num(w), num(values.get("websockify"))) if has_wsf and "websockify" in comparable else "-",
                     client or ""])

    def client_cpu(case):
        def cpus(kinds):
            return [r["cpu_pct"] for k in kinds for r in runs.get((k, case_key(case, TARGET_KINDS[k].scheme)), [])
                    if r.get("ok")]
        mine, every = cpus(["wsplice"] if "wsplice" in columns else []), cpus(columns)
        if not every:
            return ""
        return f"{statistics.median(mine):.0f}%/{max(every):.0f}%" if mine else f"-/{max(every):.0f}%"

    tput = [c for c in cases if c["section"] == "throughput"]
    lat = [c for c in cases if c["section"] == "latency"]
    if tput:
        rows.append(["throughput, MB/s (higher is better)"])
        for case in tput:
            label = f"  {case['mode']:<4} {case['conns']:>2} conn{'s' if case['conns'] > 1 else ' '}"
            label += f" {case['frame'] // 1024:>2} KiB frames" if case["frame"] else ""
            add_row(label, cell_values("mbps", case), client_cpu(case))
        rows.append(["gateway CPU seconds per GB moved (lower is better)"])
        for case in tput:
            label = f"  {case['mode']:<4} {case['conns']:>2} conn{'s' if case['conns'] > 1 else ' '}"
            label += f" {case['frame'] // 1024:>2} KiB frames" if case["frame"] else ""

            def per_gb(rs):
                vals = [r["gateway_cpu_s"] / (r["bytes"] / 1e9) for r in rs
                        if r.get("ok") and r.get("gateway_cpu_s") is not None and r.get("bytes")]
                return statistics.median(vals) if vals else None

            add_row(label, cell_values(per_gb, case))
    if lat:
        rows.append(["latency, 64-byte echo round trips, microseconds (lower is better)"])
        for case in lat:
            for p in ("p50", "p99", "p999"):
                label = f"  {p:<4} {case['conns']:>2} conn{'s' if case['conns'] > 1 else ' '}"
                add_row(label, cell_values(f"{p}_us", case), client_cpu(case) if p == "p50" else "")
            label = f"  round trips/s, {case['conns']} conn{'s' if case['conns'] > 1 else ''}"
            add_row(label, cell_values("rate", case))
    if conn_runs is not None:
        rows.append([f"connections: idle sessions, fd limit {ctx.nofile} per process"])
        attempted = {k: median_of(conn_runs.get(k, []), "attempted") for k in columns}
        # "held" only compares between targets that were offered the same number.
        same = tuple(k for k in ("relay", "websockify") if attempted.get(k) == attempted.get("wsplice"))
        add_row("  sessions held", cell_values("held", section_runs=conn_runs), comparable=same)
        add_row("  sessions attempted", {k: attempted[k] for k in columns}, comparable=())
        add_row("  handshakes/s", cell_values("hs_per_s", section_runs=conn_runs))
        add_row("  gateway PSS KiB/session", cell_values("pss_per_session_kib", section_runs=conn_runs))

    print_rows(head, rows)


# --------------------------------------------------------------------------- profile

PROFILE_SYSCALLS = ("read", "readv", "recvfrom", "write", "writev", "sendto", "splice", "ioctl", "epoll_ctl",
                    "epoll_wait", "epoll_pwait")
PROFILE_CASES = (
    {"section": "throughput", "mode": "up", "conns": 1, "frame": 65536},
    {"section": "throughput", "mode": "up", "conns": 1, "frame": 1024},
    {"section": "throughput", "mode": "down", "conns": 1, "frame": None},
)


class PerfWindow:
    """perf record (call graphs) and perf stat (syscall counts) attached to one process
    for exactly the loadgen's measured window."""

    def __init__(self, pid, workdir, tag):
        self.pid = pid
        self.data = os.path.join(workdir, f"perf-{tag}.data")
        self.stat = os.path.join(workdir, f"perf-{tag}.stat")
        self.procs = []

    def on_event(self, event):
        if event == "start":
            events = ",".join(f"syscalls:sys_enter_{name}" for name in PROFILE_SYSCALLS)
            self.procs = [
                subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-g", "-o", self.data, "-p", str(self.pid)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent),
                subprocess.Popen(["perf", "stat", "-x,", "-e", events, "-o", self.stat, "-p", str(self.pid)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent),
            ]
        elif event == "stop":
            self.finish()

    def finish(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []

    def syscalls(self):
        counts = {}
        try:
            with open(self.stat) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and parts[2].startswith("syscalls:sys_enter_") and parts[0].isdigit():
                        counts[parts[2][len("syscalls:sys_enter_"):]] = int(parts[0])
        except OSError:
            pass
        return counts

    def report(self, sort):
        out = subprocess.run(["perf", "report", "-i", self.data, "--no-children", "--sort", sort, "--stdio", "-g",
                              "none"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    def top(self, n):
        """The n hottest functions (self time), and the share of each binary or library."""
        rows = []
        for line in self.report("dso,symbol"):
            m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(\S+)", line)
            if m:
                rows.append((float(m.group(1)), m.group(2), m.group(3)))
        by_dso = {}
        for line in self.report("dso"):
            m = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
            if m:
                by_dso[m.group(2)] = float(m.group(1))
        return rows[:n], by_dso


def run_profile(ctx, backend, kinds):
    """Where the time goes: each gateway under perf during single-connection runs."""
    if not shutil.which("perf"):
        print("profile: perf is not installed (Debian: linux-perf)")
        return
    for kind in kinds:
        if kind == "direct":
            continue
        for case in PROFILE_CASES:
            if TARGET_KINDS[kind].scheme == "tcp" and case["frame"] == 1024:
                continue
            target = TARGET_KINDS[kind](ctx, backend.ports)
            try:
                mode = {"up": "sink", "down": "source"}[case["mode"]]
                pid = target.measured_pids(mode)[0]
                tag = f"{kind}-{case['mode']}-{case['frame']}"
                perf = PerfWindow(pid, ctx.workdir, tag)
                argv = loadgen_base(ctx, target, mode) + ["--mode", case["mode"], "--conns", "1", "--duration",
                                                          str(ctx.args.duration)]
                if case["frame"]:
                    argv += ["--frame", str(case["frame"])]
                meter = CpuMeter(lambda: target.measured_pids(mode), sample=target.forks_per_session)

                def on_event(event, perf=perf, meter=meter):
                    meter.on_event(event)
                    perf.on_event(event)

                result = run_loadgen(argv, timeout=ctx.args.duration + 30, on_event=on_event)
                perf.finish()
                cpu = meter.stop()
            finally:
                target.stop()
                backend.wait_idle(10)
            print()
            if not result.get("ok"):
                print(f"profile: {kind}, {describe(case)}: FAILED ({result.get('why')})")
                continue
            mb = result["bytes"] / 1e6
            cpu_pct = 100 * cpu / result["seconds"] if cpu is not None and result["seconds"] else 0
            print(f"profile: {kind}, {describe(case)}: {result['mbps']:.0f} MB/s with perf attached, "
                  f"gateway CPU {cpu_pct:.0f}%")
            counts = perf.syscalls()
            if counts and mb:
                total = sum(counts.values())
                reads = sum(counts.get(k, 0) for k in ("read", "readv", "recvfrom"))
                parts = ", ".join(f"{k} {v / mb:.0f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v)
                print(f"  syscalls per MB: {parts} (total {total / mb:.0f}; "
                      f"{'%.0f bytes per read' % (result['bytes'] / reads) if reads else 'no read calls'})")
            rows, by_dso = perf.top(12)
            if rows:
                print("  where the time goes: " + ", ".join(f"{d} {p:.0f}%" for d, p in
                                                           sorted(by_dso.items(), key=lambda kv: -kv[1])[:4]))
                for pct, dso, sym in rows:
                    print(f"    {pct:5.1f}%  {dso:<24} {sym}")


# --------------------------------------------------------------------------- main


def find_websockify(args):
    if args.websockify:
        return args.websockify
    path = shutil.which("websockify")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("websockify not found: installing Debian's package")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "install", "-y", "websockify"], ["apt-get", "update"],
                    ["apt-get", "install", "-y", "websockify"]):
            rc = subprocess.call(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=240)
            if rc == 0 and shutil.which("websockify"):
                return shutil.which("websockify")
    return None


def parse_args(argv):
    p = argparse.ArgumentParser(description="wsplice benchmark (see tests/bench/README.md)")
    p.add_argument("--gateway", default="build/wsplice", help="the wsplice binary")
    p.add_argument("--tools", default="build/bench", help="where loadgen, backend and relay are")
    p.add_argument("--quick", action="store_true", help="one short run of everything (~1 minute)")
    p.add_argument("--only", default=",".join(SECTIONS), help="sections: " + ",".join(SECTIONS))
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="kinds: " + ",".join(TARGET_KINDS))
    p.add_argument("--repeat", type=int, help="runs per case, median reported (default 3, quick 1)")
    p.add_argument("--connection-repeat", type=int, help="idle ramps per target (default 3, quick 1)")
    p.add_argument("--duration", type=float, help="seconds per throughput/latency run (default 1.5, quick 0.5)")
    p.add_argument("--sessions", type=int, help="idle sessions to attempt (default: fd limit / 2)")
    p.add_argument("--websockify-sessions", type=int, help="idle sessions for websockify, a process each "
                   "(default 500, quick 50)")
    p.add_argument("--tls-handshakes", type=int, help="tls section: sessions per handshake ramp for wsplice "
                   "(default 2000, quick 500)")
    p.add_argument("--websockify-handshakes", type=int, help="tls section: sessions per handshake ramp for "
                   "websockify, a process each (default 1000, quick 100)")
    p.add_argument("--handshake-concurrency", type=int, default=128, help="tls section: sessions being set up "
                   "at once (default 128)")
    p.add_argument("--budget", type=float, help="seconds; runs that would end later are skipped "
                   "(default 280, quick 90)")
    p.add_argument("--websockify", help="the websockify command (default: from PATH, installed if missing)")
    p.add_argument("--json", help="write every run's raw result here")
    p.add_argument("--profile", action="store_true", help="instead of the table: each gateway under perf "
                   "(top functions, syscalls per MB) during single-connection up and down runs")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs and logs)")
    args = p.parse_args(argv)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    quick = args.quick
    args.repeat = args.repeat or (1 if quick else 3)
    args.connection_repeat = args.connection_repeat or (1 if quick else 3)
    args.duration = args.duration or (0.5 if quick else 1.5)
    args.sessions = args.sessions or (min(2000, nofile // 2) if quick else nofile // 2)
    args.websockify_sessions = args.websockify_sessions or (50 if quick else 500)
    args.tls_handshakes = args.tls_handshakes or (500 if quick else 2000)
    args.websockify_handshakes = args.websockify_handshakes or (100 if quick else 1000)
    args.budget = args.budget or (90 if quick else 280)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in args.sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s!r}")
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in wanted:
        if t not in TARGET_KINDS:
            p.error(f"unknown target {t!r}")
    args.target_kinds = [k for k in TARGET_KINDS if k in wanted]  # the table's column order
    return args, nofile


def main(argv):
    args, nofile = parse_args(argv)
    for tool in ("loadgen", "backend", "relay"):
        if not os.access(os.path.join(args.tools, tool), os.X_OK):
            sys.exit(f"run.py: {os.path.join(args.tools, tool)} missing: run `make bench`")
    if not os.access(args.gateway, os.X_OK):
        sys.exit(f"run.py: {args.gateway} missing: run `make`")

    workdir = tempfile.mkdtemp(prefix="wsplice-bench-")
    ctx = Context(args, workdir)
    ctx.nofile = nofile
    ctx.reserve = 0.0
    if "websockify" in args.target_kinds or "websockify-tls" in args.target_kinds or "tls" in args.sections:
        ctx.websockify = find_websockify(args)

    kinds = []
    for kind in args.target_kinds:
        ok, why = TARGET_KINDS[kind].available(ctx)
        if ok:
            kinds.append(kind)
        else:
            ctx.skipped.append(f"{kind}: {why}")
    conn_reserve = 0.0
    if "connections" in args.sections:
        conn_reserve = sum(ramp_estimate(args, k) for k in kinds) * args.connection_repeat
    # The tls section's table: wsplice (ws), wsplice-tls, and websockify-tls when websockify
    # is wanted (by default it is); --targets narrows it like the other sections.
    tls_kinds = []
    if "tls" in args.sections:
        wanted = set(args.target_kinds)
        if "websockify" in wanted:
            wanted.add("websockify-tls")
        wanted.add("wsplice-tls")
        for kind in TLS_COLUMNS:
            if kind not in wanted:
                continue
            ok, why = TARGET_KINDS[kind].available(ctx)
            if ok:
                tls_kinds.append(kind)
            elif kind not in args.target_kinds:
                ctx.skipped.append(f"{kind}: {why}")
    ctx.reserve = conn_reserve + (tls_estimate(args, tls_kinds) if tls_kinds else 0.0)

    def on_signal(signum, frame):
        raise SystemExit(f"run.py: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
    backend = None
    targets = []
    traffic = ([], {})
    conn_runs = None
    tls = None
    try:
        backend = Backend(ctx.tools, workdir)
        if args.profile:
            run_profile(ctx, backend, [k for k in kinds if k != "websockify"] if args.targets == ",".join(
                DEFAULT_TARGETS) else kinds)
            return 0
        if "throughput" in args.sections or "latency" in args.sections:
            for kind in kinds:
                try:
                    targets.append(TARGET_KINDS[kind](ctx, backend.ports))
                except RuntimeError as e:
                    ctx.failures.append(f"{kind}: could not start: {e}")
            log(f"benchmark: {', '.join(kinds)}; {args.repeat} runs of {args.duration}s per case")
            traffic = run_traffic_sections(ctx, backend, targets, args.sections)
            for t in targets:
                t.stop()
            targets = []
        ctx.reserve = conn_reserve
        if tls_kinds:
            tls = run_tls_section(ctx, backend, tls_kinds)
        if "connections" in args.sections:
            log(f"idle sessions: {args.sessions} attempted ({args.websockify_sessions} for websockify), "
                f"{args.connection_repeat} ramps each")
            conn_runs = run_connections(ctx, backend, kinds)
    finally:
        for t in targets:
            t.stop()
        for child in ctx.started:
            child.stop()
        if backend:
            backend.stop()

    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu_model = m.group(1).strip() if m else ""
    except OSError:
        pass
    total = ctx.elapsed()
    print()
    print(f"wsplice benchmark, {started}: {os.cpu_count()} cores ({cpu_model}), Linux {platform.release()}, "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"median of {args.repeat} runs of {args.duration:g}s per case ({args.connection_repeat} idle ramps); "
          f"MB = 10^6 bytes; ratios are wsplice (w2: wsplice-w2, workers = 2) divided by the other column")
    print()
    if traffic[0] or conn_runs is not None:
        print_table(ctx, kinds, traffic, conn_runs)
        print()
    if tls is not None:
        print_tls_table(ctx, tls)
        print()
    ran_throughput = any(c["section"] == "throughput" for c in traffic[0])
    if ran_throughput and any(TARGET_KINDS[k].scheme == "tcp" for k in kinds):
        print("direct and relay carry a raw byte stream: one up run per connection count serves both frame sizes")
    if ctx.skipped:
        print("skipped: " + "; ".join(ctx.skipped))
    if ctx.failures:
        print(f"{len(ctx.failures)} failed runs:")
        for f in ctx.failures:
            print(f"  {f}")
    else:
        print("no failed runs")
    print(f"total time {total:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started, "cores": os.cpu_count(), "args": vars(args), "runs": ctx.results},
                      f, indent=1, default=str)
    if args.keep or ctx.failures:
        print(f"logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if ctx.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
