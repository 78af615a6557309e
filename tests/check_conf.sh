#!/usr/bin/env bash
# The example config must load cleanly and show every option the binary knows, in a
# section of the right kind (set, or commented out as "; key = ...").
# Usage: check_conf.sh BINARY CONF
set -u
bin=$1
conf=$2
if ! "$bin" -t -c "$conf"; then
    echo "conf: $conf does not load"
    exit 1
fi
# The effective dump of a config that has every section kind lists every option per kind.
dump=$("$bin" -t -v -c "$conf" 2>/dev/null)
/usr/bin/python3 - "$conf" <<PY
import re, sys
conf = open(sys.argv[1]).read()
dump = """$dump"""

def keys_by_kind(text, commented):
    kinds = {}
    kind = None
    for line in text.splitlines():
        m = re.match(r"\s*\[(\w+)(?::[^\]]*)?\]", line)
        if m:
            kind = m.group(1)
            kinds.setdefault(kind, set())
            continue
        pat = r"\s*;?\s*(\w+)\s*=" if commented else r";?(\w+) ="
        m = re.match(pat, line)
        if m and kind:
            kinds[kind].add(m.group(1))
    return kinds

want = keys_by_kind(dump, False)
have = keys_by_kind(conf, True)
missing = [(k, o) for k in want for o in sorted(want[k]) if o not in have.get(k, set())]
for k, o in missing:
    print("conf: %s: option %s is not shown in any [%s] section" % (sys.argv[1], o, k))
if missing:
    sys.exit(1)
print("conf: %s: loads, and shows all %d options" % (sys.argv[1], sum(len(v) for v in want.values())))
PY
