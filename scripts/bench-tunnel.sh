#!/usr/bin/env bash
# A real DNS tunnel (iodine, -T CNAME) through dnsfence and an allowed wildcard (root).
# Two namespaces made here: "server" holds iodined (the tunnel's authoritative server, on
# 127.0.0.1:5399) and dnsfence (on a veth address, port 53, allowing *.t.tunnel.test and
# forwarding to iodined); "client" holds the iodine client, whose only resolver is dnsfence.
# For each budget (BUDGETS, default: "off default") it prints whether the tunnel came up within
# UP_SECONDS and how many bytes a TCP stream moved through it in TUNNEL_SECONDS (default 15), from the client's
# end of the tunnel to the server's (both inside the namespaces).
# IODINE_ARGS adds client options: `-M 110` keeps its names within the default max-name, so
# that the name budget, not the length limit, is what stops it.
# Usage: scripts/bench-tunnel.sh   DNSFENCE_BIN overrides the binary (default: the debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DNSFENCE_BIN:-$PWD/.build/debug/dnsfence}
SECONDS_RUN=${TUNNEL_SECONDS:-15}
UP=${UP_SECONDS:-30}
W=$(mktemp -d /tmp/dnsfence-tunnel.XXXXXX)
S=dftus$$; C=dftuc$$
cleanup() {
    for ns in $S $C; do ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null || true; done
    sleep 0.3
    for ns in $S $C; do ip netns pids $ns 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
    ip netns del $S 2>/dev/null || true
    ip netns del $C 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
ip netns add $S
ip netns add $C
ip -n $S link set lo up
ip -n $C link set lo up
ip link add tu$$s type veth peer name tu$$c
ip link set tu$$s netns $S
ip link set tu$$c netns $C
ip -n $S addr add 10.231.0.1/30 dev tu$$s
ip -n $C addr add 10.231.0.2/30 dev tu$$c
ip -n $S link set tu$$s up
ip -n $C link set tu$$c up

ip netns exec $S iodined -f -c -P dnsfence-test -l 127.0.0.1 -p 5399 10.53.0.1/27 t.tunnel.test \
    >"$W/iodined.log" 2>&1 &

run() {  # budget → one result line
    local budget=$1 policy
    case $budget in
    off) policy='budget: off' ;;
    default) policy='' ;;
    *) policy="budget: $budget" ;;
    esac
    cat >"$W/fence.yaml" <<EOF2
listen: [{ address: 10.231.0.1:53, policy: p }]
upstreams: [127.0.0.1:5399]
log: { queries: off }
policies: { p: { allow: ["*.t.tunnel.test"], $policy } }
EOF2
    ip netns exec $S "$BIN" serve --config "$W/fence.yaml" >"$W/dnsfence-$budget.log" 2>&1 &
    local fence=$!
    for _ in $(seq 50); do grep -q '"ready"\|ready' "$W/dnsfence-$budget.log" && break; sleep 0.1; done
    ip netns exec $C iodine -f -r -P dnsfence-test -T CNAME ${IODINE_ARGS:-} 10.231.0.1 t.tunnel.test >"$W/iodine-$budget.log" 2>&1 &
    local client=$! up=no moved=0 started=$(date +%s.%N)
    for _ in $(seq $((UP * 10))); do
        if ip -n $C -4 addr show dev dns0 2>/dev/null | grep -q 'inet 10.53.0.'; then up=yes; break; fi
        kill -0 $client 2>/dev/null || break
        sleep 0.1
    done
    local took=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
    if [ $up = yes ]; then
        # A sink on the server's end of the tunnel, a source on the client's: bytes in SECONDS.
        ip netns exec $S python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('10.53.0.1', 9000)); s.listen(1); s.settimeout($SECONDS_RUN + 20)
c, _ = s.accept(); c.settimeout(1); n = 0; end = time.time() + $SECONDS_RUN
while time.time() < end:
    try:
        b = c.recv(65536)
    except socket.timeout:
        continue
    if not b: break
    n += len(b)
print(n)" >"$W/sink-$budget.out" 2>&1 &
        local sink=$!
        sleep 0.5
        timeout $((SECONDS_RUN + 5)) ip netns exec $C python3 -c "
import os, socket, time
s = socket.create_connection(('10.53.0.1', 9000), timeout=$SECONDS_RUN)
end = time.time() + $SECONDS_RUN
try:
    while time.time() < end:
        s.send(os.urandom(1024))  # iodine compresses: random bytes do not shrink
except OSError:
    pass" >/dev/null 2>&1 || true
        wait $sink || true
        moved=$(tail -1 "$W/sink-$budget.out" | tr -dc 0-9)
        moved=${moved:-0}
    fi
    kill $client $fence 2>/dev/null || true
    wait $client $fence 2>/dev/null || true
    printf "budget=%-8s up=%-3s up_after_s=%-5s bytes=%-9s bytes_per_s=%.0f\n" \
        "$budget" $up "$took" "$moved" "$(python3 -c "print($moved / $SECONDS_RUN)")"
}

for budget in ${BUDGETS:-off default}; do run "$budget"; done
