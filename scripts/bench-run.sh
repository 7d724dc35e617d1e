#!/bin/sh
# Start-to-exit latency of `rimg run --rm --network host busybox true` against podman running the same
# image (`podman --runtime runc run --rm --network=host --ulimit host busybox true`), in the
# same run, with hyperfine (medians of RUNS runs each, after 2 warm-up runs).
#   scripts/bench-run.sh [RUNS]       (default 10; RIMG=path/to/rimg to skip the build,
#                                      rimgfs is expected beside it)
# Needs root. Both tools get the same busybox rootfs tar (scripts/make-busybox-image.sh),
# each in a private store under $TMPDIR.
set -eu
cd "$(dirname "$0")/.."
runs=${1:-10}
. scripts/bench-common.sh
bench_setup run --bins
podman_flags="--root $work/podman/root --runroot $work/podman/run --storage-driver overlay"
cleanup() {
    # shellcheck disable=SC2086
    CONTAINERS_CONF="$work/containers.conf" podman $podman_flags rm -af >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    CONTAINERS_CONF="$work/containers.conf" podman $podman_flags system reset -f >/dev/null 2>&1 || true
    grep " $work/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
export CONTAINERS_CONF="$work/containers.conf"

# The busybox tar the tests use: make-busybox-image.sh with a stand-in rimg that keeps it.
printf '#!/bin/sh\nfor a; do case $a in *.tar) cp "$a" %s/busybox.tar;; esac; done\n' "$work" >"$work/keep.sh"
chmod +x "$work/keep.sh"
RIMG="$work/keep.sh" scripts/make-busybox-image.sh >/dev/null
RIMG_ROOT="$work/rimg" "$RIMG" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox >/dev/null
# shellcheck disable=SC2086
podman $podman_flags import -q -c 'CMD ["sh"]' "$work/busybox.tar" busybox >/dev/null

rimg_cmd="env RIMG_ROOT=$work/rimg $RIMG run --rm --network host busybox true"
podman_cmd="podman $podman_flags --runtime runc run --rm --network=host --ulimit host busybox true"
hyperfine -N --warmup 2 --runs "$runs" --export-json "$work/result.json" \
    -n "rimg run --rm" "$rimg_cmd" -n "podman run --rm" "$podman_cmd"
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
rimg, podman = r["rimg run --rm"]["median"], r["podman run --rm"]["median"]
print(f"median: rimg {rimg*1000:.1f} ms, podman {podman*1000:.1f} ms")
print(f"rimg/podman ratio: {rimg/podman:.2f} (goal <= 0.50)")
PY
