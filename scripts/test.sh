#!/usr/bin/env bash
# Runs the whole test suite: format lint, build with warnings as errors, unit and integration
# tests (nsd, ldns-testns, dig, kdig, mdig as real peers on loopback), the unit tests again
# under AddressSanitizer/LeakSanitizer (ldns and our C with them), and the fuzzer. Needs the
# packages scripts/install-deps.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift format lint --strict --recursive Sources Tests Plugins Package.swift
swift build --build-tests
# The statically linked binary the container test puts in an image (ContainerTests). After the
# build, not before: compiled with --static-swift-stdlib, objects name the static libraries,
# which a dynamic link then cannot find; linked from the objects just built, it only relinks.
scripts/container-build.sh --configuration debug --scratch-path .build --stage-only >/dev/null
# The install the tests check (InstallTests): binary, man page from the manual plugin, units.
rm -rf .build/install-check
scripts/install.sh --configuration debug --prefix /usr --destdir .build/install-check --systemd >/dev/null
swift test --skip-build "$@"
scripts/leak-check.sh
# libFuzzer over everything a datagram reaches, differential renderers as the oracle (#20).
scripts/fuzz.sh 100000
