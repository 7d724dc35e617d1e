#!/bin/sh
# diff over 10,000 changed files and commit of 100 MB of changes: rimg's upper-dir library
# against `podman diff` / `podman commit`, on the very same overlayfs upper dirs, alternating.
#   scripts/bench-diff-commit.sh [RUNS]        (default 5; RIMG=path/to/rimg and
#                                               UPPER_BENCH=path/to/upper-bench skip the build)
# Two podman containers are made from the busybox tar (scripts/make-busybox-image.sh): one
# writes 10,000 files (100 dirs x 100), one 100 MB (10 files of 10 MB of random data). The
# library side is cli/bin/examples/upper-bench.rs, which does what `rimg diff CONTAINER` and `rimg
# commit CONTAINER` do (open the store, build the image's union tree from the layer indexes,
# then rimg_fs::upper::upper_changes, or rimg::image::commit::commit_upper), pointed at those
# containers' upper dirs over the same busybox tar imported into a rimg store. The same two
# workloads also run in rimg containers (`rimg run`), timed with `rimg diff` / `rimg commit`.
# Timing is wall clock in ms (date +%s%N around the process); RSS from GNU time. Every commit
# run starts from a store (rimg) or image list (podman) without the committed image, after sync.
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
sh scripts/setup.sh
if [ -z "${RIMG:-}" ] || [ -z "${UPPER_BENCH:-}" ]; then
    cargo build --release -q -p rimg-cli --bins --example upper-bench
fi
rimg=${RIMG:-$PWD/target/release/rimg}
bench=${UPPER_BENCH:-$PWD/target/release/examples/upper-bench}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/rimg-bench-diff.XXXXXX")
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"
# podman with a private store, as a command (GNU time runs it).
pod=$work/pod
printf '#!/bin/sh\nexec podman --root %s --runroot %s --storage-driver overlay --runtime runc "$@"\n' \
    "$work/podman/root" "$work/podman/run" >"$pod"
chmod +x "$pod"
pod() { "$pod" "$@"; }
cleanup() {
    RIMG_ROOT=$work/rimg "$rimg" rm -f files big >/dev/null 2>&1 || true
    pod rm -af >/dev/null 2>&1 || true
    pod rmi -af >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The busybox tar: make-busybox-image.sh with a stand-in for rimg that keeps the tar.
printf '#!/bin/sh\nfor a; do case $a in *.tar) cp "$a" %s/busybox.tar;; esac; done\n' "$work" \
    >"$work/keep-tar"
chmod +x "$work/keep-tar"
RIMG=$work/keep-tar scripts/make-busybox-image.sh >/dev/null
pod import -q "$work/busybox.tar" busybox >/dev/null
RIMG_ROOT=$work/rimg "$rimg" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox >/dev/null

files_job='i=0; while [ $i -lt 100 ]; do mkdir -p /data/d$i; j=0;
    while [ $j -lt 100 ]; do echo $i.$j >/data/d$i/f$j; j=$((j + 1)); done; i=$((i + 1)); done'
big_job='mkdir /big; for i in 0 1 2 3 4 5 6 7 8 9; do
    dd if=/dev/urandom of=/big/f$i bs=1M count=10 2>/dev/null; done'
r() { RIMG_ROOT=$work/rimg "$rimg" "$@"; }
for c in files big; do
    eval "job=\$${c}_job"
    pod run --name "$c" --network=host --ulimit host busybox sh -c "$job"
    r run --name "$c" busybox sh -c "$job"
done
upper_files=$(pod inspect files --format '{{.GraphDriver.Data.UpperDir}}')
upper_big=$(pod inspect big --format '{{.GraphDriver.Data.UpperDir}}')

# podman's runtime also injects /etc/mtab and /run/.containerenv: ignored like rimg's own.
export UPPER_BENCH_IGNORE=/etc/mtab:/run
# Both must list the same changes, but for what podman lists because of its injected files.
pod diff files | sort >"$work/podman.list"
"$bench" "$work/rimg" diff busybox "$upper_files" | sort >"$work/rimg.list"
echo "changes listed: podman $(wc -l <"$work/podman.list"), rimg $(wc -l <"$work/rimg.list");" \
    "only podman: $(comm -23 "$work/podman.list" "$work/rimg.list" | tr '\n' ' ')"
echo "rimg diff of its own container: $(r diff files | wc -l) changes"
[ "$(comm -13 "$work/podman.list" "$work/rimg.list" | wc -l)" = 0 ] || {
    echo "rimg lists changes podman does not:" >&2
    comm -13 "$work/podman.list" "$work/rimg.list" >&2
    exit 1
}
echo "upper dirs: $(du -sm "$upper_files" | cut -f1) MB in $(find "$upper_files" | wc -l) entries;" \
    "$(du -sm "$upper_big" | cut -f1) MB in $(find "$upper_big" | wc -l) entries; $runs runs each"

# measure NAME COMMAND...: appends "ms max_rss_kb" to $work/t-NAME.
measure() {
    name=$1
    shift
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$work/rss" "$@" >/dev/null 2>"$work/err" || {
        cat "$work/err" >&2
        exit 1
    }
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    echo "$ms $(cat "$work/rss")" >>"$work/t-$name"
    printf '%-14s %6s ms %8s KiB\n' "$name" "$ms" "$(cat "$work/rss")"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

i=0
while [ "$i" -lt "$runs" ]; do
    measure podman-diff "$pod" diff files
    measure lib-diff "$bench" "$work/rimg" diff busybox "$upper_files"
    measure rimg-diff env RIMG_ROOT="$work/rimg" "$rimg" diff files
    sync
    measure podman-commit "$pod" commit -q big "bench:c$i"
    pod rmi "bench:c$i" >/dev/null
    sync
    measure lib-commit "$bench" "$work/rimg" commit busybox "$upper_big" "bench:c$i"
    r rmi "bench:c$i" >/dev/null
    sync
    measure rimg-commit env RIMG_ROOT="$work/rimg" "$rimg" commit big "bench:c$i"
    r rmi "bench:c$i" >/dev/null
    i=$((i + 1))
done

for what in diff commit; do
    p=$(cut -d' ' -f1 "$work/t-podman-$what" | median)
    pm=$(cut -d' ' -f2 "$work/t-podman-$what" | median)
    for who in lib rimg; do
        t=$(cut -d' ' -f1 "$work/t-$who-$what" | median)
        m=$(cut -d' ' -f2 "$work/t-$who-$what" | median)
        echo "$what median: $who ${t} ms ${m} KiB, podman ${p} ms ${pm} KiB" |
            awk -v r="$t" -v p="$p" '{ printf "%s, ratio %.2f (goal <= 0.50)\n", $0, r / p }'
    done
done
