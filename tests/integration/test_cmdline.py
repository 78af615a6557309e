"""The command line: websockify's positional form, -c FILE, -t/-v config checking, help
and version output, and the exit codes and one-line messages of every usage error."""

import os
import re
import socket
import subprocess

import pytest

import harness
from harness import SLOW

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXIT_RUNTIME, EXIT_USAGE = 1, 2


def run(*args, timeout=10.0):
    """Run the binary to completion; returns CompletedProcess with text stdout/stderr."""
    argv = [harness.WSPLICE_BIN] + list(args)
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout * SLOW, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("wsplice %s did not exit within %ss (stderr %r)" % (args, timeout, e.stderr)) from None


def write_ini(tmp_path, text):
    path = str(tmp_path / "wsplice.ini")
    with open(path, "w") as f:
        f.write(text)
    return path




def roundtrip(port, path="/", ip="127.0.0.1", payload=b"cmdline"):
    c = harness.WSClient(port, host=ip)
    c.handshake(path=path)
    c.send_binary(payload)
    assert c.recv_data(len(payload)) == payload
    c.send_close(1000)
    c.expect_close(1000)
    assert c.wait_eof()
    c.close()


# --------------------------------------------------------------------------- running forms


@pytest.mark.parametrize("path", ["/", "/websockify", "/any/path?token=1"])
def test_websockify_form_proxies_any_path(gw_factory, echo, path):
    gw = gw_factory(args=["127.0.0.1:0", "127.0.0.1:%d" % echo.port])
    roundtrip(gw.port, path=path)


def test_bare_port_source_listens_on_all_interfaces(gw_factory, echo):
    gw = gw_factory(args=["0", "127.0.0.1:%d" % echo.port])
    roundtrip(gw.port, ip="127.0.0.1")
    assert re.search(r"addr=(\[::\]|0\.0\.0\.0):%d listening" % gw.port, gw.log()), gw.log()


def test_ipv6_source(gw_factory, echo):
    if not harness.ipv6_loopback_available():
        pytest.skip("IPv6 loopback unavailable: socket.has_ipv6 is false or ::1 cannot be bound")
    gw = gw_factory(args=["[::1]:0", "127.0.0.1:%d" % echo.port])
    assert "addr=[::1]:%d listening" % gw.port in gw.log()
    roundtrip(gw.port, ip="::1")


def test_unix_target_option(gw_factory, cleanup):
    from test_routing import UnixEchoBackend

    ux = UnixEchoBackend()
    cleanup.append(ux)
    gw = gw_factory(args=["127.0.0.1:0", "--unix-target", ux.path])
    roundtrip(gw.port, path="/u")
    assert ux.accepted.acquire(timeout=5 * SLOW)


def test_heartbeat_option_makes_gateway_ping(gw_factory, echo):
    gw = gw_factory(args=["--heartbeat", "0.3", "127.0.0.1:0", "127.0.0.1:%d" % echo.port])
    c = harness.connect(gw.port)
    c.sock.settimeout(10 * SLOW)
    fin, op, payload = c.recv_frame()
    assert (fin, op) == (True, harness.OP_PING)
    c.send(harness.OP_PONG, payload)
    # Still relaying after the pong.
    c.send_binary(b"after pong")
    assert c.recv_data(10) == b"after pong"
    c.send_close(1000)
    c.expect_close(1000)
    c.close()


def test_heartbeat_pings_again_after_pong(gw_factory, echo):
    """A heartbeat is periodic: once the client answered, the next ping follows after
    another quiet interval (0.3 s), not after the 30 s ping timeout."""
    gw = gw_factory(args=["--heartbeat", "0.3", "127.0.0.1:0", "127.0.0.1:%d" % echo.port])
    c = harness.connect(gw.port)
    c.sock.settimeout(10 * SLOW)
    fin, op, payload = c.recv_frame()
    assert op == harness.OP_PING
    c.send(harness.OP_PONG, payload)
    # Far below the 30 s default ping timeout, far above the 0.3 s interval.
    c.sock.settimeout(5 * SLOW)
    try:
        fin, op, payload = c.recv_frame()
    except socket.timeout:
        raise AssertionError("no second ping within 5 s of answering the first (heartbeat 0.3 s)") from None
    assert op == harness.OP_PING
    c.send(harness.OP_PONG, payload)
    c.send_close(1000)
    c.expect_close(1000)
    c.close()


