#!/usr/bin/env bash
# Build a small Debian base image (python3, python3-venv, ca-certificates) from Debian's own
# packages, for machines that cannot pull from Docker Hub: debootstrap into a folder, then
# `docker import` it. Needs root, debootstrap and a running Docker engine. Idempotent: does nothing
# when the image already exists (set FORCE=1 to rebuild).
#
#   BASE_TAG       image to make                  (default bertd-base:bookworm)
#   SUITE          Debian release                 (default bookworm: Python 3.11)
#   DEBIAN_MIRROR  apt mirror                     (default http://deb.debian.org/debian)
set -euo pipefail

BASE_TAG=${BASE_TAG:-bertd-base:bookworm}
SUITE=${SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    echo "build-base: $BASE_TAG already exists; skipping (FORCE=1 rebuilds it)"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-base: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-base: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

root=$(mktemp -d /tmp/bertd-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
started=$SECONDS
echo "build-base: debootstrap $SUITE from $DEBIAN_MIRROR into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2; echo "build-base: debootstrap failed (full log: $root.log)" >&2; exit 1; }
rm -f "$root.log"

# Smaller image: no package cache, no apt lists (the Dockerfile does not use apt on this base),
# no documentation.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
# debootstrap copies the host's resolv.conf and hostname; Docker supplies its own at run time.
: >"$root/etc/resolv.conf"
rm -f "$root/etc/hostname"

tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE + python3 python3-venv ca-certificates" \
    - "$BASE_TAG" >/dev/null
echo "build-base: made $BASE_TAG in $((SECONDS - started)) s ($(docker image inspect -f '{{.Size}}' "$BASE_TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
