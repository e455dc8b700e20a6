#!/usr/bin/env bash
# Issues 27, 29 and 30's cost checks in the same interleaved runs (release builds):
#   main   = this main (webhooks off, ASSIGNMENT=manual)
#   before = 40ba0a2, the main before issue 27's restructure (as in journal 2026-12-07-arch-cost)
#   hook   = main with one webhook endpoint configured and answering (bench.sh WEBHOOK_SINK=1)
#   auto   = main with ASSIGNMENT=auto
# Idle memory (hold) for main and before; chat ack p99 6 rounds; fan-out knee 6 rounds;
# the webhook events per second one node sustains. Server on core 0, generator on core 1.
set -uo pipefail
cd /work/main
OUT=${OUT:-/work/bench/cost}; mkdir -p "$OUT"
export LOADGEN_BIN=/work/bins/main/loadgen
MAIN=/work/bins/main/switchboard BEFORE=/work/bins/before/switchboard
config() { # name -> env assignments
  case $1 in
    main) echo "SWITCHBOARD_BIN=$MAIN" ;;
    before) echo "SWITCHBOARD_BIN=$BEFORE" ;;
    hook) echo "SWITCHBOARD_BIN=$MAIN WEBHOOK_SINK=1" ;;
    auto) echo "SWITCHBOARD_BIN=$MAIN ASSIGNMENT=auto" ;;
  esac
}
echo "== hold $(date -u +%T)"
for b in main before; do
  env $(config $b) OUT=$OUT/hold LABEL=$b timeout 600 loadtest/bench.sh hold switchboard \
    --steps 1000,5000,10000,15000,19000 --per-worker 9500 >"$OUT/hold-$b.log" 2>&1 || echo "hold $b failed"
done
echo "== chat $(date -u +%T)"
for r in 1 2 3 4 5 6; do
  for b in main before hook auto; do
    env $(config $b) OUT=$OUT/chat LABEL=$b-r$r SINK_SECS=120 timeout 400 loadtest/bench.sh chat switchboard \
      --users 100 --staff 2 --rates 100,500,1000,2000 --step-secs 5 >"$OUT/chat-$b-r$r.log" 2>&1 || echo "chat $b r$r failed"
  done
done
echo "== sweeps $(date -u +%T)"
CONFIGS=sb-1 ROUNDS=${SWEEP_ROUNDS:-6} OUT=$OUT/sweeps SWITCHBOARD_BIN=$MAIN \
  EXTRA="before-1:1:$BEFORE hook-1:1:-:WEBHOOK_SINK=1 auto-1:1:-:ASSIGNMENT=auto" \
  timeout 4000 loadtest/sweeps.sh >"$OUT/sweeps.log" 2>&1 || echo "sweeps failed"
echo "== webhook rate $(date -u +%T)"
WEBHOOK_SINK=1 SWITCHBOARD_BIN=$MAIN OUT=$OUT/rate LABEL=hook-rate timeout 900 loadtest/bench.sh chat switchboard \
  --users 1000 --staff 1 --rates 2000,4000,6000 --step-secs 10 >"$OUT/rate.log" 2>&1 || echo "rate failed"
echo "== done $(date -u +%T)"