# --------------------------------------------------------------------------- help, version


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_exits_0_with_usage_on_stdout(flag):
    r = run(flag)
    assert r.returncode == 0
    assert r.stdout.startswith("usage: wsplice"), r.stdout
    for opt in ("-c", "-t", "-v", "-V", "--heartbeat", "--unix-target"):
        assert opt in r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_prints_name_and_version(flag):
    r = run(flag)
    assert r.returncode == 0
    assert re.fullmatch(r"wsplice \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout
    assert r.stderr == ""


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "args, names",
    [
        (["--bogus", "127.0.0.1:0", "127.0.0.1:1"], ["--bogus"]),
        (["-x", "127.0.0.1:0", "127.0.0.1:1"], ["-x"]),
        ([], ["target"]),
        (["127.0.0.1:0"], ["target", "127.0.0.1:0"]),
        (["127.0.0.1:0", "127.0.0.1:1", "extra"], ["extra"]),
        (["127.0.0.1:0", "127.0.0.1:1", "sleep", "1"], ["sleep"]),
        (["not-an-address", "127.0.0.1:1"], ["source", "not-an-address"]),
        (["127.0.0.1:99999", "127.0.0.1:1"], ["source", "127.0.0.1:99999"]),
        (["::1:0", "127.0.0.1:1"], ["source", "::1:0"]),
        (["127.0.0.1:0", "127.0.0.1:0"], ["target", "127.0.0.1:0"]),
        (["127.0.0.1:0", "no port"], ["target", "no port"]),
        (["127.0.0.1:0", "8080"], ["target", "8080"]),
        (["127.0.0.1:0", "unix:/tmp/x.sock"], ["target", "unix:/tmp/x.sock"]),
        (["-c"], ["-c"]),
        (["127.0.0.1:0", "127.0.0.1:1", "--heartbeat"], ["--heartbeat"]),
        (["127.0.0.1:0", "--unix-target"], ["--unix-target"]),
        (["127.0.0.1:0", "--unix-target", "/tmp/x.sock", "127.0.0.1:1"], ["127.0.0.1:1"]),
    ],
    ids=[
        "unknown_long_flag",
        "unknown_short_flag",
        "no_arguments",
        "missing_target",
        "extra_argument",
        "wrapped_command",
        "bad_source",
        "bad_source_port",
        "unbracketed_ipv6_source",
        "bad_target_port_zero",
        "bad_target_text",
        "target_without_host",
        "unix_target_positional",
        "missing_config_value",
        "missing_heartbeat_value",
        "missing_unix_target_value",
        "unix_target_and_target",
    ],
)
def test_usage_error_exit_2_one_line(args, names):
    r = run(*args)
    assert r.returncode == EXIT_USAGE, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, "expected one line on stderr, got %r" % r.stderr
    assert lines[0].startswith("wsplice: "), lines
    for name in names:
        assert name in lines[0], "%r does not name %r" % (lines[0], name)
    assert r.stdout == ""


def test_config_with_positional_args_exit_2(tmp_path, echo):
    path = write_ini(tmp_path, harness.config(routes={"r": {"path": "/*", "target": "127.0.0.1:%d" % echo.port}}))
    r = run("-c", path, "127.0.0.1:0", "127.0.0.1:%d" % echo.port)
    assert r.returncode == EXIT_USAGE
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "-c" in lines[0] and "127.0.0.1:0" in lines[0], r.stderr


def test_missing_config_file_exit_2(tmp_path):
    path = str(tmp_path / "absent.ini")
    r = run("-c", path)
    assert r.returncode == EXIT_USAGE
    assert path in r.stderr
    assert re.search(r"cannot open|No such file", r.stderr), r.stderr
    r = run("-t", "-c", path)
    assert r.returncode == EXIT_USAGE and path in r.stderr


# --------------------------------------------------------------------------- -t


def test_check_good_config_exit_0(tmp_path, echo):
    path = write_ini(tmp_path, harness.config(routes={"r": {"path": "/*", "target": "127.0.0.1:%d" % echo.port}}))
    r = run("-t", "-c", path)
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stderr
    assert r.stdout == ""


