#!/bin/sh
# perf/ccbench.py's pure functions (Jain index, percentile, link figures,
# table formatting); no root, no network, well under a second.
set -e
cd "$(dirname "$0")"
exec python3 -m unittest -q ccbench_test
