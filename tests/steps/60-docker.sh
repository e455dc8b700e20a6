#!/usr/bin/env bash
# The container image and the compose cluster, built and run for real (issue 32), with its own
# Docker Engine (Debian's docker.io) on a private socket:
#   1. base images made locally (no image registry here): debian:bookworm-slim from debootstrap,
#      rust:1.95-slim-bookworm from it plus this machine's Rust (tests/docker/base-images.sh);
#   2. the project's Dockerfile: build time, size, a src/ edit rebuilds only the last layers, and
#      the image run read-only as docker-compose.yml runs it: non-root, healthcheck healthy,
#      `docker stop` drains with status 0 (tests/docker/image-checks.sh);
#   3. `docker compose up --build` of docker-compose.yml plus tests/docker/compose.test.yml, with
#      the HAProxy profile: Prometheus sees every node, socket.io-client chats across the nodes
#      through both balancers, a node stopped loses no message (tests/docker/compose-checks.sh).
# Caches (base root filesystem, the engine's images and build cache) in
# $SWITCHBOARD_DOCKER_CACHE (default /var/cache/switchboard-docker); a second run reuses them.
# The engine and everything it runs are stopped and removed at exit, also on failure.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"

source tests/docker/engine.sh
source tests/docker/base-images.sh
source tests/docker/image-checks.sh
source tests/docker/compose-checks.sh

FAILED=0
check() {
  local what=$1
  shift
  if "$@"; then
    echo "  ok: $what"
  else
    echo "  FAILED: $what"
    FAILED=$((FAILED + 1))
  fi
}

WORK=$(mktemp -d /tmp/switchboard-docker-step.XXXXXX)
LOGS="$WORK/logs"
mkdir -p "$LOGS"
cleanup() {
  local status=$?
  compose_down
  engine_stop
  # Keep the logs of a failed run where the next one does not overwrite them.
  if [ $status -ne 0 ] || [ "$FAILED" -ne 0 ]; then
    rm -rf "$DOCKER_CACHE/last-failed-logs" && cp -a "$LOGS" "$DOCKER_CACHE/last-failed-logs" \
      && echo "logs of this run: $DOCKER_CACHE/last-failed-logs"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

engine_install
engine_start
echo "--- base images"
base_images
echo "--- the image"
image_build
image_run_checks
echo "--- docker compose"
compose_checks
compose_down
echo "--- a src/ edit rebuilds only the last layers"
image_rebuild_after_src_edit
echo "docker step: $FAILED failed checks"
[ "$FAILED" -eq 0 ]
