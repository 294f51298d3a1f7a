#!/usr/bin/env bash
# Installs what is needed, builds, and runs `dnsfence serve` on the embedded default policy.
set -euo pipefail
cd "$(dirname "$0")/.."
# DNSFENCE_BIN: a binary already built (CI runs the README's commands with its test build).
if [ -z "${DNSFENCE_BIN:-}" ]; then
    scripts/install-deps.sh
    swift build -c release
fi
exec "${DNSFENCE_BIN:-.build/release/dnsfence}" serve "$@"
