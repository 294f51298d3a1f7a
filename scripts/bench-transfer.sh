#!/usr/bin/env bash
# An IXFR of a few changes to a big policy zone: dnsfence and Unbound as RPZ secondaries of
# the same Knot DNS primary, on this machine. A zone of NAMES names (default 1,000,000: 10 %
# wildcards passed, 10 % rewritten to an address, the rest passed) is transferred whole to
# both; then, while dnsperf asks one of them for rewritten names at full speed, CHANGES records
# (default 10: half removed, half added) are changed on the primary in one transaction (knotc
# zone-begin … zone-commit: no zone file to parse again), which sends NOTIFY. Reports for each:
# the time from the commit to the first answer with an added name, answers/s per second around
# it (lowest and median), and for dnsfence its own apply time (dnsfence_zone_apply_seconds) for
# the first AXFR (a whole compile) and for the IXFR (a patch).
# Usage: scripts/bench-transfer.sh [NAMES] [CHANGES]      (loopback only; no root needed)
# PERF=1: profile dnsfence (perf record) around the IXFR and print where the time went.
set -euo pipefail
cd "$(dirname "$0")/.."
NAMES=${1:-1000000}
CHANGES=${2:-10}
export DEBIAN_FRONTEND=noninteractive
command -v knotd >/dev/null || apt-get install -y -qq knot >/dev/null
command -v unbound >/dev/null || apt-get install -y -qq unbound >/dev/null
command -v dnsperf >/dev/null || apt-get install -y -qq dnsperf >/dev/null
swift build -c release --product dnsfence >/dev/null
BIN=$PWD/.build/release/dnsfence
W=$(mktemp -d /tmp/dnsfence-xfr.XXXXXX)
KNOT=15530; FENCE=15531; UNBOUND=15532; METRICS=15533
cleanup() { pkill -f "$W" 2>/dev/null || true; sleep 0.5; }
trap cleanup EXIT
mkdir -p "$W/zones" "$W/db" "$W/cache"

python3 - "$W" "$NAMES" <<'PY'
import random, sys
w, n = sys.argv[1], int(sys.argv[2])
with open(f"{w}/zones/bench.rpz.zone", "w") as z:
    z.write("$ORIGIN bench.rpz.\n$TTL 60\n@ SOA primary.invalid. h.invalid. 1 3600 600 1w 30\n@ NS primary.invalid.\n")
    for i in range(n):
        if i % 10 == 0:
            z.write(f"*.w{i}.bench.test CNAME rpz-passthru.\n")
        elif i % 10 == 1:
            z.write(f"n{i}.bench.test A 198.18.{i // 250 % 250}.{i % 250 + 1}\n")
        else:
            z.write(f"n{i}.bench.test CNAME rpz-passthru.\n")
