#!/bin/sh
# Builds a Debian 12 (bookworm) minbase rootfs with nodejs and imports it as node:latest.
#   scripts/make-debian-image.sh [--rebuild] [--tar-only] [NAME[:TAG]]
#       RIMG=path/to/rimg  RIMG_ROOT=store  RIMG_CACHE=dir (default /var/cache/rimg)
# The rootfs tar is kept at $RIMG_CACHE/debian-node.tar (about 324 MB, 7,400 entries), so the
# demo and the benchmarks reuse it; it is rebuilt only with --rebuild. --tar-only prints its
# path instead of importing it. The tar is deterministic for a given set of packages (sorted,
# mtime 0, numeric owners, no atime/ctime), so the image id depends only on the contents.
# Needs root and debootstrap (installed here if missing); takes about a minute. Not run in CI.
set -eu
rebuild=0
tar_only=0
name=node:latest
for a; do
    case $a in
        --rebuild) rebuild=1 ;;
        --tar-only) tar_only=1 ;;
        -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
        -*) echo "make-debian-image: unknown option $a" >&2; exit 2 ;;
        *) name=$a ;;
    esac
done
rimg=${RIMG:-rimg}
cache=${RIMG_CACHE:-/var/cache/rimg}
tar=$cache/debian-node.tar

# The Debian mirror apt uses here (deb822 sources first, then the one-line format).
mirror() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk '/^URIs:/ && /debian\/?$/ { print $2; exit }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    echo http://deb.debian.org/debian
}

if [ "$rebuild" = 1 ] || ! [ -s "$tar" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "make-debian-image: debootstrap needs root" >&2
        exit 1
    fi
    command -v debootstrap >/dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    }
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    root=$work/rootfs
    debootstrap --variant=minbase --include=nodejs bookworm "$root" "$(mirror)" >"$work/log" 2>&1 || {
        tail -20 "$work/log" >&2
        exit 1
    }
    # The rootfs is kept as debootstrap leaves it (the downloaded .debs included), the
    # tree the reference numbers in DESIGN.md were measured on.
    tar --sort=name --mtime=@0 --numeric-owner --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$root" -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$tar"
fi
if [ "$tar_only" = 1 ]; then
    echo "$tar"
    exit 0
fi
"$rimg" import -c 'CMD ["node"]' -m "debian bookworm minbase + nodejs" "$tar" "$name"
