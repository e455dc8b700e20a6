#!/usr/bin/env bash
# Unit tests, the store contract (embedded and MongoDB), single-node and cluster integration tests.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"
# The vendored crates replay on their pinned upstream releases (vendor/README.md), read from
# the cargo registry cache that 00-setup.sh filled: offline, like the rest of the suite.
for crate in engineioxide socketioxide socketioxide-core socketioxide-redis; do
  CARGO_NET_OFFLINE=true vendor/update.sh --check "$crate"
done
# Formatting (vendor/ included: its patches are formatted too), then lints: cheaper than the
# tests, and clippy shares their build.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
