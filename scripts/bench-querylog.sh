#!/usr/bin/env bash
# The query log under a flood: N unique denied names (default 1,000,000) sent as fast as
# dnsperf can, to a server logging denials to a file with a byte budget of CAP bytes per second
# (default 1,000,000). Reports the seconds the flood took, the bytes written, and the budget
# for that time: the file must not exceed it. Loopback only; no root needed.
# Usage: scripts/bench-querylog.sh [NAMES] [CAP]
set -euo pipefail
cd "$(dirname "$0")/.."
NAMES=${1:-1000000}
CAP=${2:-1000000}
command -v dnsperf >/dev/null || apt-get install -y -qq dnsperf >/dev/null
swift build -c release --product dnsfence >/dev/null
BIN=$PWD/.build/release/dnsfence
W=$(mktemp -d /tmp/dnsfence-querylog.XXXXXX)
PORT=15600
trap 'kill $(cat "$W/dnsfence.pid" 2>/dev/null) 2>/dev/null || true' EXIT
python3 -c "
import sys
with open('$W/flood.txt', 'w') as f:
    f.write(''.join(f'n{i}.flood.test A\n' for i in range($NAMES)))
"
cat > "$W/dnsfence.yaml" <<EOF2
listen: [{ address: 127.0.0.1:$PORT, policy: p }]
upstreams: [127.0.0.1:9]
log: { queries: denied, file: $W/queries.log, max-bytes-per-second: $CAP }
policies: { p: { allow: [allowed.test] } }
EOF2
"$BIN" serve --config "$W/dnsfence.yaml" --threads 1 --log-level warning >"$W/dnsfence.out" 2>&1 &
echo $! > "$W/dnsfence.pid"
sleep 1
start=$(date +%s.%N)
dnsperf -s 127.0.0.1 -p $PORT -d "$W/flood.txt" -n 1 -c 20 -q 500 > "$W/dnsperf.txt" 2>&1
end=$(date +%s.%N)
sleep 0.1
kill "$(cat "$W/dnsfence.pid")"; wait "$(cat "$W/dnsfence.pid")" 2>/dev/null || true
bytes=$(stat -c %s "$W/queries.log")
python3 - "$start" "$end" "$bytes" "$CAP" "$NAMES" <<'PY'
import math, sys
start, end, written, cap, names = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
seconds = end - start
budget = cap * (math.ceil(seconds) + 1)
print(f"{names} unique denied names in {seconds:.1f} s; query log {written} bytes; budget {cap} B/s "
      f"x {math.ceil(seconds) + 1} windows = {budget} bytes: {'within' if written <= budget else 'OVER'}")
PY
grep -E "Queries completed|Queries per second" "$W/dnsperf.txt" | sed 's/^ */dnsperf: /'
