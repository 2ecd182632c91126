#!/usr/bin/env bash
# `bazel run //perf:compare -- ARGS`: runs perf/compare.py from the workspace
# (it needs bazel-bin/ there), the same as scripts/compare.sh ARGS.
set -euo pipefail
cd "${BUILD_WORKSPACE_DIRECTORY:?run me with bazel run, or use scripts/compare.sh}"
exec python3 perf/compare.py "$@"
