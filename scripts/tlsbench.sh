#!/usr/bin/env bash
# TLS cost, sluice vs Boost.Asio, in one run (perf/tlsbench.py says how):
# server CPU per echoed message (64 B and 4 KiB, 64 connections; sluice
# TLS, Asio TLS, sluice plaintext) and full/resumed handshakes per second,
# printed with their ratios. Builds what it needs first.
#
#   scripts/tlsbench.sh                    # 3 interleaved runs of each cell (~2 min)
#   scripts/tlsbench.sh --reps 5 --out /tmp/tls.json
#   scripts/tlsbench.sh --help
#
# Figures and the machine they came from: docs/TLS.md, "Performance".
set -euo pipefail
cd "$(dirname "$0")/.."
nice -n 15 bazel build //servers:echo_server //perf:loadgen //perf:tls_handshakes \
  //perf/peers:asio_tls_echo >&2
exec python3 perf/tlsbench.py "$@"
