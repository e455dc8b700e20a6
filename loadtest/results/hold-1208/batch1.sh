#!/bin/bash
cd /work/wt-mem
run() { label=$1; bin=$2; shift 2; env "$@" SWITCHBOARD_BIN=$bin LOADGEN_BIN=/work/mem-bins/loadgen-new OUT=/tmp/memres LABEL=$label nice -n -5 loadtest/bench.sh hold switchboard --steps 1000,5000,10000,15000,19000 --per-worker 9500 > /tmp/memres/$label.log 2>&1; echo "$label: $(grep -h 'RSS per idle' /tmp/memres/$label.log | head -2 | tr '\n' ' ')"; }
run before-redis-je /work/mem-bins/wrap/before-je WITH_REDIS=1
run before-redis-mi /work/mem-bins/wrap/before-mi WITH_REDIS=1
run before-noredis-norec /work/mem-bins/before/switchboard RECOVERY_WINDOW_SECS=0
run before-redis-a1 /work/mem-bins/wrap/before-a1 WITH_REDIS=1
run before-redis-2 /work/mem-bins/before/switchboard WITH_REDIS=1
