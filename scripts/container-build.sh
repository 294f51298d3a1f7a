#!/usr/bin/env bash
# Builds the dnsfence container image from ./Containerfile with podman (or docker):
#   1. the binary, with the Swift runtime and Foundation linked statically, so the image needs
#      only Debian's libldns3 and libnftables1 (`ldd` lists nothing from /opt/swift);
#   2. a build context in .build/container: that binary, the Containerfile and zones/;
#   3. `podman build`, tagged localhost/dnsfence:latest (or --tag).
# Usage: scripts/container-build.sh [--configuration release|debug] [--scratch-path DIR] [--tag TAG]
#                                   [--stage-only|--image-only]
# --stage-only does 1 and 2 (scripts/test.sh, before the tests run); --image-only does 3 from
# what is staged. The build has a folder of its own (--scratch-path, default .build-container):
# objects compiled for a static runtime name its libraries and no longer link dynamically.
# scripts/test.sh passes .build after building there, so that only the link is done again. The base image is pulled as usual; without a registry, make it first with
# scripts/compose/base-image.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGURATION=release; SCRATCH=.build-container; TAG=localhost/dnsfence:latest; STAGE=1; IMAGE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --configuration|-c) CONFIGURATION=$2; shift 2 ;;
        --tag) TAG=$2; shift 2 ;;
        --scratch-path) SCRATCH=$2; shift 2 ;;
        --stage-only) IMAGE=0; shift ;;
        --image-only) STAGE=0; shift ;;
        *) echo "usage: $0 [--configuration release|debug] [--scratch-path DIR] [--tag TAG] [--stage-only|--image-only]" >&2; exit 2 ;;
    esac
done
CONTEXT=.build/container
if [ $STAGE = 1 ]; then
    # Swift 6.3's static Foundation on Linux does not name the libraries it needs itself; list
    # them, and link with lld, which does not care about the order of static archives.
    LIBS=()
    for lib in Foundation FoundationEssentials FoundationInternationalization CoreFoundation \
        _FoundationICU _FoundationCollections _FoundationCShims; do
        LIBS+=(-Xlinker "-l$lib")
    done
    swift build -c "$CONFIGURATION" --scratch-path "$SCRATCH" --product dnsfence --static-swift-stdlib \
        -Xswiftc -use-ld=lld "${LIBS[@]}"
    rm -rf "$CONTEXT"; mkdir -p "$CONTEXT"
    cp "$(swift build -c "$CONFIGURATION" --scratch-path "$SCRATCH" --show-bin-path)/dnsfence" "$CONTEXT/dnsfence"
    cp -r Containerfile zones "$CONTEXT/"
    # Debug information is most of a release binary (104 MB → 84 MB); the symbols stay, for the
    # backtraces Swift prints when it crashes.
    if [ "$CONFIGURATION" = release ]; then strip --strip-debug "$CONTEXT/dnsfence"; fi
    if ldd "$CONTEXT/dnsfence" | grep -q swift; then
        echo "$CONTEXT/dnsfence still loads the Swift runtime:" >&2; ldd "$CONTEXT/dnsfence" >&2; exit 1
    fi
fi
if [ $IMAGE = 1 ]; then
    ENGINE=$(command -v podman || command -v docker) || { echo "neither podman nor docker found" >&2; exit 1; }
    [ -x "$CONTEXT/dnsfence" ] || { echo "nothing staged in $CONTEXT: run without --image-only" >&2; exit 1; }
    PULL=(); [ "$(basename "$ENGINE")" = podman ] && PULL=(--pull=missing)
    "$ENGINE" build "${PULL[@]}" -t "$TAG" -f "$CONTEXT/Containerfile" "$CONTEXT"
fi
