#!/usr/bin/env bash
# One client flooding at full speed, another at a steady 2,000 queries/s: the steady client's
# latency percentiles and losses (scripts/latency.c) without the flood, with it under the
# default rate limits (the kernel filter on, then off), and with it and rate limits off.
# dnsfence (one event-loop thread) and the steady client (127.0.0.1) share CPU 0; the flooder
# (scripts/latency.c from 127.0.2.1, another /24, sending as fast as it can without waiting for
# answers) has CPU 1 to itself, as an attacker elsewhere would. The steady client sleeps between
# queries (LATENCY_SLEEP=1), as real clients do. Loopback is exempt by default, so the limits
# here are the defaults with `exempt: []`. A control run floods a closed port instead: what the
# flood costs the machine without dnsfence seeing it. Everything runs in a namespace made here,
# on loopback. STEADY_CPU=1 puts the steady client beside the flooder instead: it then measures
# how the scheduler shares CPU 1 (compare with the control run), not dnsfence.
# Usage: scripts/bench-ratelimit.sh [SECONDS]   DNSFENCE_BIN overrides the binary (default: release).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
SECS=${1:-10}
if [ -z "${DNSFENCE_BIN:-}" ]; then swift build -c release --product dnsfence >/dev/null; fi
BIN=${DNSFENCE_BIN:-$PWD/.build/release/dnsfence}
W=$(mktemp -d /tmp/dnsfence-ratelimit.XXXXXX)
NS=dfrl$$; PORT=15360; AUTH=15361
X="ip netns exec $NS"
cleanup() {
    ip netns pids $NS 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del $NS 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
ip netns add $NS
ip -n $NS link set lo up
python3 - "$W" <<'PY'
import sys
w = sys.argv[1]
with open(f"{w}/rl.test.zone", "w") as z:
    z.write("$ORIGIN rl.test.\n$TTL 3600\n@ SOA ns h 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n")
    for i in range(100):
        z.write(f"h{i} A 10.0.{i >> 8}.{i & 255}\n")
with open(f"{w}/hot.txt", "w") as q:
    for i in range(100):
        q.write(f"h{i}.rl.test A\n")
PY
nsd_conf "$W" $AUTH rl.test
$X taskset -c 1 nsd -c "$W/nsd.conf"
${CC:-$(command -v cc || command -v clang)} -O2 -Wall -o "$W/latency" scripts/latency.c

start() {  # rate-limit setting
    cat >"$W/fence.yaml" <<EOF2
listen: [{ address: 127.0.0.1:$PORT, policy: p }]
upstreams: [127.0.0.1:$AUTH]
log: { queries: off }
rate-limit: $1
policies: { p: { allow: ["*.rl.test"] } }
EOF2
    $X taskset -c 0 "$BIN" serve --config "$W/fence.yaml" --threads 1 --log-level warning >"$W/srv.log" 2>&1 &
    echo $! >"$W/server.pid"
    sleep 1.5
    $X dnsperf -s 127.0.0.1 -p $PORT -d "$W/hot.txt" -n 2 >/dev/null
}
stop() { kill "$(cat "$W/server.pid")" 2>/dev/null || true; wait "$(cat "$W/server.pid")" 2>/dev/null || true; }
steady() { echo -n "$1: "; LATENCY_SLEEP=1 $X taskset -c ${STEADY_CPU:-0} "$W/latency" 127.0.0.1 $PORT "$W/hot.txt" 2000 $SECS; }
flood() {  # latency.c from 127.0.2.1 at a rate no server here reaches: it never waits for answers
    LATENCY_SOURCE=127.0.2.1 $X taskset -c 1 "$W/latency" 127.0.0.1 ${FLOOD_PORT:-$PORT} "$W/hot.txt" 250000 $((SECS + 2)) \
        >"$W/flood-$1.txt" 2>&1 &
    echo $! >"$W/flood.pid"
    sleep 1
}
flood_result() {
    wait "$(cat "$W/flood.pid")" 2>/dev/null || true
    echo "  flooder: $(cat "$W/flood-$1.txt")"
}

start "{ exempt: [] }"
steady "no flood                 "
# The control: the flooder runs beside the steady client (on its CPU) but sends to a port no
# one listens on, so the server sees no flood: what sharing CPU 1 costs the client by itself.
FLOOD_PORT=9 flood elsewhere
steady "flood to a closed port   "
flood_result elsewhere
flood limited
steady "flood, default limits    "
flood_result limited
stop
start "{ exempt: [], slip: 0 }"
flood silent
steady "flood, limits, slip 0    "
flood_result silent
stop
# The same limits enforced by dnsfence alone, without the kernel filter.
start "{ exempt: [], kernel: false }"
flood userspace
steady "flood, limits, no kernel "
flood_result userspace
stop
start "off"
flood unlimited
steady "flood, rate-limit off    "
flood_result unlimited
stop
