#!/usr/bin/env bash
# Run the C unit tests and the config golden files; print each program's summary and a
# total "N passed, N failed" line. Usage: run_unit.sh BUILD_DIR TEST_BINARY...
set -u
build=$1
shift
passed=0
failed=0
tally() { # $1: name, $2: output
    local line p f
    line=$(printf '%s\n' "$2" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -z "$line" ]; then
        echo "unit: $1: no summary line (crashed?)"
        failed=$((failed + 1))
        return
    fi
    p=${line%% passed*}
    f=${line#*, }
    f=${f%% failed*}
    passed=$((passed + p))
    failed=$((failed + f))
    printf 'unit: %-28s %s\n' "$1" "$line"
}
for t in "$@"; do
    case $t in *.d) continue ;; esac # make's dependency files sit beside the programs
    [ -x "$t" ] || continue
    out=$("$t" 2>&1)
    rc=$?
    [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed' >&2
    tally "$(basename "$t")" "$out"
    if [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -qE '^[0-9]+ passed, [1-9]'; then
        failed=$((failed + 1))
    fi
done
out=$("$(dirname "$0")/unit/config_golden.sh" "$build/wsplice" 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed' >&2
tally config_golden "$out"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
