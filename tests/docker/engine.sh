# Sourced by tests/steps/60-docker.sh: a private Docker Engine for the step.
#
# Debian's docker.io (installed if missing), started as its own dockerd with a private socket,
# exec root and pidfile in a fresh temporary directory, so it never meets a system Docker or
# another run. Its data root (images, layer and build cache) lives in $DOCKER_CACHE/engine and is
# kept between runs: that is what makes a second run fast. engine_stop removes every container,
# network and volume, stops dockerd (and the containerd it started) and deletes the temporary
# directory; the step calls it from its EXIT trap, so it also runs on failure.

DOCKER_CACHE=${SWITCHBOARD_DOCKER_CACHE:-/var/cache/switchboard-docker}
ENGINE_RUN=""

engine_install() {
  local missing=()
  for p in docker.io debootstrap; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-install-recommends: no docker service to disable afterwards is started anyway
    # (no init system here); the engine below is started by hand.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

engine_start() {
  mkdir -p "$DOCKER_CACHE/engine"
  ENGINE_RUN=$(mktemp -d /tmp/switchboard-docker.XXXXXX)
  export DOCKER_HOST="unix://$ENGINE_RUN/docker.sock"
  # Our own `docker` client calls below go to this engine only.
  dockerd --host "$DOCKER_HOST" --data-root "$DOCKER_CACHE/engine" --exec-root "$ENGINE_RUN/exec" \
    --pidfile "$ENGINE_RUN/dockerd.pid" >"$ENGINE_RUN/dockerd.log" 2>&1 &
  ENGINE_PID=$!
  local end=$((SECONDS + 60))
  until docker version >/dev/null 2>&1; do
    if ! kill -0 "$ENGINE_PID" 2>/dev/null || [ $SECONDS -gt $end ]; then
      echo "dockerd did not start:" >&2
      tail -20 "$ENGINE_RUN/dockerd.log" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "docker engine $(docker version -f '{{.Server.Version}}') on $DOCKER_HOST (data root $DOCKER_CACHE/engine)"
  # Leftovers of an earlier run that was killed before its clean-up: start from nothing.
  engine_clean
}

engine_clean() {
  local ids
  ids=$(docker ps -aq)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  docker network prune -f >/dev/null
  docker volume prune -f >/dev/null
}

engine_stop() {
  [ -n "$ENGINE_RUN" ] || return 0
  if docker version >/dev/null 2>&1; then
    # No image prune: the classic builder's cache is untagged images (the builder stage's
    # dependency layer among them), which a prune would delete.
    engine_clean || true
  fi
  if kill -0 "$ENGINE_PID" 2>/dev/null; then
    kill -TERM "$ENGINE_PID"
    local end=$((SECONDS + 30))
    while kill -0 "$ENGINE_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.5; done
    kill -0 "$ENGINE_PID" 2>/dev/null && kill -KILL "$ENGINE_PID"
    wait "$ENGINE_PID" 2>/dev/null || true
  fi
  # Anything still running from this engine (its containerd and shims, whose command lines name
  # this run's private exec root, which nothing else uses).
  local pids
  pids=$(pgrep -f -- "$ENGINE_RUN/" || true)
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  umount -R "$ENGINE_RUN/exec" 2>/dev/null || true
  rm -rf "$ENGINE_RUN"
  ENGINE_RUN=""
}
