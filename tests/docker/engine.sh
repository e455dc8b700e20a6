# Sourced by tests/steps/60-docker.sh: a private Docker Engine for the step.
#
# Debian's docker.io (installed if missing), started as its own dockerd with a private socket,
# exec root and pidfile in a fresh temporary directory, so it never meets a system Docker or
# another run. Its data root (images, layers, build cache) and the step's other caches live in
# $DOCKER_CACHE:
# - by default a fresh directory under /var/tmp, deleted at exit: every run is a cold run, as on
#   CI's fresh machine, and nothing (10 GB of layers) is left on the disk;
# - with SWITCHBOARD_DOCKER_CACHE=DIR, that directory, kept: a second run reuses the base images
#   and the build cache (for working on the step itself).
# engine_stop removes every container, network and volume, stops dockerd (and the containerd it
# started), unmounts what they left mounted, deletes the bridge it made and the temporary
# directories; the step calls it from its EXIT trap, so it also runs on failure.

if [ -n "${SWITCHBOARD_DOCKER_CACHE:-}" ]; then
  DOCKER_CACHE=$SWITCHBOARD_DOCKER_CACHE
  DOCKER_CACHE_KEPT=yes
else
  DOCKER_CACHE=$(mktemp -d /var/tmp/switchboard-docker.XXXXXX)
  DOCKER_CACHE_KEPT=no
fi
ENGINE_RUN=""
ENGINE_PID=""
ENGINE_MADE_BRIDGE=no

engine_install() {
  local missing=()
  for p in docker.io debootstrap; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    # No init system here, so the package starts no docker service; the engine below is ours.
    timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

engine_start() {
  mkdir -p "$DOCKER_CACHE/engine"
  ENGINE_RUN=$(mktemp -d /tmp/switchboard-docker-run.XXXXXX)
  ip link show docker0 >/dev/null 2>&1 || ENGINE_MADE_BRIDGE=yes
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
  echo "docker engine $(docker version -f '{{.Server.Version}}') on $DOCKER_HOST (data root $DOCKER_CACHE/engine, $([ "$DOCKER_CACHE_KEPT" = yes ] && echo kept || echo removed at exit))"
  # Leftovers of an earlier run (kept cache) that was killed before its clean-up.
  engine_clean
}

engine_clean() {
  local ids
  ids=$(timeout 30 docker ps -aq)
  [ -z "$ids" ] || timeout 120 docker rm -f $ids >/dev/null
  timeout 60 docker network prune -f >/dev/null
  timeout 60 docker volume prune -f >/dev/null
}

# Unmounts every mount point under $1, deepest first (an engine killed before it could).
unmount_under() {
  local dir=$1
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

engine_stop() {
  if [ -n "$ENGINE_RUN" ]; then
    if timeout 10 docker version >/dev/null 2>&1; then
      # No image prune: the classic builder's cache is untagged images (the builder stage's
      # dependency layer among them), which a prune would delete.
      engine_clean || true
    fi
    if [ -n "$ENGINE_PID" ] && kill -0 "$ENGINE_PID" 2>/dev/null; then
      kill -TERM "$ENGINE_PID"
      local end=$((SECONDS + 30))
      while kill -0 "$ENGINE_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.5; done
      kill -0 "$ENGINE_PID" 2>/dev/null && kill -KILL "$ENGINE_PID"
      wait "$ENGINE_PID" 2>/dev/null || true
    fi
    # Anything still running from this engine: its containerd and shims, whose command lines name
    # this run's private exec root, which nothing else uses.
    local pids
    pids=$(pgrep -f -- "$ENGINE_RUN/" || true)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    unmount_under "$ENGINE_RUN"
    rm -rf "$ENGINE_RUN"
    ENGINE_RUN=""
  fi
  if [ "$ENGINE_MADE_BRIDGE" = yes ] && ip link show docker0 >/dev/null 2>&1; then
    ip link delete docker0 || true
  fi
  unmount_under "$DOCKER_CACHE"
  if [ "$DOCKER_CACHE_KEPT" = no ]; then
    rm -rf "$DOCKER_CACHE"
  fi
}
