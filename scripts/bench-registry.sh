#!/bin/sh
# Push and pull of the Debian+nodejs image (scripts/make-debian-image.sh) through a local
# registry (docker-registry, distribution 2.8, plain HTTP on 127.0.0.1): `rimg push`/`rimg pull`
# against `skopeo copy` of the same image, in the same run, alternating which goes first.
#   scripts/bench-registry.sh [RUNS]      (default 3; RIMG=path/to/rimg to skip the build)
# push: rimg push node → R/node-rimg (gzip) vs skopeo copy oci:$STORE:node → R/node-skopeo
#       (skopeo's default gzip), the registry's storage wiped before every run.
# pull: from R/node-rimg, rimg pull into a fresh store vs skopeo copy into a fresh oci: dir.
# pull2: the same from R/node-skopeo (the blob skopeo compressed).
# Prints every run's wall time and peak RSS (GNU time), then the medians and the ratios.
set -eu
cd "$(dirname "$0")/.."
runs=${1:-3}
. scripts/bench-common.sh
bench_setup registry --bin rimg
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
    return 0
}
trap cleanup EXIT
tar=$(RIMG=$RIMG scripts/make-debian-image.sh --tar-only)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
cat >"$work/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
  secret: rimg-bench
EOF

start_registry() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$work/registry"
    docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
    pid=$!
    tries=0
    until python3 -c "import urllib.request; urllib.request.urlopen('http://$reg/v2/')" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || { cat "$work/registry.log" >&2; exit 1; }
        sleep 0.1
    done
}

# measure NAME COMMAND...: appends "seconds max_rss_kb cpu_seconds" to $work/t-NAME.
measure() {
    name=$1
    shift
    sync
    timed '%e %M %U %S' "$@"
    awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' "$work/one" >>"$work/t-$name"
    tail -1 "$work/t-$name" | awk -v n="$name" '{ printf "%-12s %6ss %8s KiB %6ss CPU\n", n, $1, $2, $3 }'
}

store=$work/store
RIMG_ROOT=$store "$RIMG" import "$tar" node:latest >/dev/null
echo "image: $tar ($(du -m "$tar" | cut -f1) MB uncompressed, one layer), $runs runs each"

push_rimg() {
    rm -rf "$store/rimg/registry"
    measure rimg-push env RIMG_ROOT="$store" "$RIMG" push node "$reg/node-rimg"
}
push_skopeo() {
    measure skopeo-push skopeo copy -q --dest-tls-verify=false "oci:$store:node" "docker://$reg/node-skopeo"
}
# pull_rimg NAME REPO / pull_skopeo NAME REPO: R/REPO into a fresh store / oci: dir.
pull_rimg() {
    rm -rf "$work/pulled"
    measure "rimg-$1" env RIMG_ROOT="$work/pulled" "$RIMG" pull "$reg/$2"
}
pull_skopeo() {
    rm -rf "$work/oci"
    measure "skopeo-$1" skopeo copy -q --src-tls-verify=false "docker://$reg/$2" "oci:$work/oci:node"
}

i=0
while [ "$i" -lt "$runs" ]; do
    start_registry
    if [ $((i % 2)) = 0 ]; then
        push_rimg
        push_skopeo
        pull_rimg pull node-rimg
        pull_skopeo pull node-rimg
        # The blob skopeo pushed: one gzip stream (pgzip) rather than rimg's members.
        pull_rimg pull2 node-skopeo
        pull_skopeo pull2 node-skopeo
    else
        push_skopeo
        push_rimg
        pull_skopeo pull node-rimg
        pull_rimg pull node-rimg
        pull_skopeo pull2 node-skopeo
        pull_rimg pull2 node-skopeo
    fi
    i=$((i + 1))
done
sizes() {
    python3 -c "import json,sys,urllib.request as u; r=u.Request('http://$reg/v2/$1/manifests/latest', headers={'Accept':'application/vnd.oci.image.manifest.v1+json'}); print(sum(l['size'] for l in json.load(u.urlopen(r))['layers']))"
}
echo "pushed layer blob: rimg $(sizes node-rimg) bytes, skopeo $(sizes node-skopeo) bytes"
for op in push pull pull2; do
    r=$(cut -d' ' -f1 "$work/t-rimg-$op" | median)
    s=$(cut -d' ' -f1 "$work/t-skopeo-$op" | median)
    rm_=$(cut -d' ' -f2 "$work/t-rimg-$op" | median)
    sm=$(cut -d' ' -f2 "$work/t-skopeo-$op" | median)
    rc=$(cut -d' ' -f3 "$work/t-rimg-$op" | median)
    sc=$(cut -d' ' -f3 "$work/t-skopeo-$op" | median)
    echo "$op median: rimg ${r}s ${rm_} KiB ${rc}s CPU, skopeo ${s}s ${sm} KiB ${sc}s CPU"
    echo "$r $s $rc $sc" | awk -v op="$op" '{ printf "rimg/skopeo %s ratio: wall %.2f, CPU %.2f (goal <= 1.00)\n", op, $1 / $2, $3 / $4 }'
done
