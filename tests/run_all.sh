#!/usr/bin/env bash
# make test: unit tests, integration tests, a short soak, the browser tests (E2E=0 skips
# them), then the example config. Prints one total "N passed, N failed" as the last line
# and fails if anything failed.
# Usage: run_all.sh BUILD_DIR BINARY PYTHON
set -u
build=$1
bin=$2
python=$3
here=$(cd "$(dirname "$0")" && pwd)
passed=0
failed=0
add_line() { # a "N passed, N failed" line (pytest's "N passed, N failed in Xs" too)
    local p f
    p=$(printf '%s\n' "$1" | grep -oE '[0-9]+ passed' | tail -n 1 | grep -oE '[0-9]+')
    f=$(printf '%s\n' "$1" | grep -oE '[0-9]+ (failed|error|errors)' | awk '{s+=$1} END {print s+0}')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
}

echo "== unit"
unit_out=$("$here/run_unit.sh" "$build" "$build"/unit/test_* 2>&1)
unit_rc=$?
printf '%s\n' "$unit_out"
add_line "$(printf '%s\n' "$unit_out" | tail -n 1)"
[ $unit_rc -ne 0 ] && [ "$failed" -eq 0 ] && failed=1

echo "== integration"
int_log=$(mktemp)
WSPLICE_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") \
    "$python" -m pytest -q -p no:cacheprovider "$here/integration" ${PYTEST_ARGS:-} 2>&1 | tee "$int_log"
int_rc=${PIPESTATUS[0]}
summary=$(grep -E '[0-9]+ (passed|failed)' "$int_log" | tail -n 1)
rm -f "$int_log"
if [ -n "$summary" ]; then
    add_line "$summary"
fi
if [ "$int_rc" -ne 0 ] && ! printf '%s' "$summary" | grep -qE '[0-9]+ (failed|error)'; then
    failed=$((failed + 1)) # pytest failed without a count (collection error, no tests)
fi

echo "== soak (${SOAK_SECONDS:-60} s; make soak runs 10 minutes)"
if "$python" "$here/soak/soak.py" --seconds "${SOAK_SECONDS:-60}" --gateway "$bin"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

if [ "${E2E:-1}" != 0 ]; then
    echo "== e2e (browser tests; E2E=0 skips them)"
    e2e_log=$(mktemp)
    "$here/e2e/run.sh" "$bin" 2>&1 | tee "$e2e_log"
    summary=$(tail -n 1 "$e2e_log")
    rm -f "$e2e_log"
    if printf '%s\n' "$summary" | grep -qE '^[0-9]+ passed, [0-9]+ failed$'; then
        add_line "$summary"
    else
        failed=$((failed + 1)) # no summary: the runner itself broke
    fi
fi

echo "== example config"
if "$here/check_conf.sh" "$bin" "$here/../conf/wsplice.ini"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
