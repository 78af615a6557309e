#!/usr/bin/env bash
# Configure Debian 12's rootful podman for CI machines without a Docker engine: runc as
# the runtime, and default ulimits. Writes /etc/containers/containers.conf only when it
# does not already say runtime = "runc"; an existing file is kept as *.orig. Runs as root.
set -euo pipefail

conf=/etc/containers/containers.conf
for tool in podman runc; do
    command -v "$tool" >/dev/null || { echo "setup-podman: $tool is not installed (apt-get install podman runc debootstrap)" >&2; exit 1; }
done
if [ -f "$conf" ] && grep -qE '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$conf"; then
    echo "setup-podman: $conf already selects runc"
    exit 0
fi
[ -f "$conf" ] && cp "$conf" "$conf.orig"
mkdir -p /etc/containers
cat >"$conf" <<'EOF'
# Written by wsplice tests/docker/setup-podman.sh (CI: rootful podman, no Docker engine).
[containers]
default_ulimits = [
  "nofile=20000:20000",
  "nproc=32768:32768",
]

[engine]
runtime = "runc"
EOF
echo "setup-podman: wrote $conf (runtime runc, ulimits nofile=20000:20000 nproc=32768:32768)"
