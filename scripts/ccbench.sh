#!/usr/bin/env bash
# The congestion-control bench (Pantheon-style): every scheme (rudp with
# each controller, kernel TCP cubic/bbr/reno, ENet, UDT) over a grid of
# perf/linkem links, bulk / small-message / fairness workloads. Needs root.
# Usage and options: the top of perf/ccbench.py, or --help.
#
#   scripts/ccbench.sh --quick                 # ~2 min demo, out in /tmp/ccbench-quick
#   scripts/ccbench.sh --out docs/perf/cc      # the full grid (hours)
set -euo pipefail
cd "$(dirname "$0")/.."
for a in "$@"; do
  case "$a" in -h|--help|--dry-run) exec python3 perf/ccbench.py "$@" ;; esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "ccbench: needs root (linkem creates network namespaces); try: sudo $0 $*" >&2
  exit 1
fi
bazel build -c opt //perf:linkem //perf:rudp_bulk //perf:msg_rtt //perf/peers:enet_bulk //perf/peers:udt_bulk >/dev/null
exec python3 perf/ccbench.py "$@"
