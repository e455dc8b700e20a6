#!/usr/bin/env bash
# A small, bounded load smoke test (correctness only, no performance assertions): a few hundred
# clients for a few seconds against a real debug node with the embedded store. The Rust load
# generator must see every message delivered and acked and nothing failing (--strict), and every
# k6 scenario must pass its thresholds when run briefly through the Node shim of the k6 APIs.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

(cd loadtest/k6/shim && npm ci --no-audit --no-fund --loglevel=error)
(cd loadtest/baseline-node && npm ci --no-audit --no-fund --loglevel=error)
cargo build -q --workspace --bins

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/node.pid" ] && kill "$(cat "$work/node.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
export JWT_SECRET="smoke-secret-$RANDOM-$RANDOM-0123456789"
export LOADGEN_URLS="http://127.0.0.1:$port" BASE_URL="http://127.0.0.1:$port"
# Starts (or restarts) the node in the background; its PID goes to $work/node.pid.
start_node="HOST=127.0.0.1 PORT=$port DATA_DIR=$work/data RATE_LIMIT_PER_SEC=100000 MAX_SOCKETS_PER_USER=1000000 CORS_ORIGINS='*' RUST_LOG=warn LOG_FORMAT=json \
  $PWD/target/debug/switchboard >>$work/node.log 2>&1 & echo \$! > $work/node.pid"
wait_ready() {
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node did not start"; cat "$work/node.log"; return 1
}
sh -c "$start_node"
wait_ready
node_pid() { cat "$work/node.pid"; }

gen=target/debug/loadgen
out="$work/results"
echo "--- loadgen fanout: 200 receivers, 20 msgs/s for 3 s"
timeout 120 $gen fanout --receivers 200 --rates 20 --step-secs 3 --grace-ms 5000 --knee-p99-ms 10000 --server-pids "$(node_pid)" --out "$out" --strict
echo "--- loadgen chat: 50 users, 100 acked sends/s for 3 s"
timeout 120 $gen chat --users 50 --rates 100 --step-secs 3 --grace-ms 10000 --server-pids "$(node_pid)" --out "$out" --strict
echo "--- loadgen hold: 300 idle connections from 2 worker processes"
timeout 120 $gen hold --steps 150,300 --per-worker 150 --settle-secs 1 --server-pids "$(node_pid)" --out "$out" --strict
echo "--- loadgen reconnect: 50 chatting clients, node killed and restarted"
timeout 120 $gen reconnect --clients 50 --kill-pid "$(node_pid)" --signal KILL --restart-cmd "$start_node" --warmup-secs 2 --max-secs 30 --out "$out" --strict
wait_ready
echo "--- loadgen reconnect --recover: 30 listening clients (connection state recovery, no chat:sync), node drained and restarted"
timeout 60 $gen reconnect --recover --clients 30 --kill-pid "$(node_pid)" --signal TERM --restart-cmd "$start_node" --warmup-secs 2 --max-secs 20 --out "$out" --strict
wait_ready

echo "--- cluster: 2 nodes and a real redis-server; fan-out across both, then one node killed"
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
# The two nodes share one data directory (the embedded store, as the cluster tests do), so a
# client that moves keeps its chat.
cluster_urls=()
for i in 1 2; do
  cport=$(free_port)
  HOST=127.0.0.1 PORT=$cport DATA_DIR=$work/cluster-data NODE_ID=smoke-$i REDIS_URL=redis://127.0.0.1:$rport \
    RATE_LIMIT_PER_SEC=100000 MAX_SOCKETS_PER_USER=1000000 RUST_LOG=warn LOG_FORMAT=json target/debug/switchboard >>"$work/cluster$i.log" 2>&1 &
  echo $! >"$work/cluster$i.pid"
  pids+=($!)
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$cport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  cluster_urls+=("http://127.0.0.1:$cport")
done
curls=$(IFS=,; echo "${cluster_urls[*]}")
timeout 120 $gen fanout --urls "$curls" --label cluster --receivers 200 --rates 20 --step-secs 3 --grace-ms 5000 --knee-p99-ms 10000 --out "$out" --strict
# No restart: the killed node's clients must move to the other node and lose nothing.
timeout 120 $gen reconnect --urls "$curls" --label cluster --clients 40 --kill-pid "$(cat "$work/cluster1.pid")" --signal KILL --warmup-secs 2 --max-secs 30 --out "$out" --strict

echo "--- avalanche: 3 nodes + redis-server, 3,000 recoverable clients in 3 worker processes, one node SIGKILLed (issue 28)"
# Strict: nothing lost, duplicated or reordered, every client of the killed node back and
# recovered, no recovered client deaf afterwards, no client of the other nodes disturbed.
CLIENTS=3000 WORKERS=3 NODES=3 WATCHED=60 timeout 170 loadtest/avalanche-smoke.sh "$out"

echo "--- the Node baseline serves the same fan-out and acked sends"
bport=$(free_port)
HOST=127.0.0.1 PORT=$bport node loadtest/baseline-node/server.js >"$work/baseline.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$bport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
timeout 60 $gen fanout --urls "http://127.0.0.1:$bport" --label baseline --receivers 50 --rates 20 --step-secs 2 --grace-ms 5000 --knee-p99-ms 10000 --out "$out" --strict
timeout 60 $gen chat --urls "http://127.0.0.1:$bport" --label baseline --users 20 --rates 50 --step-secs 2 --out "$out" --strict

echo "--- k6 scenarios through the Node shim"
cd loadtest/k6/shim
export SHIM_MAX_SECS=90 P99_MS=2000 ACK_P99_MS=2000 CONNECT_P95_MS=5000 STORM_P95_MS=5000
run() { echo "k6 (shim): $1"; timeout 150 node --import ./register.mjs run.mjs "../scenarios/$1.js"; }
VUS=50 HOLD_SECS=2 run idle
RECEIVERS=30 RATE=10 SEND_SECS=3 GRACE_SECS=1 run fanout
USERS=10 AGENTS=2 MESSAGES=3 SEND_INTERVAL_MS=500 run support-mix
ONLINE=10 OFFLINE=10 run reports
VUS=30 ROUNDS=2 PERIOD_SECS=2 run reconnect-storm
echo "load smoke passed"
