#!/usr/bin/env bash
# Instructions per query on the synchronous hot path (decode, policy, cache, encode, metrics),
# counted by callgrind on a fixed in-process replay: repeatable to the instruction, unlike timings.
# Two runs with different iteration counts; the difference divided by the extra queries removes
# start-up. Usage: scripts/callgrind.sh [hot|denied ...]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
swift build -c release --product QueryReplay >/dev/null
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# Valgrind 3.19 cannot read the DWARF the Swift 6.3 toolchain emits: count on a stripped copy
# (totals need no symbols; use perf or a debug build to attribute them).
cp .build/release/QueryReplay "$W/QueryReplay"
strip "$W/QueryReplay"
BIN=$W/QueryReplay
instructions() {  # workload iterations → total instructions
    SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --callgrind-out-file="$W/out" "$BIN" "$1" "$2" \
        >/dev/null 2>"$W/err"
    awk '/^summary:/ {print $2}' "$W/out"
}
for w in ${@:-hot denied}; do
    small=$(instructions "$w" 2000)
    large=$(instructions "$w" 12000)
    echo "$w: $(( (large - small) / 10000 )) instructions per query"
done
