#!/usr/bin/env bash
# Compare sluice's IO back ends (and peer echo servers) side by side:
# builds what it needs, then runs perf/compare.py with the given flags.
#
#   scripts/compare.sh --quick                       # ~1 min demo sweep
#   scripts/compare.sh --conns 1,64,1000 --pipeline 1,8 --reps 3 --out docs/perf/run
#   scripts/compare.sh --help
#
# See docs/PERFORMANCE.md for the methodology.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 perf/compare.py "$@"
