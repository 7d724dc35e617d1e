#!/bin/sh
# rimg build against podman build on the same input, in the same run, alternating:
#   web-ping  the seeds' Dockerfile on the Debian+nodejs base (scripts/make-debian-image.sh):
#             first build (--no-cache) and fully cached rebuild;
#   run5      five RUN steps on busybox (--no-cache).
# Prints every run's wall time, then medians and rimg/podman ratios.
#   scripts/bench-build.sh [RUNS]       (default 5; RIMG=path/to/rimg to skip the build)
# Needs root. podman runs with --runtime runc --network=host and default_ulimits = [].
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
. scripts/bench-common.sh
bench_setup build --bins
cleanup() {
    for m in $(RIMG_ROOT="$work/store" "$(dirname "$RIMG")/rimgfs" ls 2>/dev/null | awk 'NR > 1 { print $2 }'); do
        RIMG_ROOT="$work/store" "$(dirname "$RIMG")/rimgfs" umount "$m" || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
tar=$(RIMG=$RIMG scripts/make-debian-image.sh --tar-only)
export RIMG_ROOT="$work/store"
# A wrapper (a file, so /usr/bin/time can run it) for podman with a private store.
cat >"$work/podman.sh" <<EOF
#!/bin/sh
CONTAINERS_CONF="$work/containers.conf" exec podman --root "$work/podman/root" \\
    --runroot "$work/podman/run" --storage-driver overlay --runtime runc "\$@"
EOF
chmod +x "$work/podman.sh"
podman() { "$work/podman.sh" "$@"; }

# The same bases in both stores.
RIMG=$RIMG scripts/make-busybox-image.sh busybox:latest >/dev/null
"$RIMG" save -o "$work/busybox.tar" busybox
podman load -q -i "$work/busybox.tar" >/dev/null
podman tag busybox:latest docker.io/library/busybox:latest
"$RIMG" import -c 'CMD ["node"]' "$tar" node:latest >/dev/null
id=$(podman import -q -c 'CMD ["node"]' "$tar" node:latest)
# FROM node must find the local image, not try Docker Hub.
podman tag "$id" docker.io/library/node:latest

mkdir -p "$work/web-ping" "$work/run5"
cat >"$work/web-ping/Dockerfile" <<'EOF'
FROM node

ENV TARGET="blog.sixeyed.com"
ENV METHOD="HEAD"
ENV INTERVAL="3000"

WORKDIR /web-ping
COPY app.js .

CMD ["node", "/web-ping/app.js"]
EOF
cat >"$work/web-ping/app.js" <<'EOF'
const http = require('http');
const target = process.env.TARGET, method = process.env.METHOD;
const interval = Number(process.env.INTERVAL);
console.log(`** web-ping ** Pinging: ${target}; method: ${method}; ${interval}ms intervals`);
let i = 1;
setInterval(() => {
  const start = Date.now();
  console.log(`Making request number: ${i++}; at ${start}`);
  http.request({ host: target, method }, (res) => {
    console.log(`Got response status: ${res.statusCode} at ${Date.now()}; duration: ${Date.now() - start}ms`);
  }).on('error', (e) => console.log(e.message)).end();
}, interval);
EOF
cat >"$work/run5/Dockerfile" <<'EOF'
FROM busybox
RUN echo one > /one
RUN mkdir -p /data && seq 1 1000 > /data/numbers
RUN rm /etc/group && echo changed >> /etc/passwd
RUN cp /bin/busybox /data/bb
RUN rm /one && touch /two
EOF

# measure NAME COMMAND...: appends the wall time to $work/t-NAME.
measure() {
    name=$1
    shift
    timed '%e' "$@"
    cat "$work/one" >>"$work/t-$name"
    printf '%-22s %6ss\n' "$name" "$(cat "$work/one")"
}

# Warm both (page cache, podman's first-run setup).
"$RIMG" build -q -t web-ping "$work/web-ping" >/dev/null
podman build -q --pull=never --network=host -t web-ping "$work/web-ping" >/dev/null
i=0
while [ "$i" -lt "$runs" ]; do
    measure rimg-first "$RIMG" build -q --no-cache -t web-ping "$work/web-ping"
    measure podman-first "$work/podman.sh" build -q --no-cache --pull=never --network=host -t web-ping "$work/web-ping"
    measure rimg-cached "$RIMG" build -q -t web-ping "$work/web-ping"
    measure podman-cached "$work/podman.sh" build -q --pull=never --network=host -t web-ping "$work/web-ping"
    measure rimg-run5 "$RIMG" build -q --no-cache -t run5 "$work/run5"
    measure podman-run5 "$work/podman.sh" build -q --no-cache --pull=never --network=host -t run5 "$work/run5"
    i=$((i + 1))
done
echo "medians of $runs runs:"
for case in first cached run5; do
    r=$(median 3 <"$work/t-rimg-$case")
    p=$(median 3 <"$work/t-podman-$case")
    echo "$case $r $p" | awk '{ printf "  %-7s rimg %6.3fs  podman %6.3fs  ratio %.2f\n", $1, $2, $3, $2 / $3 }'
done
