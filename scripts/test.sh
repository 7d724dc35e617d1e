#!/bin/sh
# Every check rimg has: installs what is missing, then fmt, clippy -D warnings, and all tests
# (unit tests and the black-box tests with real FUSE mounts, registries, podman and skopeo).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace -- --test-threads="${RIMG_TEST_THREADS:-4}"
