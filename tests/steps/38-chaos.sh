#!/usr/bin/env bash
# opt-in: it finds a real bug not yet fixed (issue 31: messages sent without a recovery offset while a Redis failover makes log appends fail never reach a client that resumed meanwhile: exactly-once; the duplicates it found first are fixed); run it by name
# The chaos soak (issue 31, tests/chaos/): three nodes from target/debug/switchboard on a Redis
# Sentinel group and secantusd-py, socket.io-client frontends, a nemesis from a seed, and a
# checker over everything the clients saw and the store holds. The suite's run is bounded for CI:
# CHAOS_SECS=120 of load with CHAOS_CLIENTS=50 (about 3 minutes of wall time); the five-minute
# and thirty-minute runs are by hand (tests/chaos/README.md). CHAOS_SEED replays a run's faults
# (a failing run prints its seed).
set -euo pipefail
cd "$SWITCHBOARD_ROOT"
if [ ! -x target/debug/switchboard ]; then
  echo "target/debug/switchboard is missing: run 00-setup (cargo build) first" >&2
  exit 1
fi
[ -d tests/js/node_modules/socket.io-client ] || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
cd tests/js
CHAOS_SECS=${CHAOS_SECS:-120} CHAOS_CLIENTS=${CHAOS_CLIENTS:-50} node ../chaos/soak.mjs
