#!/usr/bin/env bash
# make e2e: the browser tests. Runs each tests/e2e/*.test.mjs with node's test runner, one
# file at a time (each starts its own Chromium, wsplice, ngircd and Xvnc), against the
# given binary. Screenshots and logs go to tests/e2e/out/<test>/. The last line is
# "N passed, N failed". playwright-core comes from `npm ci` (.ci/install-deps does it).
# Usage: run.sh WSPLICE_BINARY
set -u
here=$(cd "$(dirname "$0")" && pwd)
WSPLICE_BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
export WSPLICE_BIN
cd "$here" || exit 1
if [ ! -d node_modules/playwright-core ]; then
    echo "e2e: tests/e2e/node_modules is missing: run .ci/install-deps --missing" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
passed=0
failed=0
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
for f in *.test.mjs; do
    echo "== e2e $f"
    # A hung browser or service must not hang the suite: each test also has its own timeout.
    timeout --kill-after=10 300 node --test --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$tap" "$f"
    rc=$?
    p=$(grep -E '^# pass [0-9]+$' "$tap" | tail -n 1 | grep -oE '[0-9]+')
    n=$(grep -E '^# fail [0-9]+$' "$tap" | tail -n 1 | grep -oE '[0-9]+')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${n:-0}))
    if [ "$rc" -ne 0 ] && [ "${n:-0}" -eq 0 ]; then
        echo "e2e: $f exited with $rc without a failed test (crash or timeout)" >&2
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
