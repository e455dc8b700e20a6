#!/usr/bin/env bash
# Repeated fan-out sweeps, for figures that one sweep cannot give: ROUNDS rounds (default 3), each
# running Switchboard on one node, Switchboard on two nodes + Redis, and the baseline on one and on
# two nodes, interleaved so that every round's four runs share the machine's state. Before each
# run it records what else ran on the machine (load average, the busiest other processes). Then
# it writes $OUT/sweeps.md: every run's knee, and per configuration the median knee with its
# spread (min-max), the medians' ratios (Switchboard / baseline, two nodes / one node).
#
#   loadtest/sweeps.sh                      # 3 rounds, the README's rates
#   ROUNDS=5 OUT=/tmp/sweeps loadtest/sweeps.sh
#
# EXTRA adds Switchboard configurations to every round, for before/after figures in the same
# runs: space-separated `name:nodes:binary[:VAR=value,...]` (the binary `-` is SWITCHBOARD_BIN),
#
#   EXTRA="before-1:1:/work/bins/switchboard-old before-2:2:/work/bins/switchboard-old \
#          nolog-1:1:-:RECOVERY_WINDOW_SECS=0" loadtest/sweeps.sh
#
# Bounded: ROUNDS x (4 + EXTRA) sweeps, each bounded by bench.sh (fixed steps of fixed length).
# Env: ROUNDS, RATES, OUT (default loadtest/results/sweeps), SWITCHBOARD_BIN, LOADGEN_BIN, EXTRA,
# SAME_RATES (default 70,140,200: the rates whose CPU per delivery and p99 are compared), RETRIES,
# SUMMARY_ONLY, CONFIGS (the built-in configurations to run, default `sb-1 sb-2 node-1 node-2`; e.g.
# `CONFIGS=sb-1` with EXTRA for a before/after of one node only).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
rates=${RATES:-10,20,35,50,70,100,120,140,170,200,240,280,340,400,480,560,680,800,960,1120,1360,1600}
out=${OUT:-loadtest/results/sweeps}
mkdir -p "$out"
export OUT=$out
log="$out/machine.txt"
# SUMMARY_ONLY=1 runs nothing and writes the summary of the runs already in $OUT.
summary_only=${SUMMARY_ONLY:-0}
[ "$summary_only" = 1 ] || : >"$log"
# RETRIES (default 1): a failing step is run again this many times before a sweep stops (one
# stall of the machine does not end a sweep); the summary gives the knees without retries too.
flags=(--receivers 1000 --rates "$rates" --step-secs 3 --grace-ms 2000 --retries "${RETRIES:-1}")

machine_state() {
  {
    echo "== $1 at $(date -u +%H:%M:%S) UTC"
    cat /proc/loadavg
    # The busiest processes other than this script's (a run's servers are not started yet).
    ps -eo pcpu,pid,comm --sort=-pcpu | head -6
  } >>"$log"
}

extra=(${EXTRA:-})
for round in $(seq 1 "$rounds"); do
  [ "$summary_only" = 1 ] && break
  for config in ${CONFIGS:-sb-1 sb-2 node-1 node-2} "${extra[@]}"; do
    system=switchboard
    nodes=1
    bin=${SWITCHBOARD_BIN:-}
    vars=()
    case $config in
      sb-1) ;;
      sb-2) nodes=2 ;;
      node-1) system=baseline ;;
      node-2) system=baseline nodes=2 ;;
      *:*:*)
        IFS=: read -r name nodes b v <<<"$config"
        [ "$b" = - ] || bin=$b
        [ -z "${v:-}" ] || IFS=, read -r -a vars <<<"$v"
        config=$name
        ;;
      *) echo "EXTRA entry '$config' is not name:nodes:binary[:VAR=value,...]" >&2; exit 2 ;;
    esac
    label="$config-r$round"
    machine_state "$label"
    env ${bin:+SWITCHBOARD_BIN=$bin} "${vars[@]}" NODES=$nodes LABEL=$label \
      loadtest/bench.sh fanout "$system" "${flags[@]}" >"$out/$label.log" 2>&1 ||
      echo "run $label failed: see $out/$label.log"
  done
done

CONFIGS="${CONFIGS:-sb-1 sb-2 node-1 node-2}" \
  EXTRA_NAMES="$(for e in ${EXTRA:-}; do printf '%s ' "${e%%:*}"; done)" python3 - "$out" "$rounds" <<'EOF'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
configs = [("sb-1", "Switchboard, 1 node"), ("sb-2", "Switchboard, 2 nodes + Redis"),
           ("node-1", "baseline, 1 node"), ("node-2", "baseline, 2 nodes + Redis")]