def test_check_bad_config_lists_all_errors_exit_2(tmp_path):
    text = (
        "[gateway]\n"  # 1
        "max_sessions = lots\n"  # 2
        "drain_timeout_s = 1.2345\n"  # 3
        "[listener:main]\n"  # 4
        "bind = 127.0.0.1:0\n"  # 5
        "[route:r]\n"  # 6
        "path = no-slash\n"  # 7
        "target = 127.0.0.1:0\n"  # 8
        "bogus_key = 1\n"  # 9
        "[route:s]\n"  # 10
        "path = /s\n"  # 11
        "target = 127.0.0.1:1\n"  # 12
        "connect_timeout_s = 0\n"  # 13
    )
    path = write_ini(tmp_path, text)
    r = run("-t", "-c", path)
    assert r.returncode == EXIT_USAGE
    want = {
        (2, "gateway", "max_sessions"),
        (3, "gateway", "drain_timeout_s"),
        (7, "route:r", "path"),
        (8, "route:r", "target"),
        (9, "route:r", "bogus_key"),
        (13, "route:s", "connect_timeout_s"),
    }
    got = set()
    pattern = re.compile(r"^%s:(\d+): \[([^\]]+)\] (\w+): (.+)$" % re.escape(path))
    for line in r.stderr.splitlines():
        m = pattern.match(line)
        if m:
            assert m.group(4).strip(), line
            got.add((int(m.group(1)), m.group(2), m.group(3)))
    assert got == want, r.stderr
    assert r.stdout == ""


def test_check_verbose_prints_effective_configuration(tmp_path, echo):
    path = write_ini(tmp_path, 
        harness.config(
            gateway={"max_sessions": "7"},
            routes={"r": {"path": "/vnc/*", "target": "127.0.0.1:%d" % echo.port, "idle_timeout_s": "2.5"}},
        )
    )
    r = run("-t", "-v", "-c", path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "[gateway]" in out and "[listener:main]" in out and "[route:r]" in out
    assert re.search(r"^max_sessions = 7$", out, re.M)
    assert re.search(r"^bind = 127\.0\.0\.1:0$", out, re.M)
    assert re.search(r"^path = /vnc/\*$", out, re.M)
    assert re.search(r"^target = 127\.0\.0\.1:%d$" % echo.port, out, re.M)
    assert re.search(r"^idle_timeout_s = 2\.5$", out, re.M)
    # Defaults the file never set are shown too, commented out, and the route shows what
    # it inherits from [gateway] the same way.
    assert re.search(r"^;connect_timeout_s = 10$", out, re.M)
    assert re.search(r"^;max_request_bytes = 16k$", out, re.M)
    # The dump is a config file: it loads, to the same configuration.
    dump = tmp_path / "dump.ini"
    dump.write_text(out)
    again = run("-t", "-v", "-c", str(dump))
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("\n", 1)[1] == out.split("\n", 1)[1]


def test_check_verbose_of_command_line_form(echo):
    r = run("-t", "-v", "127.0.0.1:0", "127.0.0.1:%d" % echo.port)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^target = 127\.0\.0\.1:%d$" % echo.port, r.stdout, re.M)
    assert re.search(r"^path = /\*$", r.stdout, re.M)


def test_shipped_example_config_passes_check():
    path = os.path.join(REPO, "conf", "wsplice.ini")
    assert os.path.isfile(path), "conf/wsplice.ini is missing from the repository (%s)" % path
    r = run("-t", "-c", path)
    assert r.returncode == 0, "conf/wsplice.ini fails -t:\n%s" % r.stderr
    assert "configuration ok" in r.stderr


# --------------------------------------------------------------------------- runtime failure


def test_bind_address_in_use_exit_1():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        r = run("127.0.0.1:%d" % port, "127.0.0.1:1")
    finally:
        busy.close()
    assert r.returncode == EXIT_RUNTIME, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if "127.0.0.1:%d" % port in l]
    assert lines, r.stderr
    assert any(re.search(r"\berror\b", l) and "in use" in l.lower() for l in lines), r.stderr
