# Sourced by tests/steps/60-docker.sh: the project's Dockerfile, built with the classic builder
# (DOCKER_BUILDKIT=0: BuildKit needs buildx, which Debian's docker.io lacks), and the image run
# the way docker-compose.yml runs it. Every check prints what it saw; `check` failures make the
# step fail.

SECRET=${SECRET:-docker-step-secret-0123456789abcdef}
# Bound for the cold image build (its measured figures: the step's header).
IMAGE_BUILD_LIMIT=${SWITCHBOARD_DOCKER_BUILD_LIMIT:-2700}
# The Cargo profile the image is built with: image-ci (Cargo.toml, the Dockerfile's
# CARGO_PROFILE) unless SWITCHBOARD_DOCKER_PROFILE=release asks for what users build.
SB_CARGO_PROFILE=${SWITCHBOARD_DOCKER_PROFILE:-image-ci}
export SB_CARGO_PROFILE
# The image build's RUN containers go into this cgroup, whose CPU time (cpuacct, which keeps
# what removed child cgroups used) is the build's own, whatever else runs on the machine. The
# step removes it at exit (image_build_cgroup_remove).
BUILD_CGROUP=/switchboard-image-build-$$

# `docker build` (classic builder) within a time bound; its output goes to LOG, each line
# prefixed with the seconds since the start, from which step_times reads each step's duration.
# Run in the background and waited for, so that a TERM reaches the step's trap at once (bash
# holds a trap until a foreground command ends); the trap's engine_stop then ends the build.
timed_build() {
  local log=$1 limit=$2 t0=$SECONDS
  shift 2
  {
    DOCKER_BUILDKIT=0 timeout "$limit" docker build --force-rm "$@" 2>&1 \
      | while IFS= read -r line; do printf '%5d %s\n' $((SECONDS - t0)) "$line"; done >"$log"
  } &
  wait $!
}

# A build log as plain text: without the timestamps, and without the colour codes the client
# wraps around the RUN steps' stderr (cargo's lines start with them).
plain_log() { sed -E 's/^ *[0-9]+ //; s/\x1b\[[0-9;]*m//g' "$1"; }

# "seconds<TAB>Step N/M : instruction" for every step of a timestamped build log.
step_times() {
  awk '{ t = $1; sub(/^ *[0-9]+ /, ""); gsub(/\033\[[0-9;]*m/, "") }
       /^Step [0-9]+\/[0-9]+ : / { if (s != "") print t - t0 "\t" s; s = $0; t0 = t }
       END { if (s != "") print t - t0 "\t" s }' "$1"
}

# Which steps of a classic-builder log ran ("built") and which came from the cache.
step_report() {
  plain_log "$1" | awk '/^Step [0-9]+\/[0-9]+ : /{ if (s) print st "\t" s; s=$0; st="built"; next }
       /---> Using cache/ { st="cached" }
       END { if (s) print st "\t" s }'
}

# The CPU-seconds the image build's containers have used so far (0 if no cgroup is readable).
build_cpu_secs() {
  local ns
  ns=$(cat "/sys/fs/cgroup/cpuacct$BUILD_CGROUP/cpuacct.usage" 2>/dev/null \
    || awk '/^usage_usec/ { printf "%.0f", $2 * 1000 }' "/sys/fs/cgroup$BUILD_CGROUP/cpu.stat" 2>/dev/null || echo 0)
  echo $((ns / 1000000000))
}

