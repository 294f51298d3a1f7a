#!/usr/bin/env bash
# dnsfence against dnsmasq (with and without --nftset) and Unbound, same policy, same upstream,
# same machine, one run: allow *.allowed.test (forwarded to an nsd on loopback), deny
# everything else without forwarding. Workloads: hot (100 allowed names repeated), cold (20,000
# distinct allowed names once, fresh server), denied (random names elsewhere), mix (80% hot,
# 20% denied). Server on CPU 0, dnsperf on CPU 1. Reports answers/s, latency, server CPU
# microseconds per answer (from the server's own utime+stime), peak RSS, and ratios.
#
# Usage: scripts/bench.sh [SECONDS_PER_RUN]     (root: the nftset runs use a network namespace)
#   BENCH_SERVERS="dnsfence unbound" BENCH_LOADS="hot cold" narrow the run (also:
#   dnsfence-logdenied, dnsfence-logall: the query log on, to a file; dnsfence-metrics;
#   dnsfence-limited: loopback not exempt from the rate limit, whose rate is set too high to be
#   reached, so every query pays the full check and the kernel filter runs on every datagram);
#   BENCH_PERF=/tmp/p records each server with perf into /tmp/p.SERVER.LOAD;
#   BENCH_PERF_ARGS="--call-graph dwarf" changes how perf records (default -g);
#   BENCH_PERF=stat prints perf stat counters (instructions, cycles, switches) per run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
SECS=${1:-10}
export DEBIAN_FRONTEND=noninteractive
command -v dnsperf >/dev/null && command -v dnsmasq >/dev/null && command -v unbound >/dev/null || \
    apt-get install -y -qq dnsperf dnsmasq-base unbound nsd >/dev/null
