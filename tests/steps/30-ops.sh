#!/usr/bin/env bash
# Monitoring files: promtool checks the alert rules, runs their unit tests and checks the
# scrape configs; then a real node and a real Prometheus server show that every metric the
# dashboard and the alerts name is exported, and that scraped counters move
# (tests/ops/check_ops.py). The drain and log tests are Rust tests (step 10, tests/integration/ops.rs).
set -euo pipefail
cd "$SWITCHBOARD_ROOT"
command -v promtool >/dev/null || { echo "promtool is missing: run tests/steps/00-setup.sh"; exit 1; }
command -v prometheus >/dev/null || { echo "prometheus is missing: run tests/steps/00-setup.sh"; exit 1; }

promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
promtool check config deploy/prometheus/prometheus.yml

# Debian's Prometheus is built without Kubernetes discovery. Where promtool lacks it, the
# Kubernetes config is checked with its `kubernetes_sd_configs` block swapped for a static
# target, so everything else in it (relabelling, rule files) is still checked.
k8s=deploy/prometheus/prometheus-kubernetes.yml
if out=$(promtool check config "$k8s" 2>&1); then
  echo "$out"
elif grep -q "field kubernetes_sd_configs not found" <<<"$out"; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp deploy/prometheus/alerts.yml "$tmp/"
  python3 - "$k8s" "$tmp/prometheus-kubernetes.yml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
swapped, n = re.subn(r"(?m)^(\s+)kubernetes_sd_configs:\n(?:\1\s+.*\n)+",
                     lambda m: f"{m.group(1)}static_configs:\n{m.group(1)}  - targets: ['10.0.0.1:9464']\n", text)
assert n == 1, "expected one kubernetes_sd_configs block"
open(sys.argv[2], "w").write(swapped)
PY
  promtool check config "$tmp/prometheus-kubernetes.yml"
  echo "(checked $k8s with its Kubernetes discovery swapped for a static target: this promtool has no Kubernetes discovery)"
else
  echo "$out"
  exit 1
fi

python3 -m json.tool deploy/grafana/switchboard.json >/dev/null
cargo build --bin switchboard
timeout 320 python3 tests/ops/check_ops.py --binary target/debug/switchboard
