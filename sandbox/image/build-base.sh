#!/usr/bin/env bash
# Builds the offline sandbox base image: a Debian bookworm root with python3 from
# `debootstrap --variant=minbase`, imported into Docker. Cached by tag: when the image
# exists, this returns at once. Production builds use a python slim image instead; the
# sandbox Dockerfile takes either as its BASE_IMAGE build argument.
#
#   sandbox/image/build-base.sh [TAG]      (default restem-sandbox-base:bookworm)
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian), FORCE=1 to rebuild.
set -euo pipefail

tag=${1:-restem-sandbox-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if ! docker info >/dev/null 2>&1; then
    echo "build-base: no Docker engine is running; skipping the base image" >&2
    exit 0
fi
if [ "${FORCE:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "build-base: $tag is cached"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "build-base: debootstrap is not installed" >&2; exit 1; }

root=$(mktemp -d /tmp/restem-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
echo "build-base: debootstrap bookworm into $root (about a minute)"
debootstrap --variant=minbase --include=python3 bookworm "$root/rootfs" "$mirror" \
    >"$root/debootstrap.log" 2>&1 || { tail -n 20 "$root/debootstrap.log" >&2; exit 1; }
# Package caches, docs and manuals are not needed to run Python.
rm -rf "$root"/rootfs/var/cache/apt/* "$root"/rootfs/var/lib/apt/lists/* \
       "$root"/rootfs/usr/share/doc/* "$root"/rootfs/usr/share/man/* "$root"/rootfs/usr/share/info/*
tar -C "$root/rootfs" --numeric-owner -c . | docker import \
    --change 'CMD ["python3"]' \
    --change 'LABEL org.opencontainers.image.title="restem sandbox base (debian bookworm minbase + python3)"' \
    - "$tag" >/dev/null
echo "build-base: built $tag in $(( $(date +%s) - start )) s ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
