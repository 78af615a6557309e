#!/usr/bin/env bash
# Make debian:bookworm-slim available to podman without a registry: debootstrap a minbase
# bookworm, trim it the way Docker's -slim images are trimmed, and `podman import` it.
# The tarball is cached (WSPLICE_DOCKER_CACHE, default /var/cache/wsplice-docker), so
# only the first run pays for debootstrap. Runs as root. Idempotent.
#   tests/docker/base-image.sh           ensure the image exists
#   tests/docker/base-image.sh --force   rebuild the tarball and re-import
set -euo pipefail

image=docker.io/library/debian:bookworm-slim
cache=${WSPLICE_DOCKER_CACHE:-/var/cache/wsplice-docker}
tarball=$cache/debian-bookworm-minbase.tar
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { echo "base-image: $*"; }

if [ "${1:-}" = "--force" ]; then
    rm -f "$tarball"
    podman image rm -f "$image" >/dev/null 2>&1 || true
fi

if podman image exists "$image"; then
    say "$image present"
    exit 0
fi

if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { say "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
    mkdir -p "$cache"
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    say "debootstrap --variant=minbase bookworm from $mirror (first run only; a few minutes)"
    start=$(date +%s)
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
        tail -n 30 "$cache/debootstrap.log" >&2
        say "debootstrap failed; full log in $cache/debootstrap.log" >&2
        exit 1
    }
    # What the official -slim images do: keep docs, man pages and locales out of later
    # apt-get installs, and drop the ones debootstrap already put there.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
        "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/var/log/*.log "$root"/tmp/*
    echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
    echo "deb http://deb.debian.org/debian-security bookworm-security main" >>"$root/etc/apt/sources.list"
    tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    say "rootfs cached in $tarball ($(du -h "$tarball" | cut -f1), $(($(date +%s) - start))s)"
fi

say "podman import $tarball as $image"
podman import -q --change 'CMD ["bash"]' "$tarball" "$image" >/dev/null
say "$image imported"
