# Sourced (`. scripts/bench-common.sh`) from the repository's top directory by the
# scripts/bench-*.sh comparisons: the start they share and their measuring helpers.

# bench_setup NAME CARGO_TARGETS...: installs what is missing (scripts/setup.sh); builds the
# release rimg-cli CARGO_TARGETS (`--bins`, `--bin rimg`) into $RIMG unless $RIMG already
# names a rimg; makes $work, a fresh directory under $TMPDIR (rimg-bench-NAME.XXXXXX), with
# $work/containers.conf giving podman the host's ulimits (default_ulimits = []).
bench_setup() {
    bench_name=$1
    shift
    sh scripts/setup.sh
    if [ -z "${RIMG:-}" ]; then
        cargo build --release -q -p rimg-cli "$@"
        RIMG=$PWD/target/release/rimg
    fi
    work=$(mktemp -d "${TMPDIR:-/var/tmp}/rimg-bench-$bench_name.XXXXXX")
    printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
}

# timed FORMAT COMMAND...: runs COMMAND under GNU time with FORMAT into $work/one, its
# output discarded; on failure prints its stderr and exits.
timed() {
    format=$1
    shift
    /usr/bin/time -f "$format" -o "$work/one" "$@" >/dev/null 2>"$work/err" || {
        cat "$work/err" >&2
        exit 1
    }
}

# median [DECIMALS]: the median of the numbers on stdin, one a line (the mean of the two
# middle ones, to DECIMALS places (default 2), when there is an even count).
median() {
    sort -n | awk -v d="${1:-2}" '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%." d "f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# bench_podman_busybox: podman in a private store under $work ($podman_flags), its
# containers and store removed on exit (with $work), and the tests' busybox rootfs tar
# (scripts/make-busybox-image.sh with a stand-in rimg that keeps it) imported as `busybox`
# into both $work/rimg and podman's store.
bench_podman_busybox() {
    podman_flags="--root $work/podman/root --runroot $work/podman/run --storage-driver overlay"
    trap bench_podman_cleanup EXIT
    export CONTAINERS_CONF="$work/containers.conf"
    printf '#!/bin/sh\nfor a; do case $a in *.tar) cp "$a" %s/busybox.tar;; esac; done\n' "$work" >"$work/keep.sh"
    chmod +x "$work/keep.sh"
    RIMG="$work/keep.sh" scripts/make-busybox-image.sh >/dev/null
    RIMG_ROOT="$work/rimg" "$RIMG" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox >/dev/null
    # shellcheck disable=SC2086
    podman $podman_flags import -q -c 'CMD ["sh"]' "$work/busybox.tar" busybox >/dev/null
}

bench_podman_cleanup() {
    # shellcheck disable=SC2086
    podman $podman_flags rm -af >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    podman $podman_flags system reset -f >/dev/null 2>&1 || true
    grep " $work/" /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$work"
}

# bench_ratio RUNS NAME_A COMMAND_A NAME_B COMMAND_B: hyperfine of both commands (2 warm-up
# runs, RUNS runs each), then their medians and the A/B ratio (goal <= 0.50).
bench_ratio() {
    hyperfine -N --warmup 2 --runs "$1" --export-json "$work/result.json" -n "$2" "$3" -n "$4" "$5"
    python3 - "$work/result.json" "$2" "$4" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
a, b = r[sys.argv[2]]["median"], r[sys.argv[3]]["median"]
print(f"median: rimg {a*1000:.1f} ms, podman {b*1000:.1f} ms")
print(f"rimg/podman ratio: {a/b:.2f} (goal <= 0.50)")
PY
}
