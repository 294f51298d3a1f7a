#!/usr/bin/env bash
# Fuzzes everything a datagram reaches (FuzzOracle: the decision and both renderers, with the
# differential check as the oracle, and the upstream-reply readers) with libFuzzer under
# AddressSanitizer, the C targets instrumented too. The seed corpus (scripts/fuzz-seeds.py) is
# replayed first; then RUNS generated inputs (default 200,000; 0: until stopped). A crash, a
# sanitizer report or a broken promise fails, leaving the input in the work folder.
# Usage: scripts/fuzz.sh [RUNS]   FUZZ_JOBS=N runs N fuzzers in parallel; KEEP=1 keeps the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-200000}
swift build --product DNSFenceFuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address 2>&1 \
    | grep -v "Cannot export local symbol" | tail -1
BIN=$(swift build --scratch-path .build-fuzz --show-bin-path)/DNSFenceFuzz
W=$(mktemp -d /tmp/dnsfence-fuzz.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$W"' EXIT
python3 scripts/fuzz-seeds.py "$W/seeds" >/dev/null
mkdir -p "$W/corpus"
export ASAN_OPTIONS=detect_leaks=1
# Swift's own crash handler reads memory ASan flags; libFuzzer reports the crash itself.
export SWIFT_BACKTRACE=enable=no
export LSAN_OPTIONS="suppressions=$PWD/scripts/sanitizers/lsan.supp:print_suppressions=0"
cd "$W"
"$BIN" -runs="$RUNS" -max_len=1500 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    ${FUZZ_JOBS:+-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS} corpus seeds 2>&1 | tee fuzz.log | grep -E "^#[0-9]+ +(INITED|DONE)|stat::|ERROR|SUMMARY|fuzz:" || true
if ls crash-* leak-* timeout-* oom-* >/dev/null 2>&1 || ! grep -q "Done [0-9]* runs" fuzz.log; then
    echo "fuzz: a finding (input and log in $W)" >&2
    trap - EXIT
    exit 1
fi
echo "fuzz: $RUNS inputs, no finding; corpus $(ls corpus | wc -l) inputs"
