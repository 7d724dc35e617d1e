#!/bin/sh
# Installs what rimg's demo, tests and benchmarks need on a fresh Debian 12 machine (as root).
# Idempotent and quiet; sourced or run by scripts/demo.sh, scripts/test.sh and scripts/bench.sh.
set -eu
packages="fuse3 fuse-overlayfs podman runc skopeo umoci docker-registry debootstrap \
busybox-static apache2-utils attr zstd fio kmod iproute2 procps psmisc util-linux ca-certificates \
time hyperfine bc libacl1-dev python3 gcc libc6-dev netavark aardvark-dns iptables nftables curl tini"
# libacl1-dev: pjdfstest links libacl (tests/conformance.rs, scripts/conformance.sh).
# python3: the pseudo-terminal driver of tests/registry.rs and the bench scripts' helpers.
# tini: `run --init` bind-mounts its static /usr/bin/tini-static at /dev/init.
# gcc, libc6-dev: tests/isolation.rs builds a static keyring helper (busybox has no keyctl).
# netavark, aardvark-dns, iptables: container networks (cli/lib/src/network); nftables, curl: tests/network.rs.
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages:$missing (run as root to install them)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
# The distribution registry package starts a system service on install; tests run their own.
if command -v systemctl >/dev/null 2>&1; then
    systemctl stop docker-registry >/dev/null 2>&1 || true
fi
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
modprobe overlay 2>/dev/null || true
if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
