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
bench_ratio "$runs" "rimg run --rm" "$rimg_cmd" "podman run --rm" "$podman_cmd"