random.seed(1)
with open(f"{w}/queries.txt", "w") as q:
    for _ in range(20000):
        i = random.randrange(n // 10) * 10 + 1
        q.write(f"n{i}.bench.test A\n")
PY

cat > "$W/knot.conf" <<EOF
server:
    listen: 127.0.0.1@$KNOT
    rundir: $W
log:
  - target: $W/knotd.log
    any: info
control:
    listen: $W/knot.sock
database:
    storage: $W/db
remote:
  - id: fence
    address: 127.0.0.1@$FENCE
  - id: unbound
    address: 127.0.0.1@$UNBOUND
acl:
  - id: lo
    address: 127.0.0.0/8
    action: transfer
template:
  - id: default
    storage: $W/zones
    zonefile-sync: -1
    zonefile-load: difference
    journal-content: changes
zone:
  - domain: bench.rpz
    notify: [fence, unbound]
    acl: lo
EOF
knotd -c "$W/knot.conf" > "$W/knotd.out" 2>&1 &
echo $! > "$W/knotd.pid"
for _ in $(seq 600); do grep -q "loaded, serial" "$W/knotd.log" 2>/dev/null && break; sleep 0.1; done
grep -q "loaded, serial" "$W/knotd.log" || { cat "$W/knotd.out" "$W/knotd.log"; exit 1; }

# Both secondaries: one thread each, no query log, no rate limit; nothing is forwarded (only
# rewritten names are asked for; the upstream is a closed port).
cat > "$W/dnsfence.yaml" <<EOF
listen: [{ address: 127.0.0.1:$FENCE, policy: p }]
upstreams: [127.0.0.1:9]
metrics: { listen: 127.0.0.1:$METRICS }
rate-limit: off
log: { queries: off }
policies:
  p:
    zones: [{ transfer: { zone: bench.rpz, primaries: [127.0.0.1:$KNOT], cache-dir: $W/cache } }]
EOF
cat > "$W/unbound.conf" <<EOF
server:
  interface: 127.0.0.1@$UNBOUND
  port: $UNBOUND
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$W"
  pidfile: "$W/unbound.pid"
  logfile: ""
  num-threads: 1
  module-config: "respip iterator"
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  use-syslog: no
  local-zone: "test." nodefault   # by default Unbound answers test. NXDOMAIN itself (RFC 6761)
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@9
rpz:
  name: bench.rpz
  primary: 127.0.0.1@$KNOT
  allow-notify: 127.0.0.1
EOF
metric() { curl -s "127.0.0.1:$METRICS/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $2}'; }
started=$(date +%s.%N)
"$BIN" serve --config "$W/dnsfence.yaml" --threads 1 > "$W/dnsfence.log" 2>&1 &
echo $! > "$W/dnsfence.pid"
for _ in $(seq 1200); do [ "$(metric 'dnsfence_zone_serial{')" = "1.0" ] && break; sleep 0.1; done
[ "$(metric 'dnsfence_zone_serial{')" = "1.0" ] || { tail "$W/dnsfence.log"; exit 1; }
fence_loaded=$(echo "$started $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')
fence_axfr_apply=$(metric 'dnsfence_zone_apply_seconds{')
started=$(date +%s.%N)
unbound -c "$W/unbound.conf" > "$W/unbound.out" 2>&1 &
for _ in $(seq 1200); do
    dig @127.0.0.1 -p $UNBOUND +short +tries=1 +time=1 n1.bench.test 2>/dev/null | grep -q 198.18 && break; sleep 0.1
done
unbound_loaded=$(echo "$started $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')

# One round on one server: load for 12 s, the change committed after 4 s.
round() {
    local name=$1 port=$2 round=$3
    dnsperf -s 127.0.0.1 -p "$port" -d "$W/queries.txt" -l 12 -S 1 -q 200 > "$W/$name.perf" 2>&1 &
    local perf=$!
    sleep 4
    knotc -s "$W/knot.sock" zone-begin bench.rpz >/dev/null
    for k in $(seq $((CHANGES / 2))); do
        local victim=$(( ((round * 100 + k) * 10 + 1) % NAMES ))
        knotc -s "$W/knot.sock" zone-unset bench.rpz "n$victim.bench.test" A >/dev/null
        knotc -s "$W/knot.sock" zone-set bench.rpz "added$round-$k.bench.test" 60 A 198.19.0.$k >/dev/null
    done
    if [ -n "${PERF:-}" ] && [ "$name" = dnsfence ]; then
        perf record -g -o "$W/perf.data" -p "$(cat "$W/dnsfence.pid")" -- sleep 5 >/dev/null 2>&1 &
        sleep 0.5
    fi
    local commit=$(date +%s.%N)
    knotc -s "$W/knot.sock" zone-commit bench.rpz >/dev/null
    for _ in $(seq 2000); do
        dig @127.0.0.1 -p "$port" +short +tries=1 +time=1 "added$round-1.bench.test" 2>/dev/null | grep -q 198.19 && break
        sleep 0.005
    done
    local seen=$(date +%s.%N)
    wait $perf || true
    local qps=$(grep -E '^ *[0-9]+\.[0-9]+: [0-9.]+$' "$W/$name.perf" | awk '{print $2}' | sort -n)
    printf "%-9s | commit → added name answered %6.3f s | answers/s per second: lowest %s, median %s\n" "$name" \
        "$(echo "$commit $seen" | awk '{print $2 - $1}')" "$(echo "$qps" | head -1 | cut -d. -f1)" \
        "$(echo "$qps" | awk '{a[NR]=$1} END {print int(a[int((NR+1)/2)])}')"
}
echo "zone: $NAMES names; IXFR of $CHANGES changes"
echo "first load (AXFR, whole): dnsfence ${fence_loaded} s to serve (compile and swap ${fence_axfr_apply} s), Unbound ${unbound_loaded} s"
round dnsfence $FENCE 1
echo "dnsfence apply of the IXFR: $(metric 'dnsfence_zone_apply_seconds{') s ($(grep -c 'zone patched' "$W/dnsfence.log") patched)"
if [ -n "${PERF:-}" ]; then
    sleep 5
    perf report -i "$W/perf.data" --no-children --sort symbol -g none --percent-limit 1.5 --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | cut -c1-150
fi
round unbound $UNBOUND 2
grep -q "IXFR, outgoing, remote 127.0.0.1@$FENCE\|IXFR, outgoing" "$W/knotd.log" && grep "IXFR, outgoing" "$W/knotd.log" | sed 's/^/knot: /' | tail -4
