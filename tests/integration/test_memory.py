"""Memory when many sessions wake at once. A read sized for bulk transfer must not become a
bulk-sized buffer for a few bytes: when every backend sends a short message at the same
moment (a chat broadcast), every client sends a short frame at once, or every session
ends together (a drain), the gateway's peak resident memory grows by kilobytes per
session, not by its read size (64 KiB from a client, 256 KiB from a backend)."""

import signal
import socket
import threading

import harness
from harness import SLOW

SESSIONS = 1000
# Growth of the peak address space (VmPeak) allowed per session while all of them carry a
# message at once. Untouched reservations cost little resident memory, but they are
# address space the kernel must promise (strict overcommit, container limits) and heap
# that fragments. The read sizes are 64 and 256 KiB; buffers sized to the data need a
# few KiB (the sanitizer build's allocator and quarantine add some).
PEAK_KB_PER_SESSION = 32


class HoldBackend(harness.Backend):
    """Keeps every connection open and reads what arrives; the test writes to them."""

    def __init__(self, **kw):
        self.received = {}
        super().__init__(backlog=1024, **kw)

    def handle(self, c):
        got = 0
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += len(d)
            self.received[c.fileno()] = got


def open_sessions(gw, backend, n):
    clients = []
    for _ in range(n):
        clients.append(harness.connect(gw.port))
    for _ in range(n):
        backend.wait_accept()
    return clients


def test_broadcast_to_many_sessions_keeps_peak_memory_small(gw_factory, cleanup):
    backend = HoldBackend()
    cleanup.append(backend)
    gw = gw_factory(harness.config(gateway={"ping_interval_s": "0"},
                                   routes={"r": {"path": "/*", "target": "127.0.0.1:%d" % backend.port}}))
    clients = open_sessions(gw, backend, SESSIONS)
    base_peak = gw.rss_kb("VmPeak")

    # Backend -> client: every backend connection sends 20 bytes, as fast as we can.
    msg = b"PRIVMSG #c :hello\r\n"
    with backend.lock:
        conns = list(backend.conns)
    gw.send_signal(signal.SIGSTOP)  # so that every session finds its message in one wakeup
    try:
        for c in conns:
            c.sendall(msg)
    finally:
        gw.send_signal(signal.SIGCONT)
    for cl in clients:
        assert cl.recv_data(len(msg)) == msg
    # Client -> backend: every client sends a short frame at once.
    frame = b"ping from a client"
    gw.send_signal(signal.SIGSTOP)
    try:
        for cl in clients:
            cl.send_binary(frame)
    finally:
        gw.send_signal(signal.SIGCONT)
    for _ in range(int(500 * SLOW)):
        if sum(backend.received.values()) >= SESSIONS * len(frame):
            break
        threading.Event().wait(0.02)
    assert sum(backend.received.values()) == SESSIONS * len(frame)
    growth = gw.rss_kb("VmPeak") - base_peak
    print("VmPeak growth %d KiB for %d sessions" % (growth, SESSIONS))
    assert growth <= PEAK_KB_PER_SESSION * SESSIONS, (
        "peak address space grew by %d KiB for %d sessions (%.1f KiB each)" % (growth, SESSIONS, growth / SESSIONS))

    # Every session ends together: the backends close, each session reads an EOF.
    gw.send_signal(signal.SIGSTOP)
    try:
        for c in conns:
            c.shutdown(socket.SHUT_WR)
    finally:
        gw.send_signal(signal.SIGCONT)
    for cl in clients:
        cl.expect_close(1000)
    growth = gw.rss_kb("VmPeak") - base_peak
    print("VmPeak growth %d KiB for %d sessions" % (growth, SESSIONS))
    assert growth <= PEAK_KB_PER_SESSION * SESSIONS, (
        "peak address space grew by %d KiB at the end of %d sessions" % (growth, SESSIONS))
