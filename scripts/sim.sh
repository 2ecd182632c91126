#!/usr/bin/env bash
# Long simulation campaigns (docs/ROBUSTNESS.md, "Simulation"): builds
# //tests:sim_campaign and runs every suite (or --suite X) over consecutive
# seeds, for a seed count and/or a time budget per suite. Prints runs/s and
# every violation with its seed and the command that replays it; exits
# non-zero when any run failed.
#
#   scripts/sim.sh --seeds 100000               # 100k seeds per suite
#   scripts/sim.sh --minutes 10                 # 10 minutes per suite
#   scripts/sim.sh --suite idle --minutes 5 --first-seed 1000000
#   scripts/sim.sh --interleave --minutes 30    # every suite in turn, 30 min in all
set -uo pipefail
cd "$(dirname "$0")/.."

seeds=0
minutes=0
suite=all
first=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --first-seed) first=$2; shift 2 ;;
    --interleave) extra+=(--interleave); shift ;;
    --stop-at-first) extra+=(--stop-at-first); shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$seeds" = 0 ] && [ "$minutes" = 0 ]; then seeds=2000; fi

# ${BAZEL_ARGS} lets a caller pass startup options (e.g. --output_base=...).
# shellcheck disable=SC2086
bazel ${BAZEL_ARGS:-} build //tests:sim_campaign || exit 1
# bazel-bin follows the last build's configuration (--config=faults moves
# it): ask for this one's.
# shellcheck disable=SC2086
bin="$(bazel ${BAZEL_ARGS:-} info bazel-bin 2>/dev/null)/tests/sim_campaign"
exec "$bin" --suite "$suite" --seeds "$seeds" --minutes "$minutes" --first-seed "$first" "${extra[@]}"
