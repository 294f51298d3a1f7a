#!/usr/bin/env bash
# Installs every Debian package dnsfence's build and tests need (Debian 12, as root or via sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    pkg-config libldns-dev ldnsutils \
    nftables libnftables-dev libnftnl-dev libmnl-dev iproute2 \
    dnsutils knot-dnsutils knot nsd publicsuffix \
    prometheus curl python3 systemd dnsperf \
    podman runc debootstrap docker-compose python3-yaml iodine \
    webext-ublock-origin-firefox >/dev/null
