#!/usr/bin/env bash
# Unit tests, the store contract (embedded and MongoDB), single-node and cluster integration tests.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"
cargo test --workspace
