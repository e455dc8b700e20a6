#!/usr/bin/env bash
# Browser end-to-end tests (tests/browser): Debian's Chromium (installed by 00-setup, never a
# downloaded browser) driven by playwright-core against real nodes, a redis-server and nginx,
# with a test frontend on its own origin, and the development console. A failing test names the
# directory (tests/browser/artifacts/<test>/) that holds a screenshot and the console log of
# each of its pages.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"
if [ ! -x target/debug/switchboard ]; then
  echo "target/debug/switchboard is missing: run 00-setup (cargo build) first" >&2
  exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "/usr/bin/chromium is missing: run 00-setup (it installs Debian's chromium)" >&2
  exit 1
fi
# The node harness is shared with the JS client suite (tests/js/lib/harness.js).
[ -d tests/js/node_modules/socket.io-client ] || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
if [ ! -d tests/browser/node_modules ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
cd tests/browser
npm test
