#!/usr/bin/env bash
# The cost of a live reload: a policy of N names (default 1,000,000: a plain list, 90 % exact
# names, 10 % wildcards), reloaded R times (default 10) through `dnsfence reload` while dnsperf
# keeps asking for cached and denied names at full speed. Reports the wall time of each
# `dnsfence reload` (read, compile, index, swap), and answers/s before and during the reloads.
# Usage: scripts/bench-reload.sh [NAMES] [RELOADS]      (loopback only; no root needed)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
NAMES=${1:-1000000}
RELOADS=${2:-10}
export DEBIAN_FRONTEND=noninteractive
command -v dnsperf >/dev/null || apt-get install -y -qq dnsperf nsd >/dev/null
swift build -c release --product dnsfence >/dev/null
BIN=$PWD/.build/release/dnsfence
W=$(mktemp -d /tmp/dnsfence-reload.XXXXXX)
AUTH=15453; PORT=15400
cleanup() { kill $(cat "$W"/*.pid 2>/dev/null) 2>/dev/null || true; }
trap cleanup EXIT

python3 - "$W" "$NAMES" <<'PY'
import sys
w, n = sys.argv[1], int(sys.argv[2])
with open(f"{w}/allowed.test.zone", "w") as z:
    z.write("$ORIGIN allowed.test.\n$TTL 3600\n@ SOA ns.allowed.test. h.allowed.test. 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n")
    for i in range(100):
        z.write(f"h{i} A 198.18.0.{i + 1}\n")
with open(f"{w}/policy.allow", "w") as p:
    for i in range(100):
        p.write(f"h{i}.allowed.test\n")
    for i in range(n - 100):
        p.write(f"*.w{i}.example.org\n" if i % 10 == 0 else f"n{i}.example.org\n")
with open(f"{w}/queries.txt", "w") as q:
    for i in range(1000):
        q.write(f"h{i % 100}.allowed.test A\n" if i % 5 else f"d{i}.denied.test A\n")
PY
nsd_conf "$W" $AUTH allowed.test
nsd -c "$W/nsd.conf"
cat > "$W/dnsfence.yaml" <<EOF2
listen: [{ address: 127.0.0.1:$PORT, policy: p }]
upstreams: [127.0.0.1:$AUTH]
policies: { p: { zones: [policy.allow] } }
control: $W/control.sock
log: { queries: off }
EOF2
"$BIN" serve --config "$W/dnsfence.yaml" --threads 1 >"$W/dnsfence.log" 2>&1 &
echo $! > "$W/dnsfence.pid"
for _ in $(seq 100); do dig @127.0.0.1 -p $PORT +tries=1 +time=1 h1.allowed.test >/dev/null 2>&1 && break; sleep 0.2; done
dnsperf -s 127.0.0.1 -p $PORT -d "$W/queries.txt" -l 3 >/dev/null 2>&1   # warm the cache
rate() { awk '/Queries per second/ {print $4}' "$1"; }
dnsperf -s 127.0.0.1 -p $PORT -d "$W/queries.txt" -l 5 > "$W/before.txt" 2>&1
dnsperf -s 127.0.0.1 -p $PORT -d "$W/queries.txt" -l 60 > "$W/during.txt" 2>&1 &
DNSPERF=$!
sleep 1
: > "$W/reloads.txt"
for i in $(seq "$RELOADS"); do
    echo "n$i.reloaded.org" >> "$W/policy.allow"
    start=$(date +%s.%N)
    "$BIN" reload --control "$W/control.sock" >/dev/null
    end=$(date +%s.%N)
    echo "$start $end" | awk '{printf "%.3f\n", $2 - $1}' >> "$W/reloads.txt"
done
kill -INT $DNSPERF 2>/dev/null || true
wait $DNSPERF 2>/dev/null || true
echo "policy: $NAMES names; reloads: $RELOADS"
echo "reload wall time, s: $(paste -sd' ' "$W/reloads.txt") (median $(sort -n "$W/reloads.txt" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'))"
echo "answers/s: before $(rate "$W/before.txt"), during the reloads $(rate "$W/during.txt")"
grep -E "Queries lost|Response codes" "$W/during.txt" | sed 's/^ */during: /'
