# Sourced by tests/steps/60-docker.sh: the two base images the Dockerfile names, made locally
# (no image registry is reachable here), each made once and then cached:
#
# - debian:bookworm-slim: `debootstrap --variant=minbase bookworm`, imported with `docker import`.
#   The root filesystem is kept as $DOCKER_CACHE/bookworm-minbase.tar (and the image in the
#   engine's data root), so later runs skip debootstrap. Like the official image it carries
#   bookworm, bookworm-updates and bookworm-security sources and a policy-rc.d that keeps
#   package installs from starting services. It also carries this machine's own extra CA
#   certificates (/usr/local/share/ca-certificates/*.crt, where a TLS-inspecting egress proxy
#   puts its CA): only installed ones, which `ca-certificates` picks up when an image installs
#   it, so builds reach crates.io and PyPI over HTTPS as the host does.
# - rust:1.95-slim-bookworm: that plus the parts of the machine's own Rust 1.95 toolchain that
#   cargo and rustc use (tests/docker/images/rust/Dockerfile).

base_images() {
  local tarball="$DOCKER_CACHE/bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    local t0=$SECONDS root="$DOCKER_CACHE/rootfs.tmp"
    rm -rf "$root"
    echo "debootstrap --variant=minbase bookworm (once; cached in $tarball)"
    timeout 900 debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$LOGS/debootstrap.log" 2>&1 \
      || { tail -20 "$LOGS/debootstrap.log" >&2; return 1; }
    cat >"$root/etc/apt/sources.list" <<'SOURCES'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod +x "$root/usr/sbin/policy-rc.d"
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    docker image rm -f debian:bookworm-slim rust:1.95-slim-bookworm >/dev/null 2>&1 || true
    echo "bookworm minbase made in $((SECONDS - t0))s"
  fi
  if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    timeout 300 docker import -c 'CMD ["bash"]' "$tarball" debian:bookworm-slim >/dev/null
    docker image rm -f rust:1.95-slim-bookworm >/dev/null 2>&1 || true
  fi
  if ! docker image inspect rust:1.95-slim-bookworm >/dev/null 2>&1; then
    local t0=$SECONDS ctx sysroot
    sysroot=$(readlink -f "$(rustc +1.95.0 --print sysroot)")
    ctx=$(mktemp -d "$DOCKER_CACHE/rust-context.XXXXXX")
    cp "$SWITCHBOARD_ROOT/tests/docker/images/rust/Dockerfile" "$ctx/"
    # What cargo and rustc need, no more: the two binaries and lib/ (rustc's driver, LLVM, the
    # standard library and rust-lld), about 520 MB; not the HTML docs (800 MB), clippy, rustfmt
    # or rustdoc. Hard links where they can be: the toolchain is not copied on disk.
    mkdir -p "$ctx/toolchain/bin"
    local part
    for part in bin/cargo bin/rustc lib; do
      cp -al "$sysroot/$part" "$ctx/toolchain/$part" 2>/dev/null || cp -a "$sysroot/$part" "$ctx/toolchain/$part"
    done
    DOCKER_BUILDKIT=0 timeout 900 docker build -t rust:1.95-slim-bookworm "$ctx" >"$LOGS/rust-image.log" 2>&1 \
      || { tail -20 "$LOGS/rust-image.log" >&2; rm -rf "$ctx"; return 1; }
    rm -rf "$ctx"
    echo "rust:1.95-slim-bookworm made in $((SECONDS - t0))s"
  fi
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' debian:bookworm-slim
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' rust:1.95-slim-bookworm
}
