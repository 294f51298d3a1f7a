#!/usr/bin/env bash
# Policy engine scaling: load time, memory and lookup cost for N names (default 1,000,000).
# Usage: scripts/bench-policy.sh [NAMES] [LOOKUPS]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product PolicyBenchmark >/dev/null
for n in 1000 "${1:-1000000}"; do
    .build/release/PolicyBenchmark "$n" "${2:-1000000}"
done
