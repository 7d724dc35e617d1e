#!/bin/bash
# POSIX conformance and stress runs against a writable rimgfs mount, with its peers over the
# same extracted layers: kernel overlayfs (which defines "correct" for rimgfs), fuse-overlayfs,
# and the native filesystem (ext4 under $TMPDIR). Each run gets its own fresh mount.
#   scripts/conformance.sh            (as root; RIMG_BIN=dir with rimg/rimgfs skips the build)
#   STRESS_SECONDS=30 STRESS_WORKERS=4 FSX_OPS=3000 scripts/conformance.sh
# 1. pjdfstest (the Rust port) on all four; lists every case that fails on rimgfs but passes
#    on kernel overlayfs (the goal: none).
# 2. fsx on a 64 MiB file that starts in the image's layer (its open copies it up), and on a
#    second lower file with size-changing ops, on rimgfs and both overlay peers.
# 3. scripts/stress.sh (concurrent create/rename/unlink/write, also on lower files), then
#    umount, remount with the same upper, and check: same tree, every file readable, no EIO,
#    nothing left in the overlay work dir.
# Prints a summary table and writes it with all logs to target/conformance/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=$repo/target/conformance
stress_secs=${STRESS_SECONDS:-30}
stress_workers=${STRESS_WORKERS:-4}
fsx_ops=${FSX_OPS:-3000}

[ "$(id -u)" = 0 ] || { echo "conformance: run as root (mounts)" >&2; exit 1; }
sh scripts/setup.sh
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
command -v pjdfstest >/dev/null || cargo install pjdfstest --locked --version 0.2.2
command -v fsx >/dev/null || cargo install fsx --locked
if [ -z "${RIMG_BIN:-}" ]; then
    cargo build -q --workspace --bins
    RIMG_BIN=$repo/target/debug
fi
rimg=$RIMG_BIN/rimg
rimgfs=$RIMG_BIN/rimgfs

rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/rimg-conformance.XXXXXX")
chmod 755 "$work" # pjdfstest's unprivileged users must reach the mounts
export RIMG_ROOT=$work/store
mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        "$rimgfs" umount "${mounted[i]}" >/dev/null 2>&1 || umount -l "${mounted[i]}" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
log() { printf '== %s\n' "$*" >&2; }

# ---------------------------------------------------------------- images and extracted layers
log "images"
cat >"$work/rimg-keep" <<EOF
#!/bin/sh
# Stands in for rimg in make-busybox-image.sh: keeps the tar it imports, then imports it.
for a; do case \$a in *.tar) cp "\$a" "$work/busybox.tar";; esac; done
exec "$rimg" "\$@"
EOF
chmod +x "$work/rimg-keep"
RIMG=$work/rimg-keep scripts/make-busybox-image.sh busybox >/dev/null

# The data image: busybox plus a 64 MiB file (fsx, copy-up), a 1 MiB one (fsx with size
# changes) and a small tree the stress workload renames and unlinks under the overlay.
mkdir -p "$work/data-root" && tar -xf "$work/busybox.tar" -C "$work/data-root"
mkdir -p "$work/data-root/data/tree"
head -c 64M /dev/urandom >"$work/data-root/data/fsx.bin"
head -c 1M /dev/urandom >"$work/data-root/data/fsx-small.bin"
for d in 0 1 2 3 4 5 6 7; do
    mkdir -p "$work/data-root/data/tree/d$d"
    for f in $(seq 0 31); do echo "lower $d/$f" >"$work/data-root/data/tree/d$d/f$f"; done
done
tar --sort=name --numeric-owner -C "$work/data-root" -cf "$work/data.tar" .
"$rimg" import "$work/data.tar" data >/dev/null
fsx_sum=$(sha256sum <"$work/data-root/data/fsx.bin" | cut -d' ' -f1)
rm -rf "$work/data-root"

# Each image's layer extracted as Docker's overlay2 does, for the overlay peers.
for img in busybox data; do
    mkdir -p "$work/layers/$img"
    tar --xattrs --xattrs-include='*' --numeric-owner --same-owner -xpf "$work/$img.tar" \
        -C "$work/layers/$img"
done
rm -f "$work/busybox.tar" "$work/data.tar"

# ---------------------------------------------------------------- mounting each kind
# mount_fs KIND IMAGE NAME: a fresh writable mount of IMAGE at $mp (set here, not printed:
# the list of mounts to clean up must be this shell's).
# Upper dirs of every kind live on the same ext4 as the native runs.
mount_fs() {
    local kind=$1 img=$2 name=$3
    local up=$work/upper/$name wk=$work/work/$name
    mp=$work/mnt/$name
    mkdir -p "$mp" "$up" "$wk"
    case $kind in
    rimgfs)
        "$rimgfs" mount --upper "$up" --work "$wk" "$img" "$mp" >/dev/null
        ;;
    overlay)
        # The options rimgfs uses (also this kernel's defaults): the upper stays plain.
        mount -t overlay overlay -o "lowerdir=$work/layers/$img,upperdir=$up,workdir=$wk,redirect_dir=off,index=off,metacopy=off" "$mp"
        ;;
    fuse-overlayfs)
        fuse-overlayfs -o "lowerdir=$work/layers/$img,upperdir=$up,workdir=$wk" "$mp"
        ;;
    native)
        cp -a "$work/layers/$img/." "$mp/"
        ;;
    esac
    [ "$kind" = native ] || mounted+=("$mp")
}

