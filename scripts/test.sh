#!/usr/bin/env bash
# Builds and runs every test (bazel test //...; benchmarks are excluded by
# tag), then prints "N passed, M failed" counted from Bazel's per-target
# results. Exits non-zero on any failure.
#
#   scripts/test.sh              # the suite
#   scripts/test.sh --sanitize   # the suite under asan, then ubsan
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }

configs=("")
if [ "${1:-}" = "--sanitize" ]; then configs=("--config=asan" "--config=ubsan"); fi

passed=0
failed=0
rc_all=0
for cfg in "${configs[@]}"; do
  log=$(mktemp)
  # shellcheck disable=SC2086
  bazel test $cfg //... 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # Bazel's summary: one line per test target ending in PASSED/FAILED/...
  p=$(grep -E '^//[^ ]+ +(\(cached\) )?PASSED' "$log" | wc -l)
  f=$(grep -E '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|FLAKY|INCOMPLETE)' "$log" | wc -l)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # build failure
  passed=$((passed + p))
  failed=$((failed + f))
  [ "$rc" -ne 0 ] && rc_all=1
  rm -f "$log"
done

echo "${passed} passed, ${failed} failed"
[ "$rc_all" -eq 0 ] && [ "$failed" -eq 0 ]