swift build -c release --product dnsfence >/dev/null
BIN=${BENCH_BIN:-$PWD/.build/release/dnsfence}
W=$(mktemp -d /tmp/dnsfence-bench.XXXXXX)
NS=dfbench$$
AUTH=15353; PORT=15300
cleanup() {
    kill $(cat "$W"/*.pid 2>/dev/null) 2>/dev/null || true
    ip netns pids $NS 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $NS 2>/dev/null || true
}
trap cleanup EXIT

python3 - "$W" <<'PY'
import random, sys
w = sys.argv[1]
random.seed(7)
with open(f"{w}/allowed.test.zone", "w") as z:
    z.write("$ORIGIN allowed.test.\n$TTL 300\n@ SOA ns.allowed.test. h.allowed.test. 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n")
    for i in range(20000):
        if i % 20 == 0:
            z.write(f"h{i} CNAME c{i}\nc{i} A 198.18.{i // 250 % 256}.{i % 250 + 1}\nc{i} AAAA 2001:db8::{i:x}\n")
        else:
            z.write(f"h{i} A 198.18.{i // 250 % 256}.{i % 250 + 1}\nh{i} AAAA 2001:db8::{i:x}\n")
names = [f"h{i}.allowed.test" for i in range(20000)]
with open(f"{w}/hot.txt", "w") as f:
    for i in range(100): f.write(f"{names[i]} A\n")
with open(f"{w}/cold.txt", "w") as f:
    for n in names: f.write(f"{n} A\n")
with open(f"{w}/denied.txt", "w") as f:
    for i in range(20000): f.write(f"x{random.getrandbits(40):x}.example.com A\n")
with open(f"{w}/mix.txt", "w") as f:
    for i in range(1000): f.write(f"{names[i % 100]} A\n" if i % 5 else f"d{random.getrandbits(40):x}.example.net A\n")
PY

nsd_conf "$W" $AUTH allowed.test
ip netns add $NS
ip -n $NS link set lo up
X="ip netns exec $NS"     # everything runs inside one namespace: loopback, sets and all
$X taskset -c 1 nsd -c "$W/nsd.conf"
sleep 1

unbound_conf "$W" $PORT $AUTH allowed.test

$X nft 'add table inet fence; add set inet fence allow4 { type ipv4_addr; flags timeout; }; add set inet fence allow6 { type ipv6_addr; flags timeout; }'
start_server() {  # name workload → pid in $W/server.pid
    # Every run starts from empty sets (an element already present is cheaper to add).
    $X nft flush set inet fence allow4 2>/dev/null || true
    $X nft flush set inet fence allow6 2>/dev/null || true
    # Tunnel budgets at their defaults, except for cold: one client asking 20,000 new names is a
    # tunnel by the default budget's measure, so there every forward is charged to a budget big
    # enough never to refuse (the cost is measured, the refusal is not).
    local budget=""
    [ "$2" = cold ] && budget=", budget: { names: 1000000, per: 1s, burst: 1000000 }"
    cat > "$W/plain.yaml" <<EOF2
listen: [{ address: 127.0.0.1:$PORT, policy: p }]
upstreams: [127.0.0.1:$AUTH]
policies: { p: { allow: ["*.allowed.test"]$budget } }
EOF2
    cat > "$W/fence.yaml" <<EOF2
listen: [{ address: 127.0.0.1:$PORT, policy: p }]
upstreams: [127.0.0.1:$AUTH]
log: { queries: off }
policies:
  p:
    allow: ["*.allowed.test"]
    firewall: { table: inet fence, ipv4-set: allow4, ipv6-set: allow6, create: false }$budget
EOF2
    local common="--no-resolv --no-hosts --server=/allowed.test/127.0.0.1#$AUTH --address=/#/ --cache-size=100000 --user=root"
    case $1 in
    dnsfence) $X taskset -c 0 $BIN serve --config "$W/plain.yaml" \
                  --threads 1 --query-log off --log-level warning >"$W/srv.log" 2>&1 & ;;
    dnsfence-logdenied|dnsfence-logall)  # every line written (no repeat limit, no byte cap), to a file
        cat > "$W/log.yaml" <<EOF3
listen: [{ address: 127.0.0.1:$PORT, policy: p }]
upstreams: [127.0.0.1:$AUTH]
log: { queries: ${1#dnsfence-log}, repeat-limit: 1000000000, max-bytes-per-second: 0 }
policies: { p: { allow: ["*.allowed.test"]$budget } }
EOF3
        $X taskset -c 0 $BIN serve --config "$W/log.yaml" --threads 1 --log-level warning >"$W/srv.log" 2>&1 & ;;
    dnsfence-limited)
        sed 's/^policies:/rate-limit: { exempt: [], queries: 10000000, burst: 10000000 }\npolicies:/' \
            "$W/plain.yaml" >"$W/limited.yaml"
        $X taskset -c 0 $BIN serve --config "$W/limited.yaml" \
                  --threads 1 --query-log off --log-level warning >"$W/srv.log" 2>&1 & ;;
    dnsfence-metrics) $X taskset -c 0 $BIN serve --config "$W/plain.yaml" \
                  --threads 1 --query-log off --log-level warning --metrics 127.0.0.1:19153 >"$W/srv.log" 2>&1 & ;;
    dnsfence-nft) $X taskset -c 0 $BIN serve --config "$W/fence.yaml" --threads 1 --query-log off --log-level warning \
                      --metrics 127.0.0.1:19153 >"$W/srv.log" 2>&1 & ;;
    dnsmasq) $X taskset -c 0 dnsmasq -k -p $PORT --listen-address=127.0.0.1 --bind-interfaces $common >"$W/srv.log" 2>&1 & ;;
    dnsmasq-nft) $X taskset -c 0 dnsmasq -k -p $PORT --listen-address=127.0.0.1 --bind-interfaces $common \
                     --nftset=/allowed.test/4#inet#fence#allow4,6#inet#fence#allow6 >"$W/srv.log" 2>&1 & ;;
    unbound) $X taskset -c 0 unbound -d -c "$W/unbound.conf" >"$W/srv.log" 2>&1 & ;;
    esac
    sleep 1.5
    # The server process itself (not the ip/taskset wrappers, which exec into it).
    echo $! >"$W/server.pid"
}

cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }

run() {  # server workload → one result line
    local server=$1 load=$2 pid before after hz out mode
    pid=$(cat "$W/server.pid")
    hz=$(getconf CLK_TCK)
    before=$(cpu_ticks $pid)
    if [ "$load" = cold ]; then mode="-n 1"; else mode="-l $SECS"; fi
    out=$($X taskset -c 1 dnsperf -s 127.0.0.1 -p $PORT -d "$W/$load.txt" $mode -c 20 -t 5)
    after=$(cpu_ticks $pid)
    local rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    python3 - "$server" "$load" "$before" "$after" "$hz" "$rss" <<PY
import re, sys
server, load, before, after, hz, rss = sys.argv[1:]
out = """$out"""
def num(pattern, default=0.0):
    m = re.search(pattern, out)
    return float(m.group(1)) if m else default
done = num(r"Queries completed:\s+(\d+)")
qps = num(r"Queries per second:\s+([\d.]+)")
avg = num(r"Average Latency \(s\):\s+([\d.]+)")
sd = num(r"Latency StdDev \(s\):\s+([\d.]+)")
cpu_us = (int(after) - int(before)) / int(hz) * 1e6
print(f"{server:12s} {load:7s} {qps:10.0f} {avg*1e3:8.3f} {sd*1e3:8.3f} {cpu_us/max(done,1):9.2f} {int(rss)/1024:8.1f} {int(done):8d}")
PY
}

echo "server       load     answers/s  avg_ms   sd_ms  cpu_us/ans  rss_MiB   answers" | tee "$W/results.txt"
for server in ${BENCH_SERVERS:-dnsfence dnsfence-nft dnsmasq dnsmasq-nft unbound}; do
    for load in ${BENCH_LOADS:-cold hot denied mix}; do
        start_server $server $load
        if [ "$load" != cold ]; then  # warm the cache with the hot names
            $X taskset -c 1 dnsperf -s 127.0.0.1 -p $PORT -d "$W/hot.txt" -n 2 -c 5 >/dev/null 2>&1 || true
        fi
        if [ -n "${BENCH_PERF:-}" ]; then  # profile the server during the run: perf report -i FILE
            if [ "$BENCH_PERF" = stat ]; then
                perf stat -e task-clock,instructions,cycles,context-switches,page-faults -p "$(cat "$W/server.pid")" \
                    -o "$W/perf.$server.$load" >/dev/null 2>&1 &
            else
                perf record -q ${BENCH_PERF_ARGS:--g} -p "$(cat "$W/server.pid")" -o "$BENCH_PERF.$server.$load" >/dev/null 2>&1 &
            fi
            echo $! >"$W/perf.pid"; sleep 0.3
        fi
        run $server $load | tee -a "$W/results.txt"
        if [ -n "${BENCH_PERF:-}" ]; then
            kill -INT "$(cat "$W/perf.pid")"; sleep 1
            [ "$BENCH_PERF" != stat ] || grep -E "instructions|cycles|switches|faults|task-clock" "$W/perf.$server.$load"
        fi
        if [ "$server" = dnsfence-nft ] && [ "$load" = cold ]; then
            $X curl -s 127.0.0.1:19153/metrics | python3 -c '
import re, sys
buckets, count, elements = [], 0, 0
for line in sys.stdin:
    m = re.match(r"dnsfence_nft_batch_duration_seconds_bucket\{le=\"([^\"]+)\"\} (\d+)", line)
    if m: buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), int(m.group(2))))
    if line.startswith("dnsfence_nft_batches_total "): count = int(float(line.split()[1]))
    if line.startswith("dnsfence_nft_elements_total "): elements = int(float(line.split()[1]))
def q(p):
    total = buckets[-1][1] if buckets else 0
    for le, c in buckets:
        if total and c >= p * total: return le
    return float("nan")
print(f"publish: {count} batches, {elements / max(count, 1):.1f} elements/batch, batch p50 <= {q(0.5)*1e3:.2f} ms, p99 <= {q(0.99)*1e3:.2f} ms")
' | tee -a "$W/results.txt"
        fi
        kill $(cat "$W/server.pid") 2>/dev/null || true
        wait 2>/dev/null || true
        sleep 0.5
    done
done
echo "(results in $W/results.txt)"
