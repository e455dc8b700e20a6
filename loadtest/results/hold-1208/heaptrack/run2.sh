#!/bin/bash
# heaptrack: redis + switchboard under heaptrack, N connections held by one hold-worker, SIGKILL while held.
set -u
BIN=$1; N=$2; OUTP=$3; shift 3
cd /tmp/hp
ulimit -n 20000
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port $rport --save '' --appendonly no >/tmp/hp/redis.log 2>&1 &
rpid=$!
sleep 0.5
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export JWT_SECRET=bench-secret-0123456789abcdef-heap
rm -rf /tmp/hp/data
env HOST=127.0.0.1 PORT=$port DATA_DIR=/tmp/hp/data RATE_LIMIT_PER_SEC=1000000 MAX_SOCKETS_PER_USER=1000000 CORS_ORIGINS='*' RUST_LOG=warn LOG_FORMAT=json REDIS_URL=redis://127.0.0.1:$rport "$@" heaptrack -o $OUTP $BIN > /tmp/hp/server.log 2>&1 &
hpid=$!
for _ in $(seq 300); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
spid=$(pgrep -f "^$BIN" | head -1)
coproc W { /work/mem-bins/loadgen-new hold-worker --url http://127.0.0.1:$port --count $N --src 127.0.0.10 --prefix hp --max-secs 120; }
read -r line <&"${W[0]}"; echo "$line"
sleep 8
grep VmRSS /proc/$spid/status
kill -KILL $spid; wait $hpid
kill $W_PID 2>/dev/null; kill $rpid
