#!/usr/bin/env bash
# Issue 27's cost check: before (main 40ba0a2 + the room index, release) vs after (main 793b706:
# use cases as types, the test fixture, pledges), same runs, same machine, nothing else running.
set -uo pipefail
cd /work/main
OUT=/work/bench/arch; mkdir -p $OUT
export LOADGEN_BIN=/work/bins/after/loadgen
BEFORE=/work/bins/before/switchboard AFTER=/work/bins/after/switchboard
echo "== hold $(date -u +%T)"
for b in before after; do
  bin=$BEFORE; [ $b = after ] && bin=$AFTER
  OUT=$OUT/hold SWITCHBOARD_BIN=$bin LABEL=$b timeout 600 loadtest/bench.sh hold switchboard --steps 1000,5000,10000,15000,19000 --per-worker 9500 > $OUT/hold-$b.log 2>&1 || echo "hold $b failed"
done
echo "== chat $(date -u +%T)"
for r in 1 2; do
  for b in before after; do
    bin=$BEFORE; [ $b = after ] && bin=$AFTER
    OUT=$OUT/chat SWITCHBOARD_BIN=$bin LABEL=$b-r$r timeout 300 loadtest/bench.sh chat switchboard --users 100 --staff 2 --rates 100,500,1000,2000 --step-secs 5 > $OUT/chat-$b-r$r.log 2>&1 || echo "chat $b r$r failed"
  done
done
echo "== sweeps $(date -u +%T)"
CONFIGS=sb-1 ROUNDS=2 OUT=$OUT/sweeps SWITCHBOARD_BIN=$AFTER EXTRA="before-1:1:$BEFORE" timeout 1200 loadtest/sweeps.sh > $OUT/sweeps.log 2>&1 || echo "sweeps failed"
echo "== done $(date -u +%T)"
