#!/usr/bin/env bash
# Instructions per query, counted by callgrind on a fixed in-process replay: repeatable to a
# fraction of a percent, unlike timings. Two runs with different iteration counts; the
# difference divided by the extra queries removes start-up.
#   hot, denied: the synchronous path (decode, policy, cache, encode, metrics);
#   hot-nft: hot under a firewall whose real nftables set holds every address (root: each run
#         gets a network namespace of its own), so every hit checks the set's shadow;
#   limited, slipped: a client over its rate limit: every query dropped, or answered TC;
#   cold: distinct names through real loopback sockets, each one a cache miss answered by an
#         upstream of the replay's own (every thread of the process is counted);
#   cold-nft: the same, publishing every address into a real nftables set first (root: each
#         run gets a network namespace of its own).
# Usage: scripts/callgrind.sh [hot|hot-nft|denied|cold|cold-nft ...]   (default: hot denied)
# CALLGRIND_KEEP=DIR keeps the profiles (callgrind_annotate DIR/WORKLOAD.N).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
swift build -c release --product QueryReplay >/dev/null
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# Valgrind 3.19 cannot read the DWARF the Swift 6.3 toolchain emits: count on a copy without
# it (the symbol table stays, so callgrind_annotate still names functions).
cp .build/release/QueryReplay "$W/QueryReplay"
strip --strip-debug "$W/QueryReplay"
BIN=$W/QueryReplay
OUT=${CALLGRIND_KEEP:-$W}
mkdir -p "$OUT"
instructions() {  # workload iterations → total instructions
    local prefix=""
    if [[ $1 == *-nft ]]; then
        local ns=dfcg$$-$2
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        prefix="ip netns exec $ns"
    fi
    SWIFT_DETERMINISTIC_HASHING=1 $prefix valgrind --tool=callgrind --callgrind-out-file="$OUT/$1.$2" "$BIN" "$1" "$2" \
        >"$W/stdout" 2>"$W/err" || { cat "$W/stdout" "$W/err" >&2; exit 1; }
    [[ $1 != *-nft ]] || ip netns del "dfcg$$-$2"
    awk '/^summary:/ {print $2}' "$OUT/$1.$2"
}
for w in ${@:-hot denied}; do
    case $w in
        cold|cold-nft) small=2000; large=6000 ;;
        *) small=2000; large=12000 ;;
    esac
    a=$(instructions "$w" $small)
    b=$(instructions "$w" $large)
    echo "$w: $(( (b - a) / (large - small) )) instructions per query"
done