configs = [(c, n) for c, n in configs if c in os.environ["CONFIGS"].split()]
configs += [(n, f"Switchboard, {n}") for n in os.environ.get("EXTRA_NAMES", "").split()]
runs = {c: [] for c, _ in configs}
lines = ["# Repeated fan-out sweeps", "",
         "1000 receivers of one room, one sender, rates swept up; a step passes with p99 <= 100 ms and",
         ">= 99 % delivered. Servers and Redis on core 0, generator on core 1. What else ran before each",
         "run: `machine.txt`.", "",
         "| run | knee, msgs/s | knee without retries | deliveries/s | p99 at knee, ms | user CPU µs/delivery at knee |",
         "|---|---:|---:|---:|---:|---:|"]
strict = {c: [] for c, _ in configs}
for r in range(1, rounds + 1):
    for c, _ in configs:
        label = f"{c}-r{r}"
        try:
            d = json.load(open(f"{out}/fanout-{label}.json"))
        except (OSError, ValueError):
            lines.append(f"| {label} | failed | | | | |")
            continue
        knee = d.get("kneeRate") or 0
        runs[c].append(knee)
        # Without retries: the last rate passed before the first failed attempt.
        first_fail = d.get("firstFailRate")
        first = max((s["rate"] for s in d["steps"] if s.get("passed") and s.get("attempt", 1) == 1
                     and (first_fail is None or s["rate"] < first_fail)), default=0)
        strict[c].append(first)
        row = next((s for s in d["steps"] if s["rate"] == knee and s.get("passed")), None)
        p99 = row["latency"]["p99Ms"] if row else "-"
        cpu = d.get("kneeCpuUsPerDelivery", "-")
        lines.append(f"| {label} | {knee} | {first} | {d.get('kneeDeliveriesPerSec') or 0:,.0f} | {p99} | {cpu} |")
lines += ["", "| configuration | runs | median knee | spread (min-max) | median knee without retries | spread |",
          "|---|---:|---:|---|---:|---|"]
med, med_strict = {}, {}
for c, name in configs:
    if runs[c]:
        med[c] = statistics.median(runs[c])
        med_strict[c] = statistics.median(strict[c])
        lines.append(f"| {name} | {len(runs[c])} | {med[c]:g} | {min(runs[c])}-{max(runs[c])} | "
                     f"{med_strict[c]:g} | {min(strict[c])}-{max(strict[c])} |")
# The same rates in every configuration: what a delivery costs and how late it is, before the
# knee (medians over the rounds; rates a configuration did not pass are left out).
same = [int(r) for r in os.environ.get("SAME_RATES", "70,140,200").split(",")]
lines += ["", "Per rate, medians over the rounds (passed steps only): user CPU µs per delivery / p99 ms.", "",
          "| configuration | " + " | ".join(f"{r} msgs/s" for r in same) + " |",
          "|---|" + "---:|" * len(same)]
for c, name in configs:
    cells = []
    for rate in same:
        cpu, p99 = [], []
        for r in range(1, rounds + 1):
            try:
                d = json.load(open(f"{out}/fanout-{c}-r{r}.json"))
            except (OSError, ValueError):
                continue
            row = next((s for s in d["steps"] if s["rate"] == rate and s.get("passed")), None)
            if row:
                cpu.append(row["serverUserCpuUsPerDelivery"])
                p99.append(row["latency"]["p99Ms"])
        cells.append(f"{statistics.median(cpu):.2f} / {statistics.median(p99):.0f}" if cpu else "-")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
lines.append("")
def ratio(a, b, what):
    if med.get(a) and med.get(b):
        without = (f"{med_strict[a] / med_strict[b]:.2f}" if med_strict.get(a) and med_strict.get(b)
                   else "-")
        lines.append(f"- {what}: {med[a] / med[b]:.2f} (without retries: {without})")
ratio("sb-1", "node-1", "Switchboard / baseline, 1 node (median knees)")
ratio("sb-2", "node-2", "Switchboard / baseline, 2 nodes (median knees)")
ratio("sb-2", "sb-1", "Switchboard 2 nodes / 1 node (median knees)")
ratio("node-2", "node-1", "baseline 2 nodes / 1 node (median knees)")
# Each EXTRA configuration against Switchboard with as many nodes (`before-2` / `sb-2`).
for c in os.environ.get("EXTRA_NAMES", "").split():
    base = "sb-" + c.rsplit("-", 1)[-1]
    ratio(c, base, f"{c} / {base} (median knees)")
open(f"{out}/sweeps.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
