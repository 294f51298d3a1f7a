#!/usr/bin/env bash
# Makes docker.io/library/debian:bookworm-slim locally, for podman on a machine that reaches
# Debian's archive but no container registry: debootstrap --variant=minbase from the apt mirror
# this machine uses, then `podman import`. With a registry, skip this: podman pulls the image.
# Does nothing if the image exists. Needs root, debootstrap and podman.
set -euo pipefail
IMAGE=docker.io/library/debian:bookworm-slim
podman image exists "$IMAGE" && exit 0
MIRROR=${MIRROR:-$(awk '/^URIs:/ && !/security/ {print $2; exit} /^deb / && !/security/ {print $2; exit}' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)}
ROOT=$(mktemp -d /var/tmp/dnsfence-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase bookworm "$ROOT" "${MIRROR:-http://deb.debian.org/debian}" >"$ROOT.log" 2>&1 \
    || { cat "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | podman import --change 'CMD ["bash"]' - "$IMAGE" >/dev/null
