#!/usr/bin/env bash
# make docker-test: configure podman (runc, ulimits), make sure the debian:bookworm-slim
# base exists (debootstrap + podman import, cached), build the image from the repository
# root, then run the end-to-end check (tests/docker/docker_test.py). As root; no Docker
# engine and no registry needed. Nonzero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${WSPLICE_IMAGE:-wsplice}
python=${PYTHON:-/usr/bin/python3}
start=$(date +%s)

[ "$(id -u)" -eq 0 ] || { echo "docker-test: run as root (rootful podman)" >&2; exit 1; }
echo "== docker-test: podman setup"
tests/docker/setup-podman.sh
echo "== docker-test: base image"
tests/docker/base-image.sh
echo "== docker-test: podman build --format docker -f docker/Dockerfile -t $image ."
build_start=$(date +%s)
if ! podman build --pull=never --format docker -f docker/Dockerfile -t "$image" . >build/docker-build.log 2>&1; then
    tail -n 40 build/docker-build.log >&2
    echo "docker-test: FAILED: podman build (full log in build/docker-build.log)" >&2
    exit 1
fi
echo "docker-test: built in $(($(date +%s) - build_start))s (log in build/docker-build.log)"
podman images --filter reference="$image" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
echo "== docker-test: run"
WSPLICE_IMAGE=$image "$python" tests/docker/docker_test.py
echo "docker-test: all passed in $(($(date +%s) - start))s"