# Builds switchboard:local from the worktree and reports time, size and the slow steps.
image_build() {
  local t0=$SECONDS log="$LOGS/image-build.log"
  timed_build "$log" "$IMAGE_BUILD_LIMIT" -t switchboard:local --build-arg CARGO_PROFILE="$SB_CARGO_PROFILE" \
    --cgroup-parent "$BUILD_CGROUP" "$SWITCHBOARD_ROOT" \
    || { plain_log "$log" | tail -30 >&2; echo "image build failed or passed ${IMAGE_BUILD_LIMIT}s, after $(build_cpu_secs) CPU-s" >&2; return 1; }
  BUILD_SECS=$((SECONDS - t0))
  local times deps_secs
  times=$(step_times "$log")
  deps_secs=$(awk -F'\t' '$2 ~ /: RUN mkdir -p src tests\/integration/ { print $1 }' <<<"$times")
  # What a src/ edit costs: the steps from `COPY src` on (image_rebuild_after_src_edit shows that
  # only these run).
  SRC_STEPS_SECS=$(awk -F'\t' '$2 ~ /: COPY src \.\/src/ { on = 1 } on && $2 !~ /: FROM / { n += $1 } END { print n + 0 }' <<<"$times")
  local size base binary apt_cache
  size=$(docker image inspect -f '{{.Size}}' switchboard:local)
  base=$(docker image inspect -f '{{.Size}}' debian:bookworm-slim)
  binary=$(docker run --rm --entrypoint /bin/sh switchboard:local -c 'stat -c %s /usr/local/bin/switchboard')
  apt_cache=$(docker run --rm --entrypoint /bin/sh switchboard:local -c 'du -sm /var/cache/apt 2>/dev/null | cut -f1')
  BUILD_CPU_SECS=$(build_cpu_secs)
  echo "image switchboard:local (profile $SB_CARGO_PROFILE) built in ${BUILD_SECS}s, ${BUILD_CPU_SECS} CPU-s in its build containers ($(plain_log "$log" | grep -c -- '---> Using cache') steps from cache): dependency layer ${deps_secs:-?}s, the steps from COPY src on ${SRC_STEPS_SECS}s"
  echo "image size $((size / 1000000)) MB, $(((size - base) / 1000000)) MB over its base; binary $((binary / 1000000)) MB; apt's caches ${apt_cache} MB"
  # The runtime stage is the base plus ca-certificates and one binary: no toolchain, no sources.
  # (apt's package caches, /var/cache/apt/*.bin, stay in the apt layer because this stand-in base
  # lacks the official image's /etc/apt/apt.conf.d/docker-clean: docs/deployment.md.)
  check "binary under 60 MB" [ "$binary" -lt 60000000 ]
  check "image under 300 MB" [ "$size" -lt 300000000 ]
  check "no cargo in the runtime image" bash -c '! docker run --rm --entrypoint /bin/sh switchboard:local -c "command -v cargo"'
}

report_has() { grep -q -- "$2" <<<"$1"; }
nothing_built_before_src() {
  # ARG and FROM steps print no "Using cache" line; every other step before COPY src must.
  ! sed '/COPY src .\/src/,$d' <<<"$1" | grep $'^built' | grep -v -E ': (ARG|FROM) '
}

