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
bench_podman_busybox

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
