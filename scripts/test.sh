#!/usr/bin/env bash
# Builds and runs every test (bazel test //...; benchmarks are excluded by
# tag), then prints "N passed, M failed" counted from Bazel's per-target
# results. Exits non-zero on any failure.
#
#   scripts/test.sh              # the suite, then the fault-injection phase
#   scripts/test.sh --sanitize   # the suite under asan, then ubsan
#
# The fault-injection phase (docs/ROBUSTNESS.md, "Fault injection") builds
# with --config=faults: //tests:fault_test (seeded runs with benign and
# harmful faults on every back end), then the conformance, heartbeat, UDP
# and linger suites unchanged under a benign plan, which must not change
# anything they can observe. The simulated back end's seeds
# (//tests:sim_test) run in the suite itself.
#
# Last, examples/consumer: a workspace of its own that depends on sluice
# through local_repository, as an outside project would (README, "Using
# sluice from your own Bazel workspace"); its bazel test //... runs there,
# in its own output base (the disk cache is shared), and its one test
# target counts like any other.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }

# Each phase: bazel arguments, run in order.
benign="seed=1,rate=0.1,mode=benign,eagain=0"
phases=("//..."
        "--config=faults //tests:fault_test"
        "--config=faults --test_env=SLUICE_FAULTS=${benign} //tests:conformance_test //tests:heartbeat_test //tests:udp_test //tests:linger_test")
# "@DIR ARGS": run in DIR instead of the repository root. The consumer's
# Bazel server quits after 5 idle minutes: a second JVM need not linger.
phases+=("@examples/consumer //...")
if [ "${1:-}" = "--sanitize" ]; then phases=("--config=asan //..." "--config=ubsan //..."); fi

passed=0
failed=0
rc_all=0
for phase in "${phases[@]}"; do
  log=$(mktemp)
  dir=. startup=()
  if [[ "$phase" == @* ]]; then
    dir=${phase%% *}; dir=${dir#@}; phase=${phase#* }
    startup=(--max_idle_secs=300)
  fi
  echo "== (${dir}) bazel test ${phase}"
  # shellcheck disable=SC2086
  (cd "$dir" && bazel "${startup[@]}" test $phase) 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # Bazel's summary: one line per test target ending in PASSED/FAILED/...
  # "(cached)", or "(1/2 cached)" for a sharded target partly cached.
  p=$(grep -E '^//[^ ]+ +(\([0-9/]*\s*cached\) )?PASSED' "$log" | wc -l)
  f=$(grep -E '^//[^ ]+ +(\([0-9/]*\s*cached\) )?(FAILED|TIMEOUT|NO STATUS|FLAKY|INCOMPLETE)' "$log" | wc -l)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # build failure
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$rc" -ne 0 ] && rc_all=1
  rm -f "$log"
done

echo "${passed} passed, ${failed} failed"
[ "$rc_all" -eq 0 ] && [ "$failed" -eq 0 ]
