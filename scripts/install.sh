#!/usr/bin/env bash
# Builds dnsfence and installs the binary, its man page (generated from the command-line
# definitions by swift-argument-parser's manual plugin) and, with --systemd, the unit files.
#
#   scripts/install.sh [--prefix /usr/local] [--destdir DIR] [--configuration release|debug] [--systemd]
#
# --destdir stages the tree under DIR (packaging; CI checks the staged tree). The units'
# ExecStart/ExecReload name PREFIX/bin/dnsfence.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/usr/local destdir="" configuration=release systemd=no
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --configuration) configuration=$2; shift 2 ;;
    --systemd) systemd=yes; shift ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case "$configuration" in release | debug) ;; *) echo "install.sh: --configuration release or debug" >&2; exit 2 ;; esac

swift build -c "$configuration" --product dnsfence
binary=$(swift build -c "$configuration" --show-bin-path)/dnsfence
swift package generate-manual --configuration "$configuration"
manual=.build/plugins/GenerateManual/outputs/dnsfence/dnsfence.1

install -D -m 0755 "$binary" "$destdir$prefix/bin/dnsfence"
install -D -m 0644 "$manual" "$destdir$prefix/share/man/man1/dnsfence.1"
if [ "$systemd" = yes ]; then
    for unit in dnsfence.service dnsfence.socket; do
        install -D -m 0644 "scripts/systemd/$unit" "$destdir/etc/systemd/system/$unit"
        sed -i "s|/usr/local/bin/dnsfence|$prefix/bin/dnsfence|g" "$destdir/etc/systemd/system/$unit"
    done
fi
echo "installed dnsfence $("$destdir$prefix/bin/dnsfence" --version) under $destdir$prefix"
