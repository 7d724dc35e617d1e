#!/bin/sh
# What each rimgfs FUSE setting is worth: the Debian image mounted read-only with the default
# settings and with one setting switched off at a time (rimgfs's hidden --tune knobs), against
# the same tar extracted on the native filesystem, in one run.
#   scripts/bench-fuse-settings.sh [ROUNDS]      (root; needs the tar of make-debian-image.sh)
# Workloads: a metadata walk (find with stat of every entry) and reading every file, cold
# (remount + drop_caches) and warm (right after). Prints seconds (median of ROUNDS) and the
# ratio to native; lower is better.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-3}
sh scripts/setup.sh
cargo build --release --bins -q
bin=$PWD/target/release
tar=$(RIMG="$bin/rimg" sh scripts/make-debian-image.sh --tar-only)
work=${BENCH_WORK:-/var/tmp/rimg-bench-settings}
mkdir -p "$work"
export RIMG_ROOT=$work/store
"$bin/rimg" images -q node:latest | grep -q . || "$bin/rimg" import "$tar" node:latest >/dev/null
native=$work/native
if [ ! -d "$native/usr" ]; then
    mkdir -p "$native"
    tar --numeric-owner -xpf "$tar" -C "$native"
fi
mnt=$work/mnt
mkdir -p "$mnt"
trap '"$bin/rimgfs" umount "$mnt" 2>/dev/null || true' EXIT

now() { date +%s.%N; }
# time_cmd CMD...: seconds taken
time_cmd() {
    t0=$(now)
    "$@" >/dev/null 2>&1
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
walk() { find "$1" -printf '%s %m %u\n'; }
readall() { find "$1" -type f -exec cat {} + ; }

mount_variant() { # $1 = tune spec ("" = defaults, "native")
    [ "$1" = native ] && return 0
    "$bin/rimgfs" umount "$mnt" 2>/dev/null || true
    if [ -n "$1" ]; then
        "$bin/rimgfs" mount --read-only --tune "$1" node:latest "$mnt"
    else
        "$bin/rimgfs" mount --read-only node:latest "$mnt"
    fi
}

printf '%-28s %10s %10s %10s %10s\n' setting walk-cold walk-warm read-cold read-warm
base_wc= base_ww= base_rc= base_rw=
for v in native default ttl=1 no_open=0 read_ahead_kb=128 threads1; do
    case $v in
        native) dir=$native; spec=native ;;
        default) dir=$mnt; spec= ;;
        threads1) dir=$mnt; spec=threads1 ;;
        *) dir=$mnt; spec=$v ;;
    esac
    wc= ww= rc= rw=
    for _ in $(seq "$rounds"); do
        if [ "$spec" = threads1 ]; then
            "$bin/rimgfs" umount "$mnt" 2>/dev/null || true
            "$bin/rimgfs" mount --read-only --threads 1 node:latest "$mnt"
        else
            mount_variant "$spec"
        fi
        sync; echo 3 >/proc/sys/vm/drop_caches
        wc="$wc $(time_cmd walk "$dir")"
        ww="$ww $(time_cmd walk "$dir")"
        if [ "$spec" = threads1 ]; then
            "$bin/rimgfs" umount "$mnt"
            "$bin/rimgfs" mount --read-only --threads 1 node:latest "$mnt"
        else
            mount_variant "$spec"
        fi
        sync; echo 3 >/proc/sys/vm/drop_caches
        rc="$rc $(time_cmd readall "$dir")"
        rw="$rw $(time_cmd readall "$dir")"
    done
    m_wc=$(echo "$wc" | tr ' ' '\n' | grep . | median)
    m_ww=$(echo "$ww" | tr ' ' '\n' | grep . | median)
    m_rc=$(echo "$rc" | tr ' ' '\n' | grep . | median)
    m_rw=$(echo "$rw" | tr ' ' '\n' | grep . | median)
    if [ "$v" = native ]; then
        base_wc=$m_wc base_ww=$m_ww base_rc=$m_rc base_rw=$m_rw
    fi
    printf '%-28s %6.3f (%4.2fx) %6.3f (%4.2fx) %6.3f (%4.2fx) %6.3f (%4.2fx)\n' "$v" \
        "$m_wc" "$(echo "$m_wc / $base_wc" | bc -l)" "$m_ww" "$(echo "$m_ww / $base_ww" | bc -l)" \
        "$m_rc" "$(echo "$m_rc / $base_rc" | bc -l)" "$m_rw" "$(echo "$m_rw / $base_rw" | bc -l)"
done