# umount_fs KIND MOUNTPOINT
umount_fs() {
    local kind=$1 mp=$2
    case $kind in
    rimgfs) "$rimgfs" umount "$mp" ;;
    overlay | fuse-overlayfs) umount "$mp" ;;
    native) return 0 ;;
    esac
    local i
    for i in "${!mounted[@]}"; do [ "${mounted[i]}" = "$mp" ] && unset 'mounted[i]'; done
    mounted=("${mounted[@]}")
}

kinds=(rimgfs overlay fuse-overlayfs native)
overlays=(rimgfs overlay fuse-overlayfs) # fsx and stress need a lower layer and a remount
declare -A label=([rimgfs]="rimgfs (writable)" [overlay]="kernel overlayfs"
    [fuse-overlayfs]="fuse-overlayfs" [native]="native ext4")

# ---------------------------------------------------------------- pjdfstest
mkdir -p "$work/secondary"
mount -t tmpfs -o size=16m tmpfs "$work/secondary"
mounted+=("$work/secondary")
cat >"$out/pjdfstest.toml" <<EOF
# pjdfstest (Rust port) as root on Linux: every feature Linux filesystems have.
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}
# EXDEV cases need a second filesystem: a small tmpfs.
secondary_fs = "$work/secondary"

[settings]
# Longer than the kernel's coarse timestamp tick (4 ms at HZ=250), so time changes show.
naptime = 0.02
# EROFS cases would remount the filesystem under test read-only: skipped.
allow_remount = false

[dummy_auth]
# Two unprivileged users that Debian always has, each with its primary group.
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
EOF

declare -A pass fail skip
for kind in "${kinds[@]}"; do
    log "pjdfstest on $kind"
    mount_fs "$kind" busybox "pjd-$kind"
    (cd "$mp" && NO_COLOR=1 timeout 300 pjdfstest -c "$out/pjdfstest.toml" -p "$mp") \
        >"$out/pjdfstest-$kind.log" 2>&1 || true
    umount_fs "$kind" "$mp"
    # "name   ok|FAILED|skipped|failed as expected" lines; colours stripped just in case.
    sed 's/\x1b\[[0-9;]*m//g' "$out/pjdfstest-$kind.log" |
        awk 'NF >= 2 && $1 ~ /::/ { r = $NF; if (r == "ok" || r == "FAILED" || r == "skipped") print $1, r }' |
        sort -u >"$out/pjdfstest-$kind.results"
    pass[$kind]=$(grep -c ' ok$' "$out/pjdfstest-$kind.results" || true)
    fail[$kind]=$(grep -c ' FAILED$' "$out/pjdfstest-$kind.results" || true)
    skip[$kind]=$(grep -c ' skipped$' "$out/pjdfstest-$kind.results" || true)
    grep ' FAILED$' "$out/pjdfstest-$kind.results" | cut -d' ' -f1 >"$out/pjdfstest-$kind.failed" || true
done
# Cases that fail on rimgfs but pass on kernel overlayfs: the ones that are rimgfs's fault.
grep ' ok$' "$out/pjdfstest-overlay.results" | cut -d' ' -f1 >"$work/overlay.passed" || true
comm -12 "$out/pjdfstest-rimgfs.failed" "$work/overlay.passed" >"$out/pjdfstest-regressions" || true

# ---------------------------------------------------------------- fsx
cat >"$out/fsx-block.toml" <<'EOF'
# The file keeps its 64 MiB size (it started in the layer); opening it copies it up.
blockmode = true
nosizechecks = true
[weights]
close_open = 0
truncate = 0
posix_fallocate = 0
punch_hole = 0
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
fsync = 1
fdatasync = 1
posix_fadvise = 1
copy_file_range = 2
EOF
cat >"$out/fsx-resize.toml" <<'EOF'
# Size-changing ops on a file that started in the layer (opened with O_TRUNC: copy-up).
flen = 1048576
[weights]
close_open = 1
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 5
fsync = 1
fdatasync = 1
posix_fallocate = 2
punch_hole = 2
sendfile = 1
posix_fadvise = 1
copy_file_range = 2
EOF
declare -A fsx_result
for kind in "${overlays[@]}"; do
    log "fsx on $kind"
    mount_fs "$kind" data "fsx-$kind"
    mkdir -p "$work/fsx-artifacts-$kind"
    r=ok
    # The lower file reads back as stored before anything touches it.
    [ "$(sha256sum <"$mp/data/fsx.bin" | cut -d' ' -f1)" = "$fsx_sum" ] || r="lower read differs"
    for cfg in block resize; do
        f=$mp/data/fsx.bin
        [ $cfg = resize ] && f=$mp/data/fsx-small.bin
        if ! timeout 300 fsx -N "$fsx_ops" -S 42 -f "$out/fsx-$cfg.toml" -P "$work/fsx-artifacts-$kind" "$f" \
            >"$out/fsx-$cfg-$kind.log" 2>&1; then
            r="fsx $cfg failed (see $out/fsx-$cfg-$kind.log)"
        fi
    done
    # Both files were copied up whole into the upper dir.
    [ -f "$work/upper/fsx-$kind/data/fsx.bin" ] || r="$r; fsx.bin not copied up"
    umount_fs "$kind" "$mp"
    fsx_result[$kind]=$r
