#!/bin/bash
cd /work/wt-mem
B=/work/mem-bins/after/switchboard
run() { label=$1; shift; env SWITCHBOARD_BIN=$B LOADGEN_BIN=/work/mem-bins/loadgen-new OUT=/tmp/memres LABEL=$label "$@" nice -n -5 loadtest/bench.sh hold switchboard --steps 1000,5000,10000,15000,19000 --per-worker 9500 $EXTRA > /tmp/memres/$label.log 2>&1; echo "$label: $(grep -h 'RSS per idle\|Idle CPU' /tmp/memres/$label.log | head -3 | tr '\n' ' ')"; }
EXTRA="--idle-secs 60" run after-redis-1 WITH_REDIS=1
EXTRA="" run after-redis-arena16 WITH_REDIS=1 MALLOC_ARENA_MAX=16
EXTRA="" run after-redis-2 WITH_REDIS=1
EXTRA="--idle-secs 60" run after-noredis-norec RECOVERY_WINDOW_SECS=0
