#!/usr/bin/env bash
# Planted bugs (docs/ROBUSTNESS.md, "Planted bugs"): proves the fault and
# simulation campaigns catch real mistakes, and how fast. For each patch in
# tests/planted/ it applies the patch to a scratch clone of HEAD, builds the
# campaign that should catch it, runs that campaign for at most 60 s
# (stopping at the first violation) and reports the time to it. A plant
# that is not caught in time fails the script.
#
#   scripts/planted.sh                      # every plant
#   scripts/planted.sh idle_after_close     # one
#
# The scratch clone and its Bazel output base live under ${PLANTED_DIR}
# (default /tmp/sluice-planted); the main build cache is untouched.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
dir=${PLANTED_DIR:-/tmp/sluice-planted}
limit=60

# name | build config | campaign (run from the scratch clone's root)
plants=(
  "short_write_dropped|faults|fault_test --gtest_fail_fast --gtest_filter=*FaultRuns.*/uring"
  "multishot_not_rearmed|faults|fault_test --gtest_fail_fast --gtest_filter=*FaultRuns.*/uring"
  "idle_after_close|normal|sim_campaign --suite all --interleave --stop-at-first"
  "close_drops_output|normal|sim_campaign --suite all --interleave --stop-at-first"
  "backpressure_off_by_one_read|normal|sim_campaign --suite all --interleave --stop-at-first"
)

wanted=("$@")
rm -rf "$dir/src"
mkdir -p "$dir"
git clone -q "$repo" "$dir/src" || exit 1
cd "$dir/src" || exit 1
git checkout -q "$(git -C "$repo" rev-parse HEAD)"
bz() { bazel --output_base="$dir/ob" "$@"; }

missed=0
printf '%-30s %-8s %s\n' plant caught seconds
for p in "${plants[@]}"; do
  IFS='|' read -r name config cmd <<<"$p"
  if [ ${#wanted[@]} -gt 0 ] && ! printf '%s\n' "${wanted[@]}" | grep -qx "$name"; then continue; fi
  git checkout -q -- .
  git apply "$repo/tests/planted/$name.patch" || { echo "$name: patch does not apply"; missed=$((missed + 1)); continue; }
  bin=${cmd%% *}
  args=${cmd#* }
  flags=()
  [ "$config" = faults ] && flags=(--config=faults)
  if ! bz build "${flags[@]}" "//tests:$bin" >"$dir/$name.build.log" 2>&1; then
    echo "$name: build failed (see $dir/$name.build.log)"
    missed=$((missed + 1))
    continue
  fi
  path="$(bz info "${flags[@]}" bazel-bin 2>/dev/null)/tests/$bin"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  SLUICE_FAULT_RUNS_SCALE=100 timeout "$limit" "$path" $args >"$dir/$name.log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
    printf '%-30s %-8s %s\n' "$name" yes "$secs"
    grep -m3 -E 'VIOLATION|seed=|replay' "$dir/$name.log" | sed 's/^/    /'
  else
    printf '%-30s %-8s %s\n' "$name" NO "$secs"
    missed=$((missed + 1))
  fi
done
git checkout -q -- .
bz shutdown >/dev/null 2>&1
[ "$missed" -eq 0 ]
