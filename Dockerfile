# syntax=docker/dockerfile:1
# Switchboard container image: a Rust build stage, then a small non-root runtime.
#
#   docker build -t switchboard .
#   docker run -p 5001:5001 -e JWT_SECRET=... switchboard
#
# Settings are the environment variables of PROTOCOL.md (`switchboard --help` lists them). The
# image runs in production (SWITCHBOARD_ENV=production): it needs JWT_SECRET, and the
# development console (which mints tokens over HTTP) does not exist in it. Secrets are read from
# the environment only, never from flags (which every local user can read through `ps`).

# The toolchain the repository is built and tested with (Cargo.toml says at least 1.94).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
# The Cargo profile the node is built with. `release` for every real image; the test suite
# (tests/steps/60-docker.sh) builds with `image-ci` (Cargo.toml: release at opt-level 1), which
# compiles the cold dependency graph in about half the CPU time and behaves the same. The
# binary is target/<profile>/switchboard for any profile but `dev`, which is not meant for here.
ARG CARGO_PROFILE=release

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
ARG CARGO_PROFILE
WORKDIR /build

# Dependencies in their own layer: build the locked dependency graph against empty crate roots,
# so editing src/ reuses this layer and recompiles only Switchboard itself. The manifest names
# tests/integration/main.rs as a test target, so it gets an empty stand-in too (tests are not
# part of the image). The workspace's other members must be there for Cargo to load it: the
# patched socketioxide crates (vendor/, built into the node) and the load generator's manifest
# (the generator itself is not built).
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
COPY loadtest/Cargo.toml ./loadtest/
RUN mkdir -p src tests/integration loadtest/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > tests/integration/main.rs \
    && echo 'fn main() {}' > loadtest/src/main.rs \
    && cargo build --profile "$CARGO_PROFILE" --locked --bin switchboard \
    && rm -rf src

# The real sources. COPY keeps the files' own mtimes, which can be older than the stand-ins
# above: touch the crate roots so Cargo rebuilds them.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --profile "$CARGO_PROFILE" --locked --bin switchboard \
    && install -D -m 0755 "target/$CARGO_PROFILE/switchboard" /out/switchboard

FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# ca-certificates: TLS to managed Redis (rediss://) and MongoDB (mongodb+srv with TLS).
# Unpinned on purpose: the base image tag pins the release, and this package should follow
# Debian's security updates on every rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/switchboard \
       --create-home --shell /usr/sbin/nologin switchboard

COPY --from=builder /out/switchboard /usr/local/bin/switchboard
COPY deploy/docker/probe.sh /usr/local/bin/switchboard-probe

ENV SWITCHBOARD_ENV=production \
    HOST=0.0.0.0 \
    PORT=5001 \
    DATA_DIR=/var/lib/switchboard \
    LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/switchboard
EXPOSE 5001

# Liveness only (the process answers HTTP). Readiness (/readyz) depends on Redis and MongoDB and
# is checked by the orchestrator: docker-compose.yml and the Helm chart probe it separately.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/switchboard-probe", "/healthz"]

# SIGTERM starts the drain (SHUTDOWN_GRACE_SECS, default 20 s): give the container longer than
# that to stop (`docker stop -t 30`, compose `stop_grace_period`, Kubernetes
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchboard"]
