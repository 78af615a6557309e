#!/usr/bin/env bash
# make demo: the chat demo. Starts ngircd (conf/demo/ngircd.conf) and wsplice
# (conf/demo/wsplice-demo.ini) on loopback and prints the page's address; Ctrl-C (or the
# end of either server) stops both. ngircd's log goes to build/demo/ngircd.log; wsplice
# logs here, one line per session.
# Usage: run-demo.sh WSPLICE_BINARY   (run from anywhere; paths are the repository's)
set -u
cd "$(dirname "$0")/../.." || exit 1
bin=${1:-build/wsplice}
ngircd_conf=conf/demo/ngircd.conf
ini=conf/demo/wsplice-demo.ini
# The ports the two configs use; change them there.
irc_port=$(sed -n 's/^[[:space:]]*Ports[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$ngircd_conf")
web_addr=$(sed -n 's/^bind[[:space:]]*=[[:space:]]*//p' "$ini")
web_port=${web_addr##*:}

die() {
    echo "demo: $*" >&2
    exit 1
}
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ -x "$bin" ] || die "$bin is not built (make demo builds it)"
command -v ngircd >/dev/null || die "ngircd is not installed (make demo installs it)"
accepts "$irc_port" && die "port $irc_port is taken: stop what listens there or change Ports in $ngircd_conf"
accepts "$web_port" && die "port $web_port is taken: stop what listens there or change bind in $ini"
check=$("$bin" -t -c "$ini" 2>&1) || die "$ini does not load:"$'\n'"$check"

mkdir -p build/demo
pids=()
stop() {
    trap - INT TERM EXIT
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    wait "${pids[@]}" 2>/dev/null
    echo "demo: stopped"
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# Wait until PORT accepts, while PID still runs; WHAT names it in the error.
wait_port() {
    for _ in $(seq 100); do
        accepts "$1" && return 0
        kill -0 "$2" 2>/dev/null || die "$3 did not start"
        sleep 0.1
    done
    die "$3 does not accept on port $1"
}

ngircd --nodaemon --config "$PWD/$ngircd_conf" >build/demo/ngircd.log 2>&1 &
pids+=($!)
wait_port "$irc_port" "$!" "ngircd (see build/demo/ngircd.log)"
"$bin" -c "$ini" &
pids+=($!)
wait_port "$web_port" "$!" "wsplice"

cat <<EOF

  wsplice chat demo: open  http://$web_addr/  in a browser
  (a second tab, or another browser, to chat with yourself; ?channel=NAME for another room)
  IRC clients can join too: irc://127.0.0.1:$irc_port/wsplice
  Ctrl-C stops both servers.

EOF
# Until Ctrl-C, or until either server exits on its own.
wait -n "${pids[@]}"
echo "demo: a server exited; stopping the other" >&2
