#!/bin/sh
# Import of the Debian+nodejs rootfs tar (scripts/make-debian-image.sh): `rimg import` against
# `podman import` of the same tar, in the same run, alternating, each into a fresh store.
# Prints every run's wall time and peak RSS (GNU time), then the medians and the ratio.
#   scripts/bench-import.sh [RUNS]        (default 5; RIMG=path/to/rimg to skip the build)
# Needs root (podman, debootstrap). The input tar is read once first, so every run reads it
# from the page cache; the stores are on the same filesystem as $TMPDIR.
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
. scripts/bench-common.sh
bench_setup import --bin rimg
trap 'rm -rf "$work"' EXIT
tar=$(RIMG=$RIMG scripts/make-debian-image.sh --tar-only)
cat "$tar" >/dev/null

# measure NAME COMMAND...: appends "seconds max_rss_kb" to $work/NAME.
measure() {
    name=$1
    shift
    timed '%e %M' "$@"
    cat "$work/one" >>"$work/t-$name"
    printf '%-7s %6ss %8s KiB\n' "$name" $(cat "$work/one")
}

echo "input: $tar ($(du -m "$tar" | cut -f1) MB, $(tar tf "$tar" | wc -l) entries), $runs runs each"
i=0
while [ "$i" -lt "$runs" ]; do
    rm -rf "$work/store-rimg" "$work/store-podman"
    sync
    measure rimg env RIMG_ROOT="$work/store-rimg" "$RIMG" import "$tar" node:bench
    sync
    measure podman env CONTAINERS_CONF="$work/containers.conf" podman \
        --root "$work/store-podman/root" --runroot "$work/store-podman/run" --storage-driver overlay \
        import "$tar" node:bench
    i=$((i + 1))
done
rimg_t=$(cut -d' ' -f1 "$work/t-rimg" | median)
podman_t=$(cut -d' ' -f1 "$work/t-podman" | median)
rimg_m=$(cut -d' ' -f2 "$work/t-rimg" | median)
podman_m=$(cut -d' ' -f2 "$work/t-podman" | median)
echo "median: rimg ${rimg_t}s ${rimg_m} KiB, podman ${podman_t}s ${podman_m} KiB"
echo "$rimg_t $podman_t" | awk '{ printf "rimg/podman time ratio: %.2f (goal <= 0.50)\n", $1 / $2 }'
