#!/usr/bin/env bash
# Deployment files (issue 6), checked on a machine without Docker, Kubernetes or the helm binary:
#   1. offline: hadolint, Compose v2 `config`, Helm lint/render + kubernetes-validate --strict,
#      ServiceMonitor and Grafana dashboard schemas, settings against `switchboard --help`
#      (tests/deploy/offline_checks.py);
#   2. live: three real nodes behind deploy/nginx/switchboard.conf and deploy/haproxy/haproxy.cfg,
#      socket.io-client over long-polling and WebSocket, with non-sticky negative controls
#      (tests/deploy/lb_cluster.py, which says whether cluster mode ran).
# Needs what 00-setup.sh installs (nginx, haproxy, redis-server, tests/requirements.txt,
# tests/js packages) and a built target/debug/switchboard.
set -euo pipefail
cd "$SWITCHBOARD_ROOT"

# The schema tooling (npm @grafana/schema, @kubernetes-models/prometheus-operator,
# ts-json-schema-generator) lives apart from the client tests' packages.
if [ ! -d tests/deploy/node_modules ] || [ tests/deploy/package-lock.json -nt tests/deploy/node_modules ]; then
  (cd tests/deploy && npm ci --no-audit --no-fund --loglevel=error)
fi

status=0
echo "--- offline checks"
python3 tests/deploy/offline_checks.py 2> >(grep -v 'funcMap fail' >&2) || status=1
echo "--- load balancers in front of three nodes"
python3 tests/deploy/lb_cluster.py || status=1
exit $status
