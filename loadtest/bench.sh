#!/usr/bin/env bash
# Runs one benchmark against one system, pinned like the figures in loadtest/README.md: the
# server (and Redis, when used) on core 0, the generator on core 1. Bounded: every mode has a
# fixed number of steps of fixed length, and the server is killed on exit.
#
#   loadtest/bench.sh hold|fanout|chat|reconnect switchboard|baseline|both [extra loadgen flags]
#
# `both` runs Switchboard, then the baseline, with the same flags and settings, and prints the
# comparison (ratios) of the two runs: `loadgen compare`, written to $OUT/summary$SUFFIX.md.
#
# Env: SWITCHBOARD_BIN (default target/release/switchboard), LABEL (default: the system name
# followed by SUFFIX), SUFFIX (e.g. -2nodes), SERVER_CORE / GEN_CORE (0 / 1), WITH_REDIS=1 (start
# a Redis on core 0 and give the server REDIS_URL), NODES=N (N servers, each with its own port
# and data dir, sharing one Redis: clients are spread over them, RSS/CPU summed; reconnect kills
# the first; Redis's CPU and RSS are counted with the servers' unless COUNT_REDIS=0), WITH_MONGO=1 (start the MongoDB-wire test server `secantusd-py` on core 0 and give
# Switchboard MONGODB_URI, so that several nodes share one store), NO_RESTART=1 (reconnect: do
# not start a replacement node, so clients must move to the others), OUT (loadtest/results),
# GEN_TIMEOUT (seconds `reconnect` may run, default 300: raise it for the avalanche).
# With Redis, the run's `INFO commandstats` is written to $OUT/redis-commandstats-LABEL-MODE.txt,
# and `reconnect` gets `--redis-url` (with `--recover` it reports Redis commands per recovered
# client from its own snapshots). ADAPTER=streams gives the baseline the Redis-Streams adapter
# with connection state recovery instead of the pub/sub redis-adapter (Switchboard ignores it).
# After a Switchboard run, its nodes' counters (store operations, messages) are written to
# $OUT/metrics-LABEL-MODE.txt. Other variables (MONGODB_URI, WEBHOOK_URL, ...) pass through to the
# server. WEBHOOK_SINK=1 (Switchboard only) starts a local webhook receiver, `loadgen webhook-sink`
# on SINK_CORE (default GEN_CORE), answering 200 and checking signatures, and makes it every node's
# endpoint (WEBHOOK_URL and a generated WEBHOOK_SECRET; WEBHOOK_EVENTS passes through); after the
# run it waits for the backlog to drain (the sink stops 15 s after its last event, at most
# SINK_SECS, default 900, after it started) and reports the events per second it received:
# $OUT/webhook-sink-LABEL.md.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?mode: hold|fanout|chat|reconnect}
system=${2:?system: switchboard|baseline|both}
shift 2
if [ "$system" = both ]; then
  [ -z "${LABEL:-}" ] || { echo "LABEL cannot be set with both (use SUFFIX)"; exit 2; }
  "$0" "$mode" switchboard "$@"
  "$0" "$mode" baseline "$@"
  "${LOADGEN_BIN:-target/release/loadgen}" compare --out "${OUT:-loadtest/results}" \
    --subject "switchboard${SUFFIX:-}" --baseline "baseline${SUFFIX:-}" --name "summary${SUFFIX:-}"
  exit 0
