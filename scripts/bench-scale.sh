#!/usr/bin/env bash
# Scaling figures for docs/performance.md, in one network namespace (root):
#   cache   — resident memory and hot CPU per answer with 1,000 / 100,000 / 1,000,000 cached
#             answers (the cache filled through the server from an nsd zone of 1,000,000 names);
#   sets    — cold CPU per answer and transaction time with publishing into sets that already
#             hold 1,000 vs 100,000 elements;
#   threads — answers/s with 1 vs 2 event-loop threads (server and dnsperf share both cores);
#   p99     — client-side latency percentiles at a steady 2,000 queries/s of the mixed load, with
#             a UDP echo server as the floor (P99_ROUNDS rounds, default 1; P99_SECONDS each).
# Usage: scripts/bench-scale.sh [cache|sets|threads|p99 ...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
export DEBIAN_FRONTEND=noninteractive
command -v dnsperf >/dev/null || apt-get install -y -qq dnsperf nsd >/dev/null
swift build -c release --product dnsfence >/dev/null
BIN=$PWD/.build/release/dnsfence
W=$(mktemp -d /tmp/dnsfence-scale.XXXXXX)
NS=dfscale$$
AUTH=15353; PORT=15300; METRICS=19153
X="ip netns exec $NS"
cleanup() {
    kill $(cat "$W"/*.pid 2>/dev/null) 2>/dev/null || true
    ip netns pids $NS 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $NS 2>/dev/null || true
}
trap cleanup EXIT
WHAT=${*:-cache sets threads p99}

python3 - "$W" <<'PY'
import random, sys
w = sys.argv[1]
random.seed(11)
with open(f"{w}/scale.test.zone", "w") as z:
    z.write("$ORIGIN scale.test.\n$TTL 3600\n@ SOA ns h 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n")
    for i in range(1_000_000):
        z.write(f"n{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n")
for n in (1000, 100_000, 1_000_000):
    with open(f"{w}/fill{n}.txt", "w") as f:
        for i in range(n): f.write(f"n{i}.scale.test A\n")
with open(f"{w}/hot.txt", "w") as f:
    for i in range(100): f.write(f"n{i}.scale.test A\n")
with open(f"{w}/cold.txt", "w") as f:
    for i in range(200_000, 220_000): f.write(f"n{i}.scale.test A\n")
with open(f"{w}/mix.txt", "w") as f:
    for i in range(1000):
        f.write(f"n{i % 100}.scale.test A\n" if i % 5 else f"d{random.getrandbits(40):x}.example.net A\n")
for n in (1000, 100_000):
    with open(f"{w}/prefill{n}.nft", "w") as f:
        for start in range(0, n, 5000):
            items = ", ".join(f"172.{16 + (i >> 16 & 15)}.{i >> 8 & 255}.{i & 255} timeout 1h" for i in range(start, min(n, start + 5000)))
            f.write(f"add element inet fence allow4 {{ {items} }}\n")
PY
nsd_conf "$W" $AUTH scale.test
ip netns add $NS
ip -n $NS link set lo up
$X taskset -c 1 nsd -c "$W/nsd.conf"
for _ in $(seq 60); do $X dig +short +time=1 +tries=1 @127.0.0.1 -p $AUTH n1.scale.test A >/dev/null 2>&1 && break; sleep 1; done

start() {  # YAML-extra threads → server pid in $W/server.pid
    cat > "$W/fence.yaml" <<EOF2
listen: [{ address: 127.0.0.1:$PORT, policy: p }]
upstreams: [127.0.0.1:$AUTH]
log: { queries: off }
cache: { max-entries: 1000000 }
policies:
  p:
    allow: ["*.scale.test"]
$1
EOF2
    $X taskset -c ${3:-0} $BIN serve --config "$W/fence.yaml" --threads $2 --log-level warning \
        --metrics 127.0.0.1:$METRICS >"$W/srv.log" 2>&1 &
    echo $! >"$W/server.pid"
    for _ in $(seq 50); do $X dig +short +time=1 +tries=1 @127.0.0.1 -p $PORT n1.scale.test A >/dev/null 2>&1 && return; sleep 0.2; done
    echo "dnsfence did not start:"; cat "$W/srv.log"; exit 1
}
stop() { kill "$(cat "$W/server.pid")"; wait "$(cat "$W/server.pid")" 2>/dev/null || true; }
ticks() { awk '{print $14 + $15}' /proc/$(cat "$W/server.pid")/stat; }
rss() { awk "/$1/ {printf \"%.1f\", \$2 / 1024}" /proc/$(cat "$W/server.pid")/status; }
perf_run() {  # file mode → "answers/s cpu_us_per_answer"
    local before after out
    before=$(ticks)
    out=$($X taskset -c ${3:-1} dnsperf -s 127.0.0.1 -p $PORT -d "$1" $2 -c 20 -t 5)
    after=$(ticks)
    python3 -c '
import re, sys
out, before, after, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
done = float(re.search(r"Queries completed:\s+(\d+)", out).group(1))
qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
print(f"{qps:.0f} {(after - before) / hz * 1e6 / max(done, 1):.1f}")' "$out" "$before" "$after" "$(getconf CLK_TCK)"
}
metric() { $X curl -s 127.0.0.1:$METRICS/metrics | awk -v m="$1" '$1 == m {print $2}'; }

if [[ " $WHAT " == *" cache "* ]]; then
    echo "== cache: entries, resident MiB, hot answers/s, hot CPU us/answer"
    for n in ${CACHE_SIZES:-1000 100000 1000000}; do
        start "" 1
        $X taskset -c 1 dnsperf -s 127.0.0.1 -p $PORT -d "$W/fill$n.txt" -n 1 -c 20 -t 5 >/dev/null
        entries=$(metric dnsfence_cache_entries)
        read -r qps cpu < <(perf_run "$W/hot.txt" "-l 5")
        echo "cache $entries entries: resident $(rss VmRSS) MiB (peak $(rss VmHWM)), hot $qps answers/s, $cpu us/answer"
        stop
    done
fi

if [[ " $WHAT " == *" sets "* ]]; then
    echo "== sets: elements already in the set, cold answers/s, CPU us/answer, transactions, elements each, p50 ms"
    for n in 1000 100000; do
        $X nft "flush ruleset; add table inet fence; add set inet fence allow4 { type ipv4_addr; flags timeout; size 1000000; }; add set inet fence allow6 { type ipv6_addr; flags timeout; }"
        $X nft -f "$W/prefill$n.nft"
        start "    firewall: { table: inet fence, ipv4-set: allow4, ipv6-set: allow6, create: false }" 1
        read -r qps cpu < <(perf_run "$W/cold.txt" "-n 1")
        batches=$(metric dnsfence_nft_batches_total); elements=$(metric dnsfence_nft_elements_total)
        p50=$($X curl -s 127.0.0.1:$METRICS/metrics | python3 -c '
import re, sys
b = [(float("inf") if m.group(1) == "+Inf" else float(m.group(1)), int(m.group(2)))
     for m in (re.match(r"dnsfence_nft_batch_duration_seconds_bucket\{le=\"([^\"]+)\"\} (\d+)", l) for l in sys.stdin) if m]
total = b[-1][1] if b else 0
print(next((f"{le * 1e3:g}" for le, c in b if total and c >= total / 2), "nan"))')
        echo "set with $n elements: cold $qps answers/s, $cpu us/answer, $batches transactions of $(python3 -c "print(round($elements / max($batches, 1), 1))") elements, p50 <= $p50 ms"
        stop
    done
fi

if [[ " $WHAT " == *" threads "* ]]; then
    echo "== threads: event-loop threads, hot answers/s, cold answers/s (server and dnsperf on both cores)"
    for t in 1 2; do
        start "" $t 0-1
        read -r hot _ < <(perf_run "$W/hot.txt" "-l 5" 0-1)
        read -r cold _ < <(perf_run "$W/cold.txt" "-n 1" 0-1)
        echo "threads $t: hot $hot answers/s, cold $cold answers/s"
        stop
    done
fi

if [[ " $WHAT " == *" p99 "* ]]; then
    echo "== p99: client latency at 2,000 queries/s, mixed load (80 % cached, 20 % denied), ${P99_SECONDS:-10} s, ${P99_ROUNDS:-1} round(s)"
    # scripts/latency.c spins on CPU 1, so a reply is timed when it arrives, not when the client
    # wakes. The UDP echo server is the floor: the same path with no DNS work at all. Each
    # server runs twice: as it is, and with CPU 0 kept from halting by a spinner at SCHED_IDLE
    # (it yields the moment a server thread wakes), which shows what the VM's vCPU wake-up costs.
    ${CC:-$(command -v cc || command -v clang)} -O2 -Wall -o "$W/latency" scripts/latency.c
    client() { echo -n "$1 "; $X taskset -c 1 "$W/latency" 127.0.0.1 $PORT "$W/mix.txt" 2000 ${P99_SECONDS:-10}; }
    unbound_conf "$W" $PORT $AUTH scale.test
    for _ in $(seq ${P99_ROUNDS:-1}); do
        for cpu0 in halting awake; do
            if [[ $cpu0 == awake ]]; then
                chrt -i 0 taskset -c 0 sh -c 'while :; do :; done' &
                echo $! >"$W/spinner.pid"
            fi
            $X taskset -c 0 "$W/latency" --echo $PORT &
            echo $! >"$W/server.pid"; sleep 0.5
            client "echo     ($cpu0):"
            stop
            start "" 1
            $X dnsperf -s 127.0.0.1 -p $PORT -d "$W/hot.txt" -n 2 >/dev/null
            client "dnsfence ($cpu0):"
            stop
            # The same client against Unbound, the peer of the CPU targets.
            $X taskset -c 0 unbound -d -c "$W/unbound.conf" >"$W/unbound.log" 2>&1 &
            echo $! >"$W/server.pid"; sleep 1.5
            $X dnsperf -s 127.0.0.1 -p $PORT -d "$W/hot.txt" -n 2 >/dev/null
            client "unbound  ($cpu0):"
            stop
            if [[ $cpu0 == awake ]]; then kill "$(cat "$W/spinner.pid")"; rm "$W/spinner.pid"; fi
        done
    done
fi
echo "(work files in $W)"
