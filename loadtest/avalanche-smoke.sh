#!/usr/bin/env bash
# The avalanche, scaled down and strict (issue 28): NODES nodes sharing one DATA_DIR (the embedded
# store) and a real redis-server, CLIENTS recoverable clients in WORKERS `loadgen` worker
# processes (one source address each), WATCHED of them fed messages and reports by staff on the
# last node; the first node is SIGKILLed. Fails on any lost, duplicated or reordered event, any
# client not back or not recovered, any recovered client deaf afterwards, any client of another
# node disturbed. Bounded: every loadgen run is under `timeout`, and so is the whole script when
# the suite runs it. Needs `cargo build --workspace --bins` first.
#   CLIENTS=1500 WORKERS=3 NODES=3 loadtest/avalanche-smoke.sh [OUT_DIR]
# At scale, with release builds: BIN_DIR=target/release MAX_SECS=240 TIMEOUT=600 CLIENTS=100000
# WORKERS=6 NODES=6 (each worker and node under the 20,000 open files one process may hold here).
# NODE_ENV="VAR=value ..." adds settings to every node (e.g. MAX_HANDSHAKES_PER_SEC=1500).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CLIENTS=${CLIENTS:-1500} WORKERS=${WORKERS:-3} NODES=${NODES:-3} WATCHED=${WATCHED:-60}
SIGNAL=${SIGNAL:-KILL}
BIN_DIR=${BIN_DIR:-target/debug} MAX_SECS=${MAX_SECS:-60} TIMEOUT=${TIMEOUT:-150}
work=$(mktemp -d)
out=${1:-$work/results}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The nodes' logs (warnings and above) are kept beside the results.
  mkdir -p "$out" && cp "$work"/node*.log "$out"/ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export JWT_SECRET="avalanche-secret-$RANDOM-$RANDOM-0123456789"
rport=$(free_port)
# REDIS_NICE (e.g. -10, as root): Redis first on the CPU, as on its own host in production; at
# 100,000 sockets on 2 cores the nodes and generators otherwise starve it into timeouts.
nice -n "${REDIS_NICE:-0}" redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
urls=()
node_pids=()
for i in $(seq "$NODES"); do
  port=$(free_port)
  HOST=127.0.0.1 PORT=$port DATA_DIR=$work/data NODE_ID=av-$i REDIS_URL=redis://127.0.0.1:$rport \
    RATE_LIMIT_PER_SEC=100000 MAX_SOCKETS_PER_USER=1000000 RUST_LOG=warn LOG_FORMAT=json \
    env ${NODE_ENV:-} "$BIN_DIR/switchboard" >>"$work/node$i.log" 2>&1 &
  pids+=($!)
  node_pids+=($!)
  for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  urls+=("http://127.0.0.1:$port")
done
all=$(IFS=,; echo "${urls[*]}")
status=0
timeout "$TIMEOUT" "$BIN_DIR/loadgen" reconnect --recover --urls "$all" --label avalanche \
  --clients "$CLIENTS" --workers "$WORKERS" --watched "$WATCHED" --senders 2 \
  --send-interval-ms 1000 --report-interval-ms 1000 --kill-pid "${node_pids[0]}" --kill-node 0 \
  --signal "$SIGNAL" --warmup-secs 2 --tail-secs 3 --max-secs "$MAX_SECS" \
  --redis-url "redis://127.0.0.1:$rport" --out "$out" --strict || status=$?
# The departures at the end (every client closes): what the surviving nodes logged, and whether
# they stayed ready.
mkdir -p "$out"
for i in $(seq 2 "$NODES"); do
  # What each survivor counted (resumes by outcome, handshakes refused, ...), for the journal.
  curl -s "${urls[$((i-1))]}/metrics" | grep -E '^switchboard_(recovery|handshake|connections|admission|adapter_subscriber)' \
    >"$out/metrics-node$i.txt" || true
  echo "node $i: $(grep -c '"level":"WARN"' "$work/node$i.log" || true) warnings, $(grep -c 'chat partners\|store unavailable' "$work/node$i.log" || true) about the store, $(grep -c 'subscriber lost messages' "$work/node$i.log" || true) subscriber gaps; /readyz $(curl -s -o /dev/null -w '%{http_code}' "${urls[$((i-1))]}/readyz")"
done
if [ "$status" != 0 ]; then
  echo "avalanche smoke failed ($status); node logs (warnings):"
  for i in $(seq "$NODES"); do tail -n 5 "$work/node$i.log"; done
fi
exit "$status"
