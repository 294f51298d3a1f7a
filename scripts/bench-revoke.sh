#!/usr/bin/env bash
# Revocation latency: N names (default 10,000), each answered with its own address, are all
# asked once, so N elements are in a set in a network namespace this script makes. Then a
# reload removes every name, and another reload (nothing to revoke) is the baseline. Reports
# the wall time of each `dnsfence reload` (the elements are gone before it returns; checked),
# and the same with `revoke: connections`. Root (namespace, nftables).
# Usage: scripts/bench-revoke.sh [NAMES]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
NAMES=${1:-10000}
swift build -c release --product dnsfence >/dev/null
BIN=$PWD/.build/release/dnsfence
W=$(mktemp -d /tmp/dnsfence-revoke.XXXXXX)
NS=dfrv-$$
AUTH=15553; PORT=15500
cleanup() { kill $(cat "$W"/*.pid 2>/dev/null) 2>/dev/null || true; ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$NS"

python3 - "$W" "$NAMES" <<'PY'
import sys
w, n = sys.argv[1], int(sys.argv[2])
with open(f"{w}/revoke.test.zone", "w") as z:
    z.write("$ORIGIN revoke.test.\n$TTL 3600\n@ SOA ns.revoke.test. h.revoke.test. 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n")
    for i in range(n):
        z.write(f"h{i} A 198.18.{i // 250}.{i % 250 + 1}\n")
with open(f"{w}/all.allow", "w") as p:
    p.write("".join(f"h{i}.revoke.test\n" for i in range(n)))
with open(f"{w}/queries.txt", "w") as q:
    q.write("".join(f"h{i}.revoke.test A\n" for i in range(n)))
PY
: > "$W/none.allow"
echo "keep.revoke.test" > "$W/none.allow"
nsd_conf "$W" $AUTH revoke.test
nsd -c "$W/nsd.conf"
elements() { ip netns exec "$NS" nft list set inet bench allow4 | { grep -o '198\.18\.' || true; } | wc -l; }
run() {  # run REVOKE: one round; prints "revoke=… elements=… reload=…s baseline=…s"
    cp "$W/all.allow" "$W/policy.allow"
    cat > "$W/dnsfence.yaml" <<EOF2
listen: [{ address: 127.0.0.1:$PORT, policy: p }]
upstreams: [127.0.0.1:$AUTH]
control: $W/control.sock
log: { queries: off }
policies:
  p:
    zones: [policy.allow]
    firewall: { netns: /run/netns/$NS, table: inet bench, ipv4-set: allow4, create: true, revoke: $1 }
EOF2
    ip netns exec "$NS" nft delete table inet bench 2>/dev/null || true
    "$BIN" serve --config "$W/dnsfence.yaml" >"$W/dnsfence.log" 2>&1 &
    echo $! > "$W/dnsfence.pid"
    for _ in $(seq 100); do dig @127.0.0.1 -p $PORT +tries=1 +time=1 h1.revoke.test >/dev/null 2>&1 && break; sleep 0.2; done
    dnsperf -s 127.0.0.1 -p $PORT -d "$W/queries.txt" -n 1 >/dev/null 2>&1
    count=$(elements)
    cp "$W/none.allow" "$W/policy.allow"
    t0=$(date +%s.%N); "$BIN" reload --control "$W/control.sock" > "$W/reload.out"; t1=$(date +%s.%N)
    left=$(elements)
    echo "keep2.revoke.test" >> "$W/policy.allow"
    t2=$(date +%s.%N); "$BIN" reload --control "$W/control.sock" >/dev/null; t3=$(date +%s.%N)
    kill "$(cat "$W/dnsfence.pid")"; wait "$(cat "$W/dnsfence.pid")" 2>/dev/null || true
    echo "revoke: $1; elements before: $count; after: $left; $(grep -o 'revoked [0-9]* set element(s)' "$W/reload.out");" \
        "reload wall time $(echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}') s; baseline (nothing revoked)" \
        "$(echo "$t2 $t3" | awk '{printf "%.3f", $2 - $1}') s"
}
echo "names: $NAMES"
run elements
run connections
