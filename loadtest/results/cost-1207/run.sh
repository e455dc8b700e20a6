#!/usr/bin/env bash
# The quiet-window benchmarks: base (3579eee, before issues 25/26) vs main vs main + webhooks.
set -uo pipefail
cd /work/main
OUT=/work/bench/results; mkdir -p $OUT
export LOADGEN_BIN=/work/bins/main/loadgen
MAIN=/work/bins/main/switchboard BASE=/work/bins/base/switchboard
SECRET=$(cat /work/bench/secret)  # any whsec_ secret
taskset -c 1 python3 /work/bench/sink.py 9911 > $OUT/sink.log 2>&1 & SINK=$!
trap 'kill $SINK' EXIT
WH="WEBHOOK_URL=http://127.0.0.1:9911/hook WEBHOOK_SECRET=$SECRET"
echo "== hold $(date -u +%T)"
for b in base main; do
  bin=$BASE; [ $b = main ] && bin=$MAIN
  OUT=$OUT/hold SWITCHBOARD_BIN=$bin LABEL=$b loadtest/bench.sh hold switchboard --steps 1000,5000,10000,15000,19000 --per-worker 9500 > $OUT/hold-$b.log 2>&1 || echo "hold $b failed"
done
echo "== chat $(date -u +%T)"
for r in 1 2 3; do
  for b in base main wh; do
    bin=$BASE; vars=(); [ $b != base ] && bin=$MAIN; [ $b = wh ] && vars=($WH)
    env "${vars[@]}" OUT=$OUT/chat SWITCHBOARD_BIN=$bin LABEL=$b-r$r loadtest/bench.sh chat switchboard --users 100 --staff 2 --rates 100,500,1000,2000 --step-secs 5 > $OUT/chat-$b-r$r.log 2>&1 || echo "chat $b r$r failed"
  done
done
echo "== sweeps $(date -u +%T)"
CONFIGS=sb-1 ROUNDS=3 OUT=$OUT/sweeps SWITCHBOARD_BIN=$MAIN EXTRA="base-1:1:$BASE wh-1:1:-:WEBHOOK_URL=http://127.0.0.1:9911/hook,WEBHOOK_SECRET=$SECRET" loadtest/sweeps.sh > $OUT/sweeps.log 2>&1 || echo "sweeps failed"
echo "== done $(date -u +%T)"
cat $OUT/sink.log | tail -3