done

# ---------------------------------------------------------------- stress
# tree_state DIR: one line per entry (type, mode, owner, size, link target, content hash).
tree_state() {
    (cd "$1" && find . -printf '%p %y %m %U:%G %s %l\n' | sort &&
        find . -type f -print0 | sort -z | xargs -0r sha256sum)
}
declare -A stress_result
for kind in "${overlays[@]}"; do
    log "stress on $kind (${stress_secs}s, $stress_workers workers)"
    mount_fs "$kind" data "stress-$kind"
    r=ok
    ops=$(scripts/stress.sh "$mp" "$stress_secs" "$stress_workers" data/tree 2>"$out/stress-$kind.err") ||
        r="faults (see $out/stress-$kind.err)"
    # Every entry readable (an EIO shows up as a find/cat error), then the same state after a
    # remount with the same upper dir.
    if ! tree_state "$mp" >"$work/state-before" 2>>"$out/stress-$kind.err"; then
        r="tree walk failed (see $out/stress-$kind.err)"
    fi
    umount_fs "$kind" "$mp"
    # Nothing half-done in the work dir (overlayfs keeps one shared whiteout there: skipped),
    # and the upper dir holds only what the workload makes plus whiteouts.
    leftover=$(find "$work/work/stress-$kind" -mindepth 2 ! -type c | wc -l)
    [ "$leftover" = 0 ] || r="$r; $leftover entries left in the work dir"
    strange=$(find "$work/upper/stress-$kind" ! -type f ! -type d ! -type l ! -type c | wc -l)
    strange=$((strange + $(find "$work/upper/stress-$kind" -type c ! -exec sh -c '[ "$(stat -c %t:%T "$1")" = 0:0 ]' _ {} \; -print | wc -l)))
    [ "$strange" = 0 ] || r="$r; $strange entries in the upper dir that are neither files nor whiteouts"
    mount_fs "$kind" data "stress-$kind"
    if ! tree_state "$mp" >"$work/state-after" 2>>"$out/stress-$kind.err"; then
        r="tree walk after remount failed (see $out/stress-$kind.err)"
    elif ! cmp -s "$work/state-before" "$work/state-after"; then
        diff "$work/state-before" "$work/state-after" >"$out/stress-$kind.diff" || true
        r="tree differs after remount (see $out/stress-$kind.diff)"
    fi
    entries=$(grep -c ' [fdlcp] ' "$work/state-after" || true)
    umount_fs "$kind" "$mp"
    stress_result[$kind]="$ops, $entries entries after: $r"
done

# ---------------------------------------------------------------- summary
{
    echo "rimg conformance run, $(date -u +%Y-%m-%d), $(uname -r), $(nproc) cores"
    echo
    echo "pjdfstest $(pjdfstest --version | awk '{print $2}') (Rust port; counts are test cases, each with many assertions):"
    printf '%-22s %6s %6s %6s\n' "filesystem" pass fail skip
    for kind in "${kinds[@]}"; do
        printf '%-22s %6s %6s %6s\n' "${label[$kind]}" "${pass[$kind]}" "${fail[$kind]}" "${skip[$kind]}"
    done
    echo
    echo "failing on rimgfs but passing on kernel overlayfs: $(grep -c . "$out/pjdfstest-regressions" || true)"
    sed 's/^/  /' "$out/pjdfstest-regressions"
    for kind in "${kinds[@]}"; do
        f=$out/pjdfstest-$kind.failed
        [ -s "$f" ] || continue
        # pjdfstest makes its char devices as 0:0, which is overlayfs's whiteout: EPERM.
        echo "failing on ${label[$kind]}: $(grep -c '::char$' "$f" || true) '::char' cases, and:" \
            "$(grep -v '::char$' "$f" | tr '\n' ' ')"
    done
    echo
    echo "fsx $(fsx --version | awk '{print $2}'), $fsx_ops ops per file, seed 42 (64 MiB lower file, blockmode; 1 MiB lower file, resizing):"
    for kind in "${overlays[@]}"; do printf '  %-20s %s\n' "${label[$kind]}" "${fsx_result[$kind]}"; done
    echo
    echo "stress: scripts/stress.sh, ${stress_secs}s, $stress_workers workers, then umount + remount:"
    for kind in "${overlays[@]}"; do printf '  %-20s %s\n' "${label[$kind]}" "${stress_result[$kind]}"; done
} | tee "$out/results.txt"
echo "(written to $out/results.txt)" >&2
