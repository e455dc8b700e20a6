#!/usr/bin/env bash
# opt-in: its cold image build has not yet been timed on a quiet machine (docs/deployment.md, Budget); run it by name
# The container image and the compose cluster, built and run for real (issue 32), with its own
# Docker Engine (Debian's docker.io) on a private socket:
#   1. base images made locally (no image registry here): debian:bookworm-slim from debootstrap,
#      rust:1.95-slim-bookworm from it plus this machine's Rust (tests/docker/base-images.sh);
#   2. the project's Dockerfile: build time, size, and the image run read-only as
#      docker-compose.yml runs it: non-root, healthcheck healthy, `docker stop` drains with status
#      0 (tests/docker/image-checks.sh); the stand-in images for Redis, MongoDB, nginx, HAProxy
#      and Prometheus build meanwhile, beside it;
#   3. `docker compose up --build` of docker-compose.yml plus tests/docker/compose.test.yml, with
#      the HAProxy profile: Prometheus sees every node, socket.io-client chats across the nodes
#      through both balancers, a node stopped loses no message (tests/docker/compose-checks.sh);
#   4. a src/ edit: only the last layers rebuild, cargo compiles Switchboard alone.
# The data root is a fresh directory removed at exit (every run is cold, as on CI's fresh
# machine); SWITCHBOARD_DOCKER_CACHE=DIR keeps it in DIR between runs. The engine and everything
# it runs are stopped and removed at exit, also on failure; every wait and build is time-bound.
#
# Times per phase (2026-12-07, 2 cores at load average 12 to 16, all at nice 10): engine 57 s,
# base images 356 s, stand-in images 285 s beside the image build; the cold image build was
# stopped by its 2,700 s bound (its container got about a quarter of a core: 744 CPU-s, about 300
# of 320 crates), the trap then tore everything down. Image run 17 s and compose 50 s,
# measured against an image with a prebuilt binary. On a quiet machine: the cold build plus about
# 8 min.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"

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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Each phase's duration, printed as it ends and together at the end.
PHASES=()
PHASE=""
PHASE_T0=$SECONDS
phase() {
  if [ -n "$PHASE" ]; then
    PHASES+=("$PHASE $((SECONDS - PHASE_T0))s")
    echo "    ($PHASE: $((SECONDS - PHASE_T0))s)"
  fi
  PHASE=$1
  PHASE_T0=$SECONDS
  [ "$PHASE" = end ] || echo "--- $PHASE"
}

WORK=$(mktemp -d /tmp/switchboard-docker-step.XXXXXX)
LOGS="$WORK/logs"
mkdir -p "$LOGS"
# The logs of the last run, kept where the next run replaces them (small; the caches are not).
KEPT_LOGS=${SWITCHBOARD_DOCKER_LOGS:-/var/tmp/switchboard-docker-logs}

source tests/docker/engine.sh
source tests/docker/base-images.sh
source tests/docker/image-checks.sh
source tests/docker/compose-checks.sh

cleanup() {
  local status=$?
  set +e
  stand_ins_build_stop
  compose_down
  [ -z "$ENGINE_RUN" ] || cp "$ENGINE_RUN/dockerd.log" "$LOGS/" 2>/dev/null
  engine_stop
  rm -rf "$KEPT_LOGS" && cp -a "$LOGS" "$KEPT_LOGS"
  if [ $status -ne 0 ] || [ "$FAILED" -ne 0 ]; then
    echo "logs of this run: $KEPT_LOGS"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

phase "engine"
engine_install
engine_start
phase "base images"
base_images
compose_env
stand_ins_build_start
phase "the image (the stand-in images build beside it)"
image_build
phase "the image run"
image_run_checks
phase "docker compose"
stand_ins_build_wait
compose_checks
compose_down
phase "a src/ edit rebuilds only the last layers"
image_rebuild_after_src_edit
phase "end"
echo "phases: $(IFS=,; echo "${PHASES[*]}" | sed 's/,/, /g'); step ${SECONDS}s"
echo "docker step: $FAILED failed checks"
[ "$FAILED" -eq 0 ]
