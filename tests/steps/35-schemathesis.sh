#!/usr/bin/env bash
# The REST contract under generated input (issue 31): schemathesis against a live node, as a
# user and as staff, bounded in time (tests/contract/schemathesis_run.py).
set -euo pipefail
cd "$SWITCHBOARD_ROOT"
exec python3 tests/contract/schemathesis_run.py
