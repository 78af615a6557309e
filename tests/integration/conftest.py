"""Fixtures: every gateway and backend a test starts is torn down after it, and a
gateway that crashed or reported a sanitizer or valgrind error fails the test."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import harness  # noqa: E402
import tlslib  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The TLS tests' certificates (tlslib.TestPKI), made once per run."""
    return tlslib.TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def cleanup():
    things = []
    yield things
    for t in reversed(things):
        t.close()


@pytest.fixture
def echo(cleanup):
    b = harness.EchoBackend()
    cleanup.append(b)
    return b


@pytest.fixture
def gw_factory(cleanup):
    """gw_factory(config_text=None, args=None, **kw) -> running Gateway."""
    started = []

    def make(config=None, args=None, **kw):
        g = harness.Gateway(config=config, args=args, **kw)
        started.append(g)
        cleanup.append(g)
        return g

    yield make
    for g in started:
        was_running = g.proc.poll() is None
        rc = g.shutdown()
        log = g.log()
        if was_running:
            # A clean exit on SIGTERM; under valgrind a leak or error makes it nonzero.
            assert rc == 0, "wsplice exited with %s on SIGTERM:\n%s" % (rc, log[-4000:])
        assert "ERROR: AddressSanitizer" not in log, log
        assert "runtime error:" not in log, log  # UBSan
        assert "LeakSanitizer" not in log, log
        # Under valgrind: checked whoever stopped the gateway (a test's own stop() too).
        problem = harness.memcheck_problems(log, g.proc.returncode)
        assert problem is None, "%s:\n%s" % (problem, log[-8000:])
        if g.proc.poll() is not None and g.proc.returncode < 0:
            pytest.fail("wsplice died from signal %d:\n%s" % (-g.proc.returncode, log))


@pytest.fixture
def gw_echo(gw_factory, echo):
    """A gateway with one route /* to an echo backend."""
    return gw_factory(harness.config(routes={"echo": {"path": "/*", "target": "127.0.0.1:%d" % echo.port}}))
