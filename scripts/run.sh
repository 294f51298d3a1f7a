#!/usr/bin/env bash
# Installs what is needed, builds, and runs `dnsfence serve` on the embedded default policy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
exec .build/release/dnsfence serve "$@"
