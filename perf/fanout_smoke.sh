#!/usr/bin/env bash
# Smoke test of //perf:fanout_server and //perf:fanout_client (correctness
# only, no figures checked): at 50 connections, broadcast mode must deliver
# every line to every connection (50 subscribers + the publisher) and echo
# mode every echo, and the client must have sampled the server's /proc.
# Each phase runs against a fresh server; everything is bounded (~2 s).
set -euo pipefail
R="${TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}"
find_bin() {  # runfiles layout under bazel test, bazel-bin otherwise
  for c in "$R/sluice/$1" "$R/$1" "$R/bazel-bin/$1"; do [ -x "$c" ] && { echo "$c"; return; }; done
  echo "missing $1" >&2; exit 1
}
SERVER=$(find_bin perf/fanout_server)
CLIENT=$(find_bin perf/fanout_client)
TMP=$(mktemp -d)
SPID=""
cleanup() { [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# phase MODE CLIENT-ARGS...: fresh server, one client run; prints its JSON.
phase() {
  local mode=$1; shift
  : > "$TMP/srv.out"
  "$SERVER" --mode "$mode" --io epoll --threads 2 > "$TMP/srv.out" 2> "$TMP/srv.err" &
  SPID=$!
  local port=""
  for _ in $(seq 100); do
    port=$(sed -nE 's/^listening on [^ ]*:([0-9]+) .*/\1/p' "$TMP/srv.out" | head -1)
    [ -n "$port" ] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "fanout_server did not start" >&2; cat "$TMP/srv.err" >&2; exit 1; }
  local rc=0
  "$CLIENT" --port "$port" --mode "$mode" --server-pid "$SPID" --settle-ms 0 --deadline-s 10 \
            --timeout-s 15 "$@" > "$TMP/json" || rc=$?
  kill -TERM "$SPID"
  wait "$SPID" || { echo "fanout_server exited non-zero" >&2; cat "$TMP/srv.err" >&2; exit 1; }
  SPID=""
  cat "$TMP/json"; cat "$TMP/json" >&2
  [ "$rc" -eq 0 ] || { echo "fanout_client ($mode) exited $rc" >&2; exit 1; }
}

check() {  # check JSON KEY VALUE
  grep -q "\"$2\":$3[,}]" <<<"$1" || { echo "FAIL: $2 is not $3 in: $1" >&2; exit 1; }
}

# 6 lines to 51 connections: 306 deliveries.
J=$(phase broadcast --conns 50 --lines 6 --line-rate 100)
check "$J" ok true
check "$J" expected 306
check "$J" delivered 306
check "$J" subscriber_delivered 300
check "$J" errors 0
grep -Eq '"server_threads":[3-9]' <<<"$J" || { echo "FAIL: server /proc not sampled: $J" >&2; exit 1; }

# 4 echoes on each of 50 connections: 200.
J=$(phase echo --conns 50 --echo-per-conn 4 --echo-rate 2000)
check "$J" ok true
check "$J" expected 200
check "$J" delivered 200
check "$J" errors 0
echo PASS
