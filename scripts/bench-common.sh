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
