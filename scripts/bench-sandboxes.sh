#!/usr/bin/env bash
# One dnsfence for many sandboxes (root): for each N, N network namespaces, each with a
# listener (127.10.X.Y:53), a policy and sets of its own (`create: true`), given as N drop-ins.
# Prints start-up time (exec to "ready"), reload time after one more drop-in is added (SIGHUP
# to "reloaded"), threads, descriptors and resident memory, and cold CPU per answer through one
# listener (unique names, nsd upstream; COLD_N lists the N to measure it at).
# Usage: scripts/bench-sandboxes.sh [N ...]   (default: 1 10 100 1000)
# DNSFENCE_BIN overrides the binary (default: a release build); KEEP=1 keeps the work folder
# (the server log of the last N) and prints where it is.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
if [ -z "${DNSFENCE_BIN:-}" ]; then swift build -c release --product dnsfence >/dev/null; fi
BIN=${DNSFENCE_BIN:-$PWD/.build/release/dnsfence}
W=$(mktemp -d /tmp/dnsfence-sandboxes.XXXXXX)
HOST=dfsbh$$; AUTH=15354
X="ip netns exec $HOST"
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    ip netns pids $HOST 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns list | awk -v p="dfsb$$-" 'index($1, p) == 1 {print "netns del " $1}' > "$W/del.batch"
    [ -s "$W/del.batch" ] && ip -force -batch "$W/del.batch" 2>/dev/null || true
    ip netns del $HOST 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
COLD_N=${COLD_N:-1 1000}

python3 - "$W" <<'PY'
import sys
w = sys.argv[1]
with open(f"{w}/cold.test.zone", "w") as z:
    z.write("$ORIGIN cold.test.\n$TTL 3600\n@ SOA ns h 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n")
    for i in range(60_000):
        z.write(f"n{i} A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}\n")
PY
nsd_conf "$W" $AUTH cold.test
ip netns add $HOST
ip -n $HOST link set lo up
$X nsd -c "$W/nsd.conf"
for _ in $(seq 60); do $X dig +short +time=1 +tries=1 @127.0.0.1 -p $AUTH n1.cold.test A >/dev/null 2>&1 && break; sleep 1; done

listener() { echo "127.10.$(($1 >> 8 & 255)).$(($1 & 255))"; }
dropin() {  # I → drop-in of sandbox I (and its namespace in the batch file)
    cat > "$W/d/sb$1.yaml" <<EOF2
listen: [{ address: $(listener $1):53, policy: sb$1 }]
policies:
  sb$1:
    allow: ["*.cold.test"]
    firewall: { netns: /run/netns/dfsb$$-$1, table: inet fence, ipv4-set: allow4, ipv6-set: allow6, create: true }
EOF2
}
wait_log() {  # PATTERN COUNT → waits until the server log has COUNT lines matching PATTERN
    for _ in $(seq 6000); do
        [ "$(grep -c "$1" "$W/srv.log" || true)" -ge "$2" ] && return
        kill -0 "$PID" 2>/dev/null || { echo "dnsfence exited:"; tail "$W/srv.log"; exit 1; }
        sleep 0.005
    done
    echo "timed out waiting for '$1':"; tail "$W/srv.log"; exit 1
}
now() { date +%s.%N; }

printf "%6s %9s %9s %8s %12s %8s %16s\n" N "start s" "reload s" threads descriptors "RSS MiB" "cold CPU us/ans"
for n in ${*:-1 10 100 1000}; do
    rm -rf "$W/d"; mkdir -p "$W/d"
    : > "$W/add.batch"
    for i in $(seq 1 $((n + 1))); do echo "netns add dfsb$$-$i" >> "$W/add.batch"; done
    ip -batch "$W/add.batch"
    for i in $(seq 1 $n); do dropin $i; done
    cat > "$W/fence.yaml" <<EOF2
upstreams: [127.0.0.1:$AUTH]
drop-ins: d
log: { queries: off }
EOF2
    t0=$(now)
    $X $BIN serve --config "$W/fence.yaml" --threads 2 --log-level info >"$W/srv.log" 2>&1 &
    PID=$!
    wait_log '\[dnsfence\] ready' 1
    t1=$(now)
    threads=$(ls /proc/$PID/task | wc -l)
    fds=$(ls /proc/$PID/fd | wc -l)
    rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$PID/status)
    dropin $((n + 1))
    t2=$(now)
    kill -HUP $PID
    wait_log 'reloaded' 1
    t3=$(now)
    $X dig +short +time=2 +tries=1 @"$(listener $((n + 1)))" n7.cold.test A | grep -q 10.0.0.7 \
        || { echo "the added sandbox does not answer"; exit 1; }
    cold=-
    if [[ " $COLD_N " == *" $n "* ]]; then
        python3 -c "
import random
random.seed($n)
for i in random.sample(range(60000), 20000): print(f'n{i}.cold.test A')" > "$W/cold.txt"
        before=$(awk '{print $14 + $15}' /proc/$PID/stat)
        out=$($X dnsperf -s "$(listener 1)" -d "$W/cold.txt" -n 1 -c 20 -t 5 2>&1)
        after=$(awk '{print $14 + $15}' /proc/$PID/stat)
        cold=$(python3 -c '
import re, sys
done = float(re.search(r"Queries completed:\s+(\d+)", sys.argv[1]).group(1))
print(f"{(int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]) * 1e6 / max(done, 1):.1f}")' "$out" "$before" "$after" "$(getconf CLK_TCK)")
    fi
    kill $PID; wait $PID 2>/dev/null || true; PID=""
    sed 's/netns add/netns del/' "$W/add.batch" > "$W/del.batch"; ip -batch "$W/del.batch"
    printf "%6s %9.2f %9.2f %8s %12s %8s %16s\n" $n "$(awk "BEGIN {print $t1 - $t0}")" "$(awk "BEGIN {print $t3 - $t2}")" \
        $threads $fds $rss "$cold"
done
