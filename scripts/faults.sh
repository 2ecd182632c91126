#!/usr/bin/env bash
# Fault-injection campaigns on the real back ends (docs/ROBUSTNESS.md,
# "Fault injection"): builds //tests:fault_test under --config=faults and
# runs it round after round, each round on fresh seeds
# (SLUICE_FAULT_FIRST_SEED advances by 10,000,000), until the time budget
# per back end is spent. Prints runs, runs/s and every violation with its
# replay command; exits non-zero when any run failed.
#
#   scripts/faults.sh --minutes 5                  # every back end, 5 min each
#   scripts/faults.sh --backend epoll-et --minutes 30
#   scripts/faults.sh --backend uring --rounds 1   # one round (~4,500 runs)
set -uo pipefail
cd "$(dirname "$0")/.."

backends=all
minutes=0
rounds=0
scale=1
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backends=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$minutes" = 0 ] && [ "$rounds" = 0 ]; then rounds=1; fi

# shellcheck disable=SC2086
bazel ${BAZEL_ARGS:-} build --config=faults //tests:fault_test || exit 1
# shellcheck disable=SC2086
bin="$(bazel ${BAZEL_ARGS:-} info --config=faults bazel-bin 2>/dev/null)/tests/fault_test"
[ -x "$bin" ] || { echo "no fault_test binary at $bin" >&2; exit 1; }
if [ "$backends" = all ]; then
  backends=$(bazel-bin/servers/echo_server --list-io 2>/dev/null | awk '$2 == "available" {print $1}' | paste -sd, -)
  [ -n "$backends" ] || backends=blocking,nonblocking,select,poll,epoll,epoll-et,uring
fi

failed_total=0
IFS=, read -ra list <<<"$backends"
for be in "${list[@]}"; do
  filter="*FaultRuns.*/${be//-/_}"
  start=$(date +%s)
  round=0 runs=0 failed=0
  while :; do
    round=$((round + 1))
    out=$(SLUICE_FAULT_FIRST_SEED=$((round * 10000000)) SLUICE_FAULT_RUNS_SCALE=$scale \
          "$bin" --gtest_filter="$filter" 2>&1)
    rc=$?
    n=$(grep -oE '^\[[^]]+\] [0-9]+ runs' <<<"$out" | awk '{s += $2} END {print s + 0}')
    runs=$((runs + n))
    if [ "$rc" -ne 0 ]; then
      failed=$((failed + 1))
      grep -E 'seed=|replay:|Failure' <<<"$out" | head -40
    fi
    elapsed=$(( $(date +%s) - start ))
    if [ "$rounds" != 0 ] && [ "$round" -ge "$rounds" ]; then break; fi
    if [ "$minutes" != 0 ] && [ "$elapsed" -ge $((minutes * 60)) ]; then break; fi
  done
  elapsed=$(( $(date +%s) - start ))
  rate=$(awk -v r="$runs" -v s="$elapsed" 'BEGIN {printf "%.0f", (s > 0 ? r / s : 0)}')
  echo "backend ${be}: rounds ${round}  runs ${runs}  failed rounds ${failed}  ${rate} runs/s  ${elapsed} s"
  failed_total=$((failed_total + failed))
done
[ "$failed_total" -eq 0 ]
