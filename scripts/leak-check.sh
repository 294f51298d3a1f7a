#!/usr/bin/env bash
# Runs every test but the integration tests (those run the dnsfence binary the plain build made)
# under AddressSanitizer with leak detection: ldns (message decoding, the malformed corpus,
# zone files), the C of CDatagram (datagram loop, kernel filter) and CNftBatch (netlink
# batches, monitors, nft commands), and our Swift over them. Exit non-zero on any memory error
# or leak.
set -euo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=detect_leaks=1
export LSAN_OPTIONS="suppressions=$PWD/scripts/sanitizers/lsan.supp:print_suppressions=0"
swift build --build-tests --sanitize=address --scratch-path .build-asan 2>&1 | grep -v "Cannot export local symbol" | tail -1
swift test --skip-build --sanitize=address --scratch-path .build-asan \
    --skip DNSFenceIntegrationTests 2>&1 | tee /tmp/dnsfence-asan.log | grep -E "Sanitizer|SUMMARY|Test run with" || true
if grep -qE "ERROR: (Address|Leak)Sanitizer" /tmp/dnsfence-asan.log; then
    echo "leak-check: sanitizer errors (see /tmp/dnsfence-asan.log)" >&2
    exit 1
fi
grep -q "Test run with .* passed" /tmp/dnsfence-asan.log
echo "leak-check: no leaks, no memory errors"
