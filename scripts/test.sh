#!/usr/bin/env bash
# Runs the whole test suite: format lint, build with warnings as errors, unit and integration
# tests (nsd, ldns-testns, dig, kdig, mdig as real peers on loopback), and the ldns code under
# AddressSanitizer/LeakSanitizer. Needs the packages scripts/install-deps.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift format lint --strict --recursive Sources Tests Plugins Package.swift
# The statically linked binary the container test puts in an image (ContainerTests), staged
# first: it is linked into .build/debug, which the next build links again as usual.
scripts/container-build.sh --configuration debug --stage-only >/dev/null
swift build --build-tests
# The install the tests check (InstallTests): binary, man page from the manual plugin, units.
rm -rf .build/install-check
scripts/install.sh --configuration debug --prefix /usr --destdir .build/install-check --systemd >/dev/null
swift test --skip-build "$@"
scripts/leak-check.sh
