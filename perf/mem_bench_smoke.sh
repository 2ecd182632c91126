#!/usr/bin/env bash
# Smoke test of //perf:mem_bench (correctness only, no figures checked):
# 200 idle connections on epoll must produce a table row and a JSON file.
set -euo pipefail
R="${TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}"
BIN=""
for c in "$R/sluice/perf/mem_bench" "$R/perf/mem_bench" "$R/bazel-bin/perf/mem_bench"; do
  [ -x "$c" ] && { BIN=$c; break; }
done
[ -n "$BIN" ] || { echo "missing perf/mem_bench" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$BIN" --backends=epoll --conns=200 --active-s=0.2 --timeout-s=60 --json "$TMP/m.json" > "$TMP/out"
cat "$TMP/out"
grep -Eq '^\| epoll \| 200 \| [0-9]+ \| [0-9]+ \|' "$TMP/out" || { echo "no epoll row" >&2; exit 1; }
grep -q '"backend":"epoll","conns":200,"ok":true' "$TMP/m.json" || { echo "bad JSON" >&2; exit 1; }
echo PASS
