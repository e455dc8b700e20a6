#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, builds, and runs
# every step in tests/steps/ in order. Each step is a script that exits non-zero on failure.
#
#   bash tests/run-all.sh            # every step not marked opt-in
#   bash tests/run-all.sh 10 20      # only the steps whose names start with 10 or 20
#   bash tests/run-all.sh 60         # a step marked '# opt-in:' runs only when named
set -uo pipefail
cd "$(dirname "$0")/.."
export SWITCHBOARD_ROOT="$PWD"

passed=0
failed=0
failed_names=()
for step in tests/steps/*.sh; do
  name=$(basename "$step" .sh)
  if [ $# -gt 0 ]; then
    keep=no
    for want in "$@"; do [[ "$name" == "$want"* ]] && keep=yes; done
    [ "$keep" = yes ] || continue
  elif grep -q '^# opt-in:' "$step"; then
    # Not yet inside CI's time budget: run it by naming it (`bash tests/run-all.sh 60`).
    echo "=== step $name skipped ($(sed -n 's/^# opt-in: //p' "$step"))"
    continue
  fi
  echo "=== step $name"
  start=$SECONDS
  if bash "$step"; then
    passed=$((passed + 1))
    echo "=== step $name passed in $((SECONDS - start))s"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    echo "=== step $name FAILED in $((SECONDS - start))s"
    # Set-up failures make every later step meaningless.
    [[ "$name" == 00* ]] && break
  fi
done
[ "$failed" -gt 0 ] && echo "failed steps: ${failed_names[*]}"
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