# Edits src/ in a copy of the build context and rebuilds: the dependency layer must come from
# the cache, only the steps from `COPY src` on may run, and cargo must compile Switchboard alone
# (its first `Compiling` line is switchboard's). Once that line shows, the build is stopped: the
# rest is the Switchboard compile the first build already timed (SRC_STEPS_SECS), and running it
# again would add minutes to the step and prove nothing more.
image_rebuild_after_src_edit() {
  local ctx log="$LOGS/image-rebuild.log" t0=$SECONDS
  ctx=$(mktemp -d "$WORK/context.XXXXXX")
  (cd "$SWITCHBOARD_ROOT" && cp -a Dockerfile .dockerignore Cargo.toml Cargo.lock src vendor "$ctx/" \
    && mkdir -p "$ctx/loadtest" "$ctx/deploy/docker" && cp -a loadtest/Cargo.toml "$ctx/loadtest/" \
    && cp -a deploy/docker/probe.sh "$ctx/deploy/docker/")
  printf '\n// tests/steps/60-docker.sh: an edit of src/ at %s\n' "$(date -u +%FT%T.%N)" >>"$ctx/src/main.rs"
  local before
  before=$(docker ps -aq --no-trunc | sort)
  DOCKER_BUILDKIT=0 timeout 900 docker build --force-rm -t switchboard:src-edit \
    --build-arg CARGO_PROFILE="$SB_CARGO_PROFILE" "$ctx" >"$log" 2>&1 &
  local build=$! end=$((SECONDS + 900))
  while kill -0 "$build" 2>/dev/null && ! grep -q 'Compiling' "$log" && [ $SECONDS -lt $end ]; do sleep 1; done
  local first
  first=$(plain_log "$log" | grep -m1 '^ *Compiling ' | sed 's/^ *//' || true)
  echo "rebuild after a src/ edit: cargo's first line after $((SECONDS - t0))s: '${first:-none}'; build stopped there"
  kill -TERM "$build" 2>/dev/null || true
  wait "$build" 2>/dev/null || true
  # The client's exit cancels the build in the engine, which removes the RUN step's container
  # (--force-rm); bounded wait for that, then remove it by force if it is still there.
  local left
  end=$((SECONDS + 60))
  while left=$(comm -13 <(echo "$before") <(docker ps -aq --no-trunc | sort)) && [ -n "$left" ] && [ $SECONDS -lt $end ]; do
    sleep 1
  done
  [ -z "$left" ] || { echo "the stopped build's container was still there: removed by force"; docker rm -f $left >/dev/null; }
  local report
  report=$(step_report "$log")
  echo "steps that ran:"
  grep '^built' <<<"$report" | cut -f2 | cut -c1-100 | sed 's/^/    /'
  check "dependency build step cached" report_has "$report" $'^cached\tStep [0-9/]* : RUN mkdir -p src tests/integration'
  check "COPY src ran again" report_has "$report" $'^built\tStep [0-9/]* : COPY src ./src'
  check "nothing before COPY src ran" nothing_built_before_src "$report"
  check "cargo compiled Switchboard only (no dependency)" grep -q '^Compiling switchboard v' <<<"$first"
  echo "a src/ edit costs about ${SRC_STEPS_SECS:-?}s (the steps from COPY src on, as timed in the first build)"
  # The edited builder stage (the src/ copy, untagged) would stay behind as cache that no later
  # build can use: remove it, newest first, so kept caches do not pile it up.
  docker image rm switchboard:src-edit >/dev/null 2>&1 || true
  local ids
  ids=$(plain_log "$log" | awk '/^Step [0-9]+\/[0-9]+ : /{ keep = ($0 ~ /COPY src \.\/src|RUN touch src\/main.rs/) }
             keep && /^ ---> [0-9a-f]+$/ { print $2 }' | tac)
  [ -z "$ids" ] || docker image rm $ids >/dev/null 2>&1 || true
  rm -rf "$ctx"
}

# Runs the image as docker-compose.yml does (read-only root, tmpfs data dir), its port published
# on a free loopback port, and checks the user, the read-only root, that the node writes its
# data, the healthcheck and a draining `docker stop`.
image_run_checks() {
  local port
  port=$(free_port)
  docker run -d --name sb-image --read-only --tmpfs /var/lib/switchboard:uid=10001,gid=10001,mode=0700 --tmpfs /tmp \
    -p "127.0.0.1:$port:5001" -e JWT_SECRET="$SECRET" -e FILE_URL_SECRET="$SECRET" switchboard:local >/dev/null
  local t0=$SECONDS status=""
  while [ $((SECONDS - t0)) -lt 90 ]; do
    status=$(docker inspect -f '{{.State.Health.Status}} {{.State.Status}}' sb-image)
    [[ "$status" == healthy* || "$status" == *exited ]] && break
    sleep 1
  done
  echo "healthcheck: '$status' after $((SECONDS - t0))s"
  check "healthcheck turns healthy" [ "${status%% *}" = healthy ]
  if [ "${status%% *}" != healthy ]; then docker logs sb-image 2>&1 | tail -20; return 0; fi

  local pid uid base="http://127.0.0.1:$port"
  pid=$(docker inspect -f '{{.State.Pid}}' sb-image)
  uid=$(awk '/^Uid:/{print $2}' "/proc/$pid/status")
  echo "node process uid $uid, image user $(docker image inspect -f '{{.Config.User}}' switchboard:local)"
  check "node runs as a non-root user (10001)" [ "$uid" = 10001 ]
  check "root filesystem is read-only" bash -c \
    "docker exec sb-image sh -c 'touch /usr/local/bin/x' 2>&1 | grep -q 'Read-only file system'"
  local tok code
  tok=$(docker exec sb-image switchboard token --id alice --role user)
  code=$(curl -s -m 10 -o "$WORK/chat.json" -w '%{http_code}' -X POST -H "authorization: Bearer $tok" \
    -H 'content-type: application/json' -d '{}' "$base/api/chats")
  echo "POST /api/chats on the read-only container: $code; data dir: $(docker exec sb-image ls -A /var/lib/switchboard | tr '\n' ' ')"
  check "the node saves to its data dir (chat created)" [ "$code" = 201 ]
  check "readyz 200" [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]

  t0=$SECONDS
  timeout 60 docker stop -t 30 sb-image >/dev/null
  local exit_code
  exit_code=$(docker inspect -f '{{.State.ExitCode}}' sb-image)
  echo "docker stop: exit status $exit_code after $((SECONDS - t0))s"
  check "docker stop drains and exits 0" [ "$exit_code" = 0 ]
  check "the drain ends before docker's kill deadline (30 s)" [ $((SECONDS - t0)) -lt 30 ]
  docker rm sb-image >/dev/null
}

# Removes the build's cgroup (cgroup v1: one directory per controller; v2: one), children first.
image_build_cgroup_remove() {
  local d
  for d in /sys/fs/cgroup/*"$BUILD_CGROUP" /sys/fs/cgroup"$BUILD_CGROUP"; do
    [ -d "$d" ] || continue
    find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
    rmdir "$d" 2>/dev/null || true
  done
}
