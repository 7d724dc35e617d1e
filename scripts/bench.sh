#!/bin/sh
# The layer read benchmark (and, with --group cli, rimg's commands against podman's).
#   scripts/bench.sh [--quick] [--group fs|cli] [--out DIR] [rimg-bench flags...]
# Installs what is missing (scripts/setup.sh), builds the release binaries, makes the Debian
# base rootfs tar once (scripts/make-debian-image.sh --tar-only, about a minute; not for
# --quick), and runs rimg-bench. Without --out a full run writes bench/results/ (the table
# and chart the README shows) and --quick writes target/rimg-bench-quick/.
# `target/release/rimg-bench --help` lists every flag. Needs root.
set -eu
cd "$(dirname "$0")/.."
quick=0
out=""
for a; do
    case $a in
        --quick) quick=1 ;;
        --out | --out=*) out=given ;;
        -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "bench.sh: needs root (mounts, dropping the page cache)" >&2
    exit 1
fi
sh scripts/setup.sh
cargo build --release -q --bins
if [ "$quick" = 0 ]; then
    RIMG=$PWD/target/release/rimg scripts/make-debian-image.sh --tar-only >/dev/null
fi
if [ -z "$out" ]; then
    if [ "$quick" = 1 ]; then
        set -- --out target/rimg-bench-quick "$@"
    else
        set -- --out bench/results "$@"
    fi
fi
exec target/release/rimg-bench "$@"
