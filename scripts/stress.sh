#!/bin/bash
# An fsstress-style concurrent workload (Debian packages no fsstress: xfstests is not in it).
#   scripts/stress.sh DIR [SECONDS=30] [WORKERS=4] [LOWER_SUBDIR]
# WORKERS processes create, write, append, truncate, read, fsync, rename (files and dirs),
# hard-link, symlink, chmod, setfattr, unlink, mkdir and rmdir on a shared set of names in
# DIR/stress for SECONDS, so they race with each other. With LOWER_SUBDIR (a directory inside
# DIR that comes from an image layer), its files are read, appended to, renamed, linked and
# removed too: copy-up and whiteouts under contention.
# Races give ENOENT, EEXIST, ENOTEMPTY and the like, which are expected; an EIO, ESTALE,
# ENOTCONN or EUCLEAN is a filesystem fault. Prints "ops=N faults=M" and exits 1 on a fault.
set -u
dir=${1:?usage: stress.sh DIR [SECONDS] [WORKERS] [LOWER_SUBDIR]}
secs=${2:-30}
workers=${3:-4}
lower=${4:-}
root=$dir/stress
mkdir -p "$root"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

lower_files=()
if [ -n "$lower" ]; then
    mapfile -t lower_files < <(find "$dir/$lower" -type f 2>/dev/null | head -n 4096)
fi

worker() {
    local id=$1 ops=0 n d f g s
    RANDOM=$((id * 7919 + $$))
    local end=$((SECONDS + secs))
    while [ "$SECONDS" -lt "$end" ]; do
        d=$root/d$((RANDOM % 6))
        [ $((RANDOM % 4)) = 0 ] && d=$d/s$((RANDOM % 3))
        f=$d/f$((RANDOM % 24))
        g=$root/d$((RANDOM % 6))/f$((RANDOM % 24))
        s=$((RANDOM % 8192 + RANDOM % 4 * 65536))
        case $((RANDOM % 20)) in
        0 | 1) printf "%${s}s" "w$id" >"$f" ;;
        2) printf "%$((s % 5000))s" "a$id" >>"$f" ;;
        3) truncate -s $((s * 3)) "$f" ;;
        4) : >"$f" ;;
        5 | 6) cat "$f" >/dev/null ;;
        7) mv -f "$f" "$g" ;;
        8) ln -f "$f" "$g" ;;
        9) ln -sfn "../$(basename "$f")" "$g" ;;
        10) rm -f "$f" ;;
        11) mkdir -p "$d/s$((RANDOM % 3))" ;;
        12) rmdir "$d/s$((RANDOM % 3))" ;;
        13) mv -T "$d" "$root/d$((RANDOM % 6))" ;;
        14) chmod $((RANDOM % 8))$((RANDOM % 8))4 "$f" ;;
        15) setfattr -n "user.k$((RANDOM % 4))" -v "v$id.$ops" "$f" ;;
        16) dd if=/dev/zero of="$f" bs=4k count=$((s % 16 + 1)) seek=$((RANDOM % 64)) \
            conv=notrunc,fsync status=none ;;
        17) ls -la "$d" >/dev/null ;;
        *)
            n=${#lower_files[@]}
            if [ "$n" -gt 0 ]; then
                local l=${lower_files[$((RANDOM % n))]}
                case $((RANDOM % 6)) in
                0) cat "$l" >/dev/null ;;
                1) printf "%$((s % 3000))s" "L$id" >>"$l" ;;
                2) mv -f "$l" "$l.moved" ;;
                3) mv -f "$l.moved" "$l" ;;
                4) ln -f "$l" "$g" ;;
                5) rm -f "$l" ;;
                esac
            else
                stat "$f" >/dev/null
            fi
            ;;
        esac
        ops=$((ops + 1))
    done 2>>"$logs/err.$id"
    echo "$ops" >"$logs/ops.$id"
}

for i in $(seq 1 "$workers"); do
    worker "$i" &
done
wait
total=0
for i in $(seq 1 "$workers"); do
    total=$((total + $(cat "$logs/ops.$i" 2>/dev/null || echo 0)))
done
faults=$(cat "$logs"/err.* 2>/dev/null |
    grep -E 'Input/output error|Stale file handle|Transport endpoint|Structure needs cleaning' || true)
nfaults=$(printf '%s' "$faults" | grep -c . || true)
echo "ops=$total faults=$nfaults"
if [ "$nfaults" -gt 0 ]; then
    printf '%s\n' "$faults" | sort | uniq -c | sort -rn | head -20 >&2
    exit 1
fi
