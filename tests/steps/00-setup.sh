#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (as root), and builds.
# Idempotent: a second run installs nothing and rebuilds only what changed.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"

# chromium: the browser tests' browser (tests/browser drives it with playwright-core).
apt_packages=(redis-server nginx haproxy prometheus chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The packages' own services are not wanted: tests start their own servers on free ports.
  for svc in nginx haproxy prometheus; do
    (service "$svc" stop || true) >/dev/null 2>&1
  done
fi

# Python tools: the MongoDB-wire test server and the offline deployment checkers.
python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt

# The JavaScript client tests' packages (the official socket.io-client).
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
# The browser tests' packages (playwright-core, socket.io-client, axe-core); playwright-core
# never downloads a browser (the tests launch Debian's /usr/bin/chromium).
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

# clippy, which 10-cargo-test.sh runs before the tests (a no-op where it is installed).
if ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add clippy
fi
if ! cargo fmt --version >/dev/null 2>&1; then
  rustup component add rustfmt
fi

# The vendored crates' upstream releases, into the cargo registry cache: 10-cargo-test.sh
# checks offline that vendor/ is each release plus its patches (vendor/README.md).
for crate in engineioxide socketioxide socketioxide-core socketioxide-redis; do
  vendor/update.sh --check "$crate" >/dev/null
done

# One build of everything the steps run.
cargo build --workspace --all-targets
