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
  "idle_after_close|normal|sim_campaign --suite all --interleave --stop-at-first --minutes 1"
  "close_drops_output|normal|sim_campaign --suite all --interleave --stop-at-first --minutes 1"
  "backpressure_off_by_one_read|normal|sim_campaign --suite all --interleave --stop-at-first --minutes 1"
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
  # Caught = the first violation line (a fault run waits out its 5 s hang
  # bound before it reports; that wait is counted).
  : >"$dir/$name.log"  # before the clock starts: no stale line counts
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  SLUICE_FAULT_RUNS_SCALE=100 "$path" $args >"$dir/$name.log" 2>&1 &
  pid=$!
  caught=""
  while kill -0 "$pid" 2>/dev/null; do
    if grep -qE 'VIOLATION|seed=[0-9]+ backend=' "$dir/$name.log"; then caught=yes; break; fi
    if awk -v a="$start" -v b="$(date +%s.%N)" -v l="$limit" 'BEGIN {exit !(b - a >= l)}'; then break; fi
    sleep 0.2
  done
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if [ -z "$caught" ] && grep -qE 'VIOLATION|seed=[0-9]+ backend=' "$dir/$name.log"; then caught=yes; fi
  if [ -n "$caught" ]; then
    printf '%-30s %-8s %s\n' "$name" yes "$secs"
    grep -m2 -A1 -E 'VIOLATION|seed=[0-9]+ backend=' "$dir/$name.log" | cut -c1-220 | sed 's/^/    /'
  else
    printf '%-30s %-8s %s\n' "$name" NO "$secs"
    missed=$((missed + 1))
  fi
done
git checkout -q -- .
bz shutdown >/dev/null 2>&1
[ "$missed" -eq 0 ]