fi
label=${LABEL:-$system${SUFFIX:-}}
out=${OUT:-loadtest/results}
server_core=${SERVER_CORE:-0}
gen_core=${GEN_CORE:-1}
bin=${SWITCHBOARD_BIN:-target/release/switchboard}
gen=${LOADGEN_BIN:-target/release/loadgen}
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
cleanup() {
  # KEEP_LOGS=DIR keeps the servers' logs.
  [ -n "${KEEP_LOGS:-}" ] && mkdir -p "$KEEP_LOGS" && cp "$work"/*.log "$KEEP_LOGS"/ 2>/dev/null
  for f in "$work"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.5
  for f in "$work"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

export JWT_SECRET=${JWT_SECRET:-bench-secret-0123456789abcdef-$RANDOM}
nodes=${NODES:-1}
[ "$nodes" -gt 1 ] && WITH_REDIS=1
redis_env=""
if [ "${WITH_REDIS:-0}" = 1 ]; then
  # A free port can be taken again before Redis binds it (a client's ephemeral port): up to three
  # ports are tried (seen once in 32 sweep runs: "bind: Address already in use").
  for attempt in 1 2 3; do
    rport=$(free_port)
    taskset -c "$server_core" redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no >"$work/redis.log" 2>&1 &
    echo $! >"$work/redis.pid"
    for _ in $(seq 100); do
      redis-cli -p "$rport" ping >/dev/null 2>&1 && break
      kill -0 "$(cat "$work/redis.pid")" 2>/dev/null || break
      sleep 0.1
    done
    redis-cli -p "$rport" ping >/dev/null 2>&1 && break
    echo "redis-server did not start (attempt $attempt):"; cat "$work/redis.log"
    kill "$(cat "$work/redis.pid")" 2>/dev/null || true
  done
  redis-cli -p "$rport" ping >/dev/null 2>&1 || exit 1
  redis_env="REDIS_URL=redis://127.0.0.1:$rport"
fi
mongo_env=""
if [ "${WITH_MONGO:-0}" = 1 ] && [ "$system" = switchboard ]; then
  mport=$(free_port)
  taskset -c "$server_core" secantusd-py --host 127.0.0.1 --port "$mport" --storage-path "$work/mongo" \
    >"$work/mongo.log" 2>&1 &
  echo $! >"$work/mongo.pid"
  for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $mport), 0.2)" 2>/dev/null && break; sleep 0.1; done
  mongo_env="MONGODB_URI=mongodb://127.0.0.1:$mport/?directConnection=true&retryWrites=false"
fi
if [ "${WEBHOOK_SINK:-0}" = 1 ] && [ "$system" = switchboard ]; then
  hport=$(free_port)
  WEBHOOK_SECRET="whsec_$(head -c 32 /dev/urandom | base64)"
  export WEBHOOK_SECRET WEBHOOK_URL="http://127.0.0.1:$hport/hook"
  taskset -c "${SINK_CORE:-$gen_core}" "$gen" webhook-sink --listen "127.0.0.1:$hport" \
    --secs "${SINK_SECS:-900}" --idle-secs 15 --label "$label" --out "$out" >"$work/sink.log" 2>&1 &
  echo $! >"$work/sink.pid"
  for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $hport), 0.2)" 2>/dev/null && break; sleep 0.1; done
fi
case $system in
  switchboard) case $bin in /*) cmd=$bin ;; *) cmd="$PWD/$bin" ;; esac ;;
  baseline) cmd="node $PWD/loadtest/baseline-node/server.js" ;;
  *) echo "unknown system $system"; exit 2 ;;
esac
urls=()
pids=()
for i in $(seq 0 $((nodes - 1))); do
  port=$(free_port)
  # The same line starts a replacement node in the reconnect benchmark.
  start="cd $work && env HOST=127.0.0.1 PORT=$port DATA_DIR=$work/data$i RATE_LIMIT_PER_SEC=1000000 MAX_SOCKETS_PER_USER=1000000 CORS_ORIGINS='*' \
    RUST_LOG=warn LOG_FORMAT=json $redis_env ${mongo_env:+'$mongo_env'} taskset -c $server_core $cmd >>$work/server$i.log 2>&1 & echo \$! > $work/server$i.pid"
  [ "$i" = 0 ] && start0=$start
  sh -c "$start"
  # Ready, not only alive: a node with MONGODB_URI creates its indexes first.
  for _ in $(seq 300); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  urls+=("http://127.0.0.1:$port")
  pids+=("$(cat "$work/server$i.pid")")
done
pid=${pids[0]}
# With several nodes, Redis is part of what serves the clients: its CPU and RSS count too
# (COUNT_REDIS=0 leaves it out; COUNT_REDIS=1 counts it for one node with Redis).
count_redis=${COUNT_REDIS:-$([ "$nodes" -gt 1 ] && echo 1 || echo 0)}
if [ "$count_redis" = 1 ] && [ -n "$redis_env" ]; then
  pids+=("$(cat "$work/redis.pid")")
fi
url_list=$(IFS=,; echo "${urls[*]}")
pid_list=$(IFS=,; echo "${pids[*]}")
echo "$label ($cmd${ADAPTER:+, ADAPTER=$ADAPTER}) x$nodes on core $server_core, pids $pid_list${redis_env:+, $redis_env}${mongo_env:+, $mongo_env}; generator on core $gen_core"

common=(--urls "$url_list" --server-pids "$pid_list" --label "$label" --out "$out")
# Redis work is counted from here: what the run itself costs (INFO commandstats, written after).
[ -n "$redis_env" ] && redis-cli -p "$rport" CONFIG RESETSTAT >/dev/null
case $mode in
  hold)
    # Redis apart from the servers (its RSS per step, its CPU over `--idle-secs`) unless it is
    # already counted with them.
    extra=()
    [ -n "$redis_env" ] && [ "$count_redis" != 1 ] && extra=(--redis-pid "$(cat "$work/redis.pid")")
    taskset -c "$gen_core" timeout 900 "$gen" hold "${common[@]}" "${extra[@]}" "$@" ;;
  fanout) taskset -c "$gen_core" timeout 900 "$gen" fanout "${common[@]}" "$@" ;;
  chat) taskset -c "$gen_core" timeout 900 "$gen" chat "${common[@]}" "$@" ;;
  reconnect)
    extra=()
    [ "$system" = baseline ] && extra=(--no-verify)
    [ "${NO_RESTART:-0}" = 1 ] || extra+=(--restart-cmd "$start0")
    [ -n "$redis_env" ] && extra+=(--redis-url "redis://127.0.0.1:$rport")
    taskset -c "$gen_core" timeout "${GEN_TIMEOUT:-300}" "$gen" reconnect "${common[@]}" --kill-pid "$pid" "${extra[@]}" "$@" ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
if [ -f "$work/sink.pid" ]; then
  # The node's webhook backlog drains; the sink then stops by itself and reports.
  wait "$(cat "$work/sink.pid")" || echo "webhook sink: bad signatures or no report (see below)"
  cat "$work/sink.log"
fi
# Switchboard's own counters after the run (store operations, messages saved and emitted): the
# store writes delivery status adds per message come from these.
if [ "$system" = switchboard ]; then
  for u in "${urls[@]}"; do
    echo "# $u"
    curl -fsS --max-time 5 "$u/metrics" | grep -E '^switchboard_(store_operation_duration_seconds_count|messages_|fanout_publishes|recovery_log|webhook_)' || true
  done >"$out/metrics-$label-$mode.txt"
  echo "Switchboard counters after the run: $out/metrics-$label-$mode.txt"
fi
if [ -n "$redis_env" ]; then
  redis-cli -p "$rport" INFO commandstats >"$out/redis-commandstats-$label-$mode.txt"
  echo "Redis commands during the run: $out/redis-commandstats-$label-$mode.txt"
fi
