#!/usr/bin/env bash
# Runs the whole test suite (unit and integration). Integration tests start nsd and dnsfence
# on loopback ports of their own; they need the packages scripts/install-deps.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
swift test --skip-build "$@"
