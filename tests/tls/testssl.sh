#!/usr/bin/env bash
# testssl.sh (Debian package "testssl.sh", command "testssl") against a real wsplice TLS
# listener on 127.0.0.1 with an ECDSA P-256 certificate from a throwaway test PKI.
# Fails (exit 1) on any finding rated HIGH or CRITICAL and prints them; prints one summary
# line of counts by severity. Only loopback is used: no DNS, no OCSP/CRL fetches.
#
# Usage: tests/tls/testssl.sh [BINARY]      (default: build/wsplice)
# Env:   TESTSSL=/path/to/testssl  KEEP=1 (keep the work directory)  TESTSSL_ARGS=...
#
# A full default scan (protocols, ciphers, server defaults, headers, vulnerabilities,
# client simulation) takes about a minute, so nothing is skipped.
#
# Test-setup artifacts are removed at their source rather than excused afterwards:
#   cert_chain_of_trust CRITICAL "failed (chain incomplete)": the CA is made here, so it
#       is passed with --add-ca, as a deployment's clients trust its public CA;
#   cert_expirationStatus / cert_notAfter HIGH "expires < 30 days": the scanned
#       certificate is valid for 397 days, like a public CA's;
#   cert_revocation HIGH "Neither CRL nor OCSP URI provided": the scanned certificate
#       names a CRL, as a public CA's do (on loopback; the scan downloads nothing).
# What remains below HIGH is expected of a WebSocket-only port: HTTP_status_code WARN
# (a plain GET gets 426 Upgrade Required) and HSTS LOW (not offered; no browser pages).
# sessionresumption_ticket is sometimes WARN "check failed because of connect problem":
# testssl 3.0's `openssl s_client -sess_out ... </dev/null` over TLS 1.3 often quits
# before the server's session ticket arrives (the same happens against openssl s_server).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-$repo/build/wsplice}
testssl=${TESTSSL:-$(command -v testssl || command -v testssl.sh || true)}
python=/usr/bin/python3

if [ -z "$testssl" ]; then
    echo "testssl: not installed (Debian: apt-get install testssl.sh)" >&2
    exit 2
fi
if [ ! -x "$bin" ]; then
    echo "testssl: no gateway binary at $bin (run make)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/wsplice-testssl.XXXXXX")
gw_pid=
cleanup() {
    if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
        kill -TERM "$gw_pid" 2>/dev/null
        wait "$gw_pid" 2>/dev/null
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "testssl: work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# The same openssl-made PKI the integration tests use (tests/integration/tlslib.py).
if ! "$python" "$repo/tests/integration/tlslib.py" "$work/pki" >"$work/pki.log" 2>&1; then
    echo "testssl: making the test PKI failed:" >&2
    cat "$work/pki.log" >&2
    exit 2
fi

# The route's target is never connected to: testssl sends no WebSocket upgrade.
cat >"$work/wsplice.ini" <<INI
[gateway]
log_level = info
[listener:tls]
bind = 127.0.0.1:0
tls_cert = $work/pki/server-scan.pem
tls_key = $work/pki/server-scan.key
tls_only = yes
[route:r]
path = /*
target = 127.0.0.1:9
INI

"$bin" -c "$work/wsplice.ini" >"$work/gateway.log" 2>&1 &
gw_pid=$!
port=
for _ in $(seq 1 200); do
    port=$(sed -n 's/.*listener name=tls addr=127\.0\.0\.1:\([0-9]*\) listening.*/\1/p' "$work/gateway.log")
    [ -n "$port" ] && break
    if ! kill -0 "$gw_pid" 2>/dev/null; then
        break
    fi
    sleep 0.05
done
if [ -z "$port" ]; then
    echo "testssl: the gateway did not start:" >&2
    cat "$work/gateway.log" >&2
    exit 2
fi

# --add-ca: trust the test CA, so the chain of trust is judged like a real deployment's.
# --nodns none and --ip: loopback only; no --phone-out: no OCSP/CRL downloads.
start=$(date +%s)
# shellcheck disable=SC2086
"$testssl" --quiet --color 0 --warnings off --nodns none --ip 127.0.0.1 \
    --add-ca "$work/pki/ca.pem" --connect-timeout 5 --openssl-timeout 5 \
    --jsonfile "$work/testssl.json" ${TESTSSL_ARGS:-} "localhost:$port" >"$work/testssl.out" 2>&1
testssl_rc=$?
elapsed=$(($(date +%s) - start))

if [ ! -s "$work/testssl.json" ]; then
    echo "testssl: no JSON output (exit $testssl_rc):" >&2
    cat "$work/testssl.out" >&2
    exit 2
fi
if ! kill -0 "$gw_pid" 2>/dev/null; then
    echo "testssl: the gateway died during the scan:" >&2
    tail -n 50 "$work/gateway.log" >&2
    exit 1
fi

"$python" - "$work/testssl.json" "$elapsed" <<'PY'
import collections, json, sys

# HIGH/CRITICAL findings that are artifacts of this test setup, not of wsplice: id -> why.
# Only ids provably caused by the throwaway PKI or the scan environment belong here; at
# present there are none (see the header for the artifacts removed at their source).
ARTIFACTS = {}

findings = json.load(open(sys.argv[1]))
counts = collections.Counter()
bad, excused = [], []
for f in findings:
    sev = f.get("severity", "?")
    counts[sev] += 1
    if sev in ("HIGH", "CRITICAL"):
        (excused if f["id"] in ARTIFACTS else bad).append(f)
for f in excused:
    print("excused %-8s %-28s %s  (%s)" % (f["severity"], f["id"], f["finding"], ARTIFACTS[f["id"]]))
for f in findings:
    if f.get("severity") in ("LOW", "MEDIUM", "WARN"):
        print("note    %-8s %-28s %s" % (f["severity"], f["id"], f["finding"]))
for f in bad:
    print("FAIL    %-8s %-28s %s" % (f["severity"], f["id"], f["finding"]))
order = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "INFO", "OK", "DEBUG"]
keys = order + sorted(k for k in counts if k not in order)
print("testssl: %s; %d HIGH/CRITICAL (%d excused as test-setup artifacts); %ss"
      % (", ".join("%s=%d" % (k, counts[k]) for k in keys if counts[k]), len(bad), len(excused), sys.argv[2]))
sys.exit(1 if bad else 0)
PY
