#!/bin/sh
# The main job, end to end, on a fresh Debian 12 machine as root: installs what it needs,
# builds rimg, makes a base image, builds the seeds' web-ping image from a Dockerfile, runs it,
# changes a container and diffs and commits it, and mounts an image with rimgfs.
#   scripts/demo.sh [--node]     --node: use the Debian + nodejs base (debootstrap, ~1 min)
# Everything happens in a throw-away store (RIMG_ROOT, default a temp dir).
set -eu
cd "$(dirname "$0")/.."
use_node=0
[ "${1:-}" = --node ] && use_node=1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "setting up (apt packages, Rust build)"
sh scripts/setup.sh
cargo build --release --bins -q
bin=$PWD/target/release
export PATH="$bin:$PATH"
work=$(mktemp -d /tmp/rimg-demo.XXXXXX)
export RIMG_ROOT="${RIMG_ROOT:-$work/store}"
mnt=$work/mnt
mkdir -p "$mnt"
cleanup() {
    rimgfs umount "$mnt" 2>/dev/null || true
    rimg rm -f demo-c >/dev/null 2>&1 || true
    rimg rm -f web >/dev/null 2>&1 || true
    [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

step "a base image from local material"
if [ $use_node = 1 ]; then
    RIMG=rimg sh scripts/make-debian-image.sh node:latest
    base=node
else
    RIMG=rimg sh scripts/make-busybox-image.sh busybox:latest
    base=busybox
fi
run rimg images

step "rimg build: the seeds' web-ping Dockerfile"
ctx=$work/web-ping
mkdir -p "$ctx"
if [ $base = node ]; then
    cat >"$ctx/app.js" <<'EOF'
const http = require('http');
const target = process.env.TARGET, method = process.env.METHOD;
const interval = +process.env.INTERVAL;
console.log(`** web-ping ** Pinging: ${target}; method: ${method}; ${interval}ms intervals`);
let i = 1;
const ping = () => {
  const start = Date.now();
  const req = http.request({ host: target.split(':')[0], port: target.split(':')[1] || 80, method }, res => {
    console.log(`Making request number: ${i++}; Got response status: ${res.statusCode}; Duration: ${Date.now() - start}ms`);
  });
  req.on('error', e => console.log(`Request failed: ${e.message}`));
  req.end();
};
ping();
setInterval(ping, interval);
EOF
    cmd='["node", "/web-ping/app.js"]'
else
    cat >"$ctx/app.js" <<'EOF'
#!/bin/sh
# web-ping for busybox: the same job as the seeds' app.js, with wget.
echo "** web-ping ** Pinging: $TARGET; method: $METHOD; ${INTERVAL}ms intervals"
i=1
while :; do
    if wget -q -O /dev/null "http://$TARGET/" 2>/dev/null; then s=200; else s=failed; fi
    echo "Making request number: $i; Got response status: $s"
    i=$((i + 1))
    sleep $((INTERVAL / 1000))
done
EOF
    chmod +x "$ctx/app.js"
    cmd='["sh", "/web-ping/app.js"]'
fi
cat >"$ctx/Dockerfile" <<EOF
FROM $base
ENV TARGET="blog.sixeyed.com"
ENV METHOD="HEAD"
ENV INTERVAL="3000"
WORKDIR /web-ping
COPY app.js .
CMD $cmd
EOF
run cat "$ctx/Dockerfile"
run rimg build -t web-ping "$ctx"
run rimg history web-ping
step "a rebuild is all cache hits"
run rimg build -t web-ping "$ctx"

step "rimg run: web-ping against a web server on the host, reached through the bridge gateway"
# Containers run on their own network (the default bridge): the host is the bridge's
# gateway, named with --add-host NAME:host-gateway as a Docker user would.
mkdir -p "$work/www" && echo hello >"$work/www/index.html"
port=18080
busybox httpd -f -p 0.0.0.0:$port -h "$work/www" &
server_pid=$!
run rimg run -d --name web --add-host host.docker.internal:host-gateway \
    -e TARGET=host.docker.internal:$port -e INTERVAL=1000 web-ping
sleep 3
run rimg ps
run rimg logs web
run rimg stop -t 2 web
run rimg rm web

step "a changed container: diff and commit"
run rimg run --name demo-c -w /web-ping web-ping sh -c 'echo jslee >> app.js; echo x > new.txt; rm /etc/group; mkdir /data; echo y > /data/f'
run rimg diff demo-c
run rimg commit -m "demo changes" demo-c web-ping:changed
run rimg history web-ping:changed
run rimg run --rm web-ping:changed cat /data/f
run rimg rm demo-c

step "system df: the shared base counted once"
run rimg system df -v

step "rimgfs: mount the committed image, no extraction"
run rimgfs mount web-ping:changed "$mnt"
run rimgfs ls
run ls "$mnt/web-ping"
run cat "$mnt/data/f"
echo "written through the mount" >"$mnt/hello.txt"
run rimgfs umount "$mnt"
echo
echo "demo finished: every step above ran against the store in $RIMG_ROOT"
