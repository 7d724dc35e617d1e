#!/bin/sh
# Networks against podman, in the same run:
#  1. start-to-exit latency of `run --rm -p 18090:80 busybox true` (rimg: the default bridge,
#     netavark; podman: --network bridge), hyperfine medians of RUNS runs after 2 warm-ups;
#  2. TCP throughput through a published port: 1 GiB from /dev/zero sent by busybox `nc` in
#     the container, read on the host from 127.0.0.1 by python3 (median of 3 transfers).
#   scripts/bench-net.sh [RUNS]       (default 10; RIMG=path/to/rimg to skip the build)
# Needs root. Traffic goes only to 127.0.0.1.
set -eu
cd "$(dirname "$0")/.."
runs=${1:-10}
. scripts/bench-common.sh
bench_setup net --bins
bench_podman_busybox
trap 'env RIMG_ROOT="$work/rimg" "$RIMG" rm -f nc-rimg >/dev/null 2>&1; bench_podman_cleanup' EXIT

echo "== run --rm -p 18090:80 busybox true"
rimg_cmd="env RIMG_ROOT=$work/rimg $RIMG run --rm -p 18090:80 busybox true"
podman_cmd="podman $podman_flags --runtime runc run --rm --network bridge -p 18090:80 busybox true"
bench_ratio "$runs" "rimg" "$rimg_cmd" "podman" "$podman_cmd"

echo "== 1 GiB through a published port (127.0.0.1:18091 -> 80)"
server='while true; do head -c 1073741824 /dev/zero | nc -l -p 80; done'
# read_secs: connects to 127.0.0.1:18091 (retrying while the server starts) and prints the
# seconds a transfer of the full 1 GiB took.
read_secs() {
    python3 - <<'PY'
import socket, sys, time
deadline = time.time() + 30
while True:
    try:
        s = socket.create_connection(("127.0.0.1", 18091))
        t0, n = time.time(), 0
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            n += len(b)
        if n == 1 << 30:
            print(f"{time.time() - t0:.3f}")
            sys.exit(0)
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("no full transfer from 127.0.0.1:18091")
    time.sleep(0.1)
PY
}
# throughput NAME START_COMMAND...: starts the server container, the median of 3 transfers.
throughput() {
    name=$1
    shift
    "$@" >/dev/null
    for _ in 1 2 3; do read_secs; done | median 3 >"$work/$name.secs"
    echo "$name: $(awk '{ printf "%.0f MiB/s (%.3f s)", 1024 / $1, $1 }' "$work/$name.secs")"
}
throughput rimg env RIMG_ROOT="$work/rimg" "$RIMG" run -d --name nc-rimg -p 127.0.0.1:18091:80 \
    busybox sh -c "$server"
env RIMG_ROOT="$work/rimg" "$RIMG" rm -f nc-rimg >/dev/null
# shellcheck disable=SC2086
throughput podman podman $podman_flags --runtime runc run -d --name nc-podman --network bridge \
    -p 127.0.0.1:18091:80 busybox sh -c "$server"
# shellcheck disable=SC2086
podman $podman_flags rm -f -t 0 nc-podman >/dev/null
