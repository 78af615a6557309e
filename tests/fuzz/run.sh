#!/usr/bin/env bash
# Run every fuzz target for FUZZ_SECONDS each, from its seed corpus and dictionary.
# New corpus entries go to a scratch copy; crashes are saved under build/fuzz/.
# Usage: run.sh FUZZ_BUILD_DIR SECONDS TARGET...
set -u
dir=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
status=0
for t in "$@"; do
    work="$dir/corpus-$t"
    mkdir -p "$work"
    cp -n "$here/corpus/$t"/* "$work/" 2>/dev/null
    out=$("$dir/fuzz_$t" -max_total_time="$seconds" -dict="$here/$t.dict" -artifact_prefix="$dir/$t-" \
        -print_final_stats=1 "$work" 2>&1)
    rc=$?
    execs=$(printf '%s\n' "$out" | grep -oE 'stat::number_of_executed_units: *[0-9]+' | grep -oE '[0-9]+$')
    if [ $rc -eq 0 ]; then
        echo "fuzz: $t ok, ${execs:-?} executions in ${seconds}s"
    else
        echo "fuzz: $t FAILED (exit $rc)"
        printf '%s\n' "$out" | tail -n 40
        status=1
    fi
done
exit $status
