#!/usr/bin/env bash
# Memory per idle connection, per IO model: builds //perf:mem_bench and runs
# it with the given flags (see perf/mem_bench.cc, docs/PERFORMANCE.md).
#
#   scripts/mem_bench.sh                      # every IO model, 10k conns (blocking 2k, select 1k), ~30 s
#   scripts/mem_bench.sh --quick              # 1k conns (blocking 500), ~10 s
#   scripts/mem_bench.sh --backends epoll,uring --json /tmp/mem.json
#   scripts/mem_bench.sh --help
#
# Run it as root for the per-cache slab figures (/proc/slabinfo is root-only).
# BAZEL_STARTUP="--output_base=DIR" passes Bazel startup options.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC2086
(cd "$root" && bazel ${BAZEL_STARTUP:-} build //perf:mem_bench >&2)
exec "$root/bazel-bin/perf/mem_bench" "$@"
