#!/usr/bin/env bash
# Config golden files: run `wsplice -t -v -c tests/unit/config/FOO.ini` from the repo root
# for every FOO.ini, and compare with FOO.expected (the exact output) and FOO.rc (the exit
# status). One test per .ini; the last line is "N passed, N failed".
#
# The output compared is stdout followed by stderr. They are captured apart and joined in
# that order because a merged stream interleaves at stdio buffer boundaries: the -v dump
# is block-buffered stdout, the messages unbuffered stderr.
#
# Each good_*.ini's dump must also load, and dump the same again.
#
# The good_*.expected files are the -t -v dump, so adding an option changes them: rerun
# the command above for each good_*.ini and review the diff before committing it. An
# .expected file states what the output should be; never refresh a bad_* one blindly.
#
# Usage: tests/unit/config_golden.sh BINARY   (BINARY relative to the current directory)
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 path/to/wsplice" >&2
    exit 2
fi
bin=$1
case $bin in
/*) ;;
*) bin=$PWD/$bin ;;
esac
if [ ! -x "$bin" ]; then
    echo "config_golden: $bin is not an executable" >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/../.." && pwd) || exit 2
cd "$root" || exit 2
dir=tests/unit/config
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
for ini in "$dir"/*.ini; do
    [ -e "$ini" ] || continue
    name=$(basename "$ini" .ini)
    expected=$dir/$name.expected
    rc_file=$dir/$name.rc
    if [ ! -f "$expected" ] || [ ! -f "$rc_file" ]; then
        echo "FAIL $name: missing $name.expected or $name.rc"
        failed=$((failed + 1))
        continue
    fi
    want_rc=$(tr -d ' \t\r\n' <"$rc_file")

    "$bin" -t -v -c "$ini" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
    rc=$?
    cat "$tmp/stdout" "$tmp/stderr" >"$tmp/actual"

    ok=1
    if ! diff -u --label "$expected" --label "actual output" "$expected" "$tmp/actual" >"$tmp/diff"; then
        ok=0
    fi
    if [ "$rc" != "$want_rc" ]; then
        ok=0
        echo "FAIL $name: exit status $rc, expected $want_rc"
    fi
    # A config that loads dumps to a config that loads to the same dump (its first line
    # names the source file): an operator can keep and edit what -t -v prints.
    if [ "$rc" = 0 ] && [ "$want_rc" = 0 ]; then
        "$bin" -t -v -c "$tmp/stdout" >"$tmp/again" 2>"$tmp/again.err" </dev/null
        again_rc=$?
        if [ "$again_rc" != 0 ]; then
            ok=0
            echo "FAIL $name: its -t -v dump does not load (exit $again_rc):"
            cat "$tmp/again.err"
        elif ! diff -u <(tail -n +2 "$tmp/stdout") <(tail -n +2 "$tmp/again") >"$tmp/diff2"; then
            ok=0
            echo "FAIL $name: its -t -v dump loads to a different configuration:"
            cat "$tmp/diff2"
        fi
    fi
    if [ $ok -eq 1 ]; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        [ -s "$tmp/diff" ] && echo "FAIL $name: output differs" && cat "$tmp/diff"
        failed=$((failed + 1))
    fi
done

if [ $((passed + failed)) -eq 0 ]; then
    echo "config_golden: no .ini files in $dir" >&2
    failed=1
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
