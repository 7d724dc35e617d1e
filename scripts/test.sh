#!/bin/sh
# Every check rimg has: installs what is missing, then fmt, clippy -D warnings, and all tests
# (unit tests and the black-box tests with real FUSE mounts, registries, podman and skopeo).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
# pjdfstest for tests/conformance.rs, which says SKIPPED when it is missing.
if ! command -v pjdfstest >/dev/null && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/pjdfstest" ]; then
    cargo install pjdfstest --locked --version 0.2.2 ||
        echo "test.sh: could not install pjdfstest; tests/conformance.rs will be skipped" >&2
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace -- --test-threads="${RIMG_TEST_THREADS:-4}"
