#!/usr/bin/env bash
# make valgrind: the core integration cases listed in tests/valgrind_cases.txt, with every
# gateway they start running under valgrind memcheck. A memcheck error or a leak makes
# valgrind exit with its --error-exitcode and print reports into the gateway's log; the
# fixture that started the gateway fails its test on either (conftest.py), however the
# gateway ended.
# Usage: run_valgrind.sh BINARY PYTHON [PYTEST_ARGS...]
set -u
bin=$1
python=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
cases=()
while IFS= read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [ -n "$line" ] && cases+=("$here/integration/$line")
done <"$here/valgrind_cases.txt"
if [ ${#cases[@]} -eq 0 ]; then
    echo "valgrind: no cases in $here/valgrind_cases.txt" >&2
    exit 2
fi
if ! command -v valgrind >/dev/null; then
    echo "valgrind: not installed (.ci/install-deps installs it)" >&2
    exit 2
fi
export WSPLICE_BIN
WSPLICE_BIN=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
# definite and possible leaks are errors; memory still reachable at exit is not (libraries
# keep some until the process ends). -q leaves only error reports in the gateway's log.
# harness.py reads the exit code from this line.
export GATEWAY_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,possible --show-leak-kinds=definite,possible --num-callers=30"
echo "== valgrind: ${#cases[@]} core integration cases (gateway under memcheck)"
exec "$python" -m pytest -q -p no:cacheprovider "${cases[@]}" "$@"
