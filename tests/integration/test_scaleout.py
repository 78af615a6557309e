"""Scale-out without containers: Debian's HAProxy (TCP mode, round robin) in front of two
wsplice processes on loopback, the topology of docker/compose.yaml. Sessions spread across
both replicas; a replica stopped with SIGTERM drains its own sessions (close 1001) and exits,
while the other keeps its sessions and takes every new one.

HAProxy is required (Debian: haproxy): without it these tests fail, they do not skip.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

import harness

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)

HAPROXY_CFG = """\
global
    maxconn 512
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # A replica that stopped listening refuses the connection: try the other one.
    retries 3
    option redispatch
frontend ws
    bind 127.0.0.1:{front}
    default_backend wsplice
backend wsplice
    balance roundrobin
    server gw1 127.0.0.1:{p1} check inter 200ms fall 1 rise 1
    server gw2 127.0.0.1:{p2} check inter 200ms fall 1 rise 1
"""


class HAProxy:
    def __init__(self, ports):
        if HAPROXY is None:
            pytest.fail("haproxy is not installed (Debian: apt-get install haproxy); the scale-out tests need it")
        self.dir = harness.tempfile.mkdtemp(prefix="wsplice-haproxy-")
        self.port = harness.free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(HAPROXY_CFG.format(front=self.port, p1=ports[0], p2=ports[1]))
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", self.cfg], capture_output=True, text=True)
        assert check.returncode == 0, "haproxy -c: %s%s" % (check.stdout, check.stderr)
        self.log_path = os.path.join(self.dir, "haproxy.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10 * harness.SLOW
        while time.time() < deadline:
            assert self.proc.poll() is None, "haproxy exited:\n" + self.log()
            try:
                harness.socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("haproxy is not listening:\n" + self.log())

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def opened(gw):
    return len(re.findall(r" session s=\d+ open ", gw.log()))


@pytest.fixture
def topology(gw_factory, echo, cleanup):
    """(haproxy, [gw1, gw2]): two replicas with one route /* to the same echo backend."""
    cfg = harness.config(routes={"echo": {"path": "/*", "target": "127.0.0.1:%d" % echo.port}})
    gws = [gw_factory(cfg), gw_factory(cfg)]
    hap = HAProxy([g.port for g in gws])
    cleanup.append(hap)
    return hap, gws


def open_session(hap, gws, path="/app"):
    """Open a session through HAProxy; returns (client, index of the replica serving it)."""
    before = [opened(g) for g in gws]
    c = harness.connect(hap.port, path=path, protocols=["binary"])
    deadline = time.time() + 5 * harness.SLOW
    while time.time() < deadline:
        grew = [i for i, g in enumerate(gws) if opened(g) > before[i]]
        if grew:
            assert len(grew) == 1, "one session opened on two replicas"
            return c, grew[0]
        time.sleep(0.01)
    raise AssertionError("no replica logged the session:\n" + "\n".join(g.log() for g in gws))


def roundtrip(c, payload):
    c.send_binary(payload)
    assert c.recv_data(len(payload)) == payload


def test_haproxy_spreads_sessions_across_replicas(topology):
    hap, gws = topology
    sessions = [open_session(hap, gws) for _ in range(6)]
    served = [sum(1 for _, i in sessions if i == n) for n in range(2)]
    assert served[0] >= 2 and served[1] >= 2, "round robin should use both replicas: %s" % served
    for k, (c, _) in enumerate(sessions):
        roundtrip(c, harness.seeded_bytes(70000 + k, seed=k))
    for c, _ in sessions:
        c.send_close(1000)
        assert c.expect_close(1000) is not None
        assert c.wait_eof()
        c.close()


def test_sigterm_drains_one_replica_while_the_other_serves(topology):
    hap, gws = topology
    sessions = [open_session(hap, gws) for _ in range(6)]
    on = {0: [c for c, i in sessions if i == 0], 1: [c for c, i in sessions if i == 1]}
    assert on[0] and on[1], "both replicas need a session: %s" % [len(on[0]), len(on[1])]
    for c, _ in sessions:
        roundtrip(c, b"before")

    stopped, other = gws[0], gws[1]
    t0 = time.time()
    stopped.send_signal(harness.signal.SIGTERM)
    # The stopped replica's sessions get close 1001 and, once they answer, the TCP close.
    for c in on[0]:
        c.expect_close(1001)
        c.send_close(1001)
        assert c.wait_eof(), "the draining replica did not close TCP"
        c.close()
    stopped.proc.wait(5 * harness.SLOW)
    took = time.time() - t0
    assert stopped.proc.returncode == 0, stopped.log()
    assert took < 2.0 * harness.SLOW, "drain took %.2fs with every client answering" % took
    assert re.search(r"signal TERM: draining %d sessions" % len(on[0]), stopped.log()), stopped.log()

    # The other replica's sessions never noticed.
    for c in on[1]:
        roundtrip(c, harness.seeded_bytes(50000, seed=7))
    # Every new session lands on the replica still running, including any HAProxy first
    # sends to the stopped one before its health check marks it down (redispatch).
    before = opened(other)
    for k in range(6):
        c = harness.connect(hap.port, path="/after", protocols=["binary"])
        roundtrip(c, b"after %d" % k)
        c.send_close(1000)
        c.expect_close(1000)
        c.close()
    assert opened(other) - before == 6, other.log()
    for c in on[1]:
        c.send_close(1000)
        c.expect_close(1000)
        c.close()
