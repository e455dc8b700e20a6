#!/usr/bin/env bash
# A short, bounded, reproducible run of each fuzz target under fuzz/ (issue 31; docs/security.md).
# Built with the instrumentation `cargo fuzz build --sanitizer none` uses, on stable rustc, so
# the suite needs neither cargo-fuzz nor a nightly toolchain. FUZZ_SEED (default 31) and
# FUZZ_RUNS (executions per target, default 1000000) make a run repeatable; FUZZ_SECS (default 40)
# bounds each target's time whatever the machine's speed. A crash fails the step and leaves its
# input in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$SWITCHBOARD_ROOT/fuzz"
seed=${FUZZ_SEED:-31}
runs=${FUZZ_RUNS:-1000000}
secs=${FUZZ_SECS:-40}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SWITCHBOARD_ROOT/target}/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation off build scripts and proc macros (as cargo fuzz).
host=$(rustc -vV | sed -n 's/^host: //p')
# The decoders' targets build in a minute or two; the two that link Switchboard itself
# (handshake_auth, domain_parsers: feature `app`) build its whole dependency graph with the
# instrumentation, about 30 minutes on 2 cores, past CI's budget: FUZZ_APP=1 adds them (by hand;
# docs/security.md).
features=()
[ "${FUZZ_APP:-0}" = 1 ] && features=(--features app)
cargo build --release --bins --quiet --target "$host" "${features[@]}"
failed=0
for target in $(ls fuzz_targets | sed 's/\.rs$//'); do
  [ -x "$CARGO_TARGET_DIR/$host/release/$target" ] || { echo "--- fuzz $target: not built (FUZZ_APP=1 builds it)"; continue; }
  work=$(mktemp -d)
  mkdir -p "artifacts/$target"
  echo "--- fuzz $target: seed $seed, at most $runs runs or ${secs}s"
  if "$CARGO_TARGET_DIR/$host/release/$target" -seed="$seed" -runs="$runs" -max_total_time="$secs" \
      -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" "$work" "corpus/$target" 2>"$work.log"; then
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$work.log" || true
  else
    failed=1
    echo "fuzz $target FAILED (seed $seed); its input is in fuzz/artifacts/$target/:"
    grep -A30 -E "panicked|ERROR: libFuzzer|SUMMARY" "$work.log" | head -60
  fi
  rm -rf "$work" "$work.log"
done
[ "$failed" -eq 0 ]
