#!/bin/sh
# Volume I/O and start time (issue 16). Sequential write (dd, fsync at the end) and read
# (after drop_caches) of MIB MiB with the same static busybox dd: on the host filesystem
# directly, in a named volume and in a bind mount of a `rimg run` container, in the same
# run, RUNS passes each (median); then `run --rm` with three named volumes against podman's
# (hyperfine, 2 warm-ups, RUNS*3 runs).
#   scripts/bench-volumes.sh [MIB] [RUNS]   (default 1024 and 3; RIMG=path/to/rimg to skip
#                                           the build, rimgfs is expected beside it)
# Needs root. Goals: volume and bind >= 0.95x the host's throughput (no FUSE or overlayfs in
# a volume's path); start with three volumes <= 0.5x podman's time.
set -eu
cd "$(dirname "$0")/.."
mib=${1:-1024}
runs=${2:-3}
. scripts/bench-common.sh
bench_setup volumes --bins
podman_flags="--root $work/podman/root --runroot $work/podman/run --storage-driver overlay"
cleanup() {
    # shellcheck disable=SC2086
    podman $podman_flags rm -af >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    podman $podman_flags system reset -f >/dev/null 2>&1 || true
    grep " $work/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export CONTAINERS_CONF="$work/containers.conf"

printf '#!/bin/sh\nfor a; do case $a in *.tar) cp "$a" %s/busybox.tar;; esac; done\n' "$work" >"$work/keep.sh"
chmod +x "$work/keep.sh"
RIMG="$work/keep.sh" scripts/make-busybox-image.sh >/dev/null
export RIMG_ROOT="$work/rimg"
"$RIMG" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox >/dev/null
# shellcheck disable=SC2086
podman $podman_flags import -q -c 'CMD ["sh"]' "$work/busybox.tar" busybox >/dev/null
"$RIMG" volume create bench >/dev/null
mkdir -p "$work/host" "$work/bind"

# timed_sh SCRIPT: the seconds SCRIPT takes, measured with /proc/uptime around it by the
# same shell that runs it (inside the container for a container, so its start is not
# counted); SCRIPT's output is discarded.
span='a=$(cut -d" " -f1 /proc/uptime); SCRIPT >/dev/null 2>&1; b=$(cut -d" " -f1 /proc/uptime); echo "$a $b"'
elapsed() { awk '{ printf "%.2f", $2 - $1 }'; }

# pass WHERE: one write and one read of $mib MiB; appends "WHERE write_s read_s" to $work/io.
pass() {
    where=$1
    case $where in
    host) dir=$work/host; run="/bin/busybox sh -c" ;;
    volume) dir=/d; run="$RIMG run --rm -v bench:/d busybox sh -c" ;;
    bind) dir=/d; run="$RIMG run --rm -v $work/bind:/d busybox sh -c" ;;
    esac
    w=$(printf '%s' "$span" | sed "s|SCRIPT|dd if=/dev/zero of=$dir/f bs=1M count=$mib conv=fsync|")
    r=$(printf '%s' "$span" | sed "s|SCRIPT|dd if=$dir/f of=/dev/null bs=1M|")
    ws=$($run "$w" | elapsed)
    sync
    echo 3 >/proc/sys/vm/drop_caches
    rs=$($run "$r" | elapsed)
    echo "$where $ws $rs" >>"$work/io"
    rm -f "$work/host/f" "$work/bind/f" "$RIMG_ROOT/rimg/volumes/bench/_data/f"
}

: >"$work/io"
i=0
while [ "$i" -lt "$runs" ]; do
    for where in host volume bind; do pass "$where"; done
    i=$((i + 1))
done
echo "passes (where, write s, read s):"
cat "$work/io"
mb_s() { awk -v m="$mib" -v s="$1" 'BEGIN { printf "%.0f", m * 1.048576 / s }'; }
printf '%-8s %12s %12s %8s %8s\n' where "write MB/s" "read MB/s" "w ratio" "r ratio"
hw=$(awk '$1 == "host" { print $2 }' "$work/io" | median 3)
hr=$(awk '$1 == "host" { print $3 }' "$work/io" | median 3)
for where in host volume bind; do
    w=$(awk -v x="$where" '$1 == x { print $2 }' "$work/io" | median 3)
    r=$(awk -v x="$where" '$1 == x { print $3 }' "$work/io" | median 3)
    printf '%-8s %12s %12s %8s %8s\n' "$where" "$(mb_s "$w")" "$(mb_s "$r")" \
        "$(awk -v a="$hw" -v b="$w" 'BEGIN { printf "%.2f", a / b }')" \
        "$(awk -v a="$hr" -v b="$r" 'BEGIN { printf "%.2f", a / b }')"
done

rimg_cmd="env RIMG_ROOT=$RIMG_ROOT $RIMG run --rm -v v1:/v1 -v v2:/v2 -v v3:/v3 busybox true"
podman_cmd="podman $podman_flags --runtime runc run --rm --network=host --ulimit host -v v1:/v1 -v v2:/v2 -v v3:/v3 busybox true"
hyperfine -N --warmup 2 --runs "$((runs * 3))" --export-json "$work/result.json" \
    -n "rimg run -v x3" "$rimg_cmd" -n "podman run -v x3" "$podman_cmd" >/dev/null
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
rimg, podman = r["rimg run -v x3"]["median"], r["podman run -v x3"]["median"]
print(f"run --rm with three volumes, median: rimg {rimg*1000:.1f} ms, podman {podman*1000:.1f} ms")
print(f"rimg/podman ratio: {rimg/podman:.2f} (goal <= 0.50)")
PY
