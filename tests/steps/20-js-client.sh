#!/usr/bin/env bash
# The client test suite with the official JavaScript socket.io-client (tests/js): starts real
# nodes from target/debug/switchboard (built by 00-setup) and fails on any failing test.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"
if [ ! -x target/debug/switchboard ]; then
  echo "target/debug/switchboard is missing: run 00-setup (cargo build) first" >&2
  exit 1
fi
[ -d tests/js/node_modules/socket.io-client ] || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
cd tests/js
npm test
