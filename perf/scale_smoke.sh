#!/usr/bin/env bash
# Smoke test of //perf:scale_client against heartbeat_server --workers 2
# (correctness only, no figures checked): 2,000 connections in two steps
# from 2 client processes over 2 source addresses, pinging every 300 ms and
# held 2 s, must all open, see every PING answered but those in flight,
# count zero false drops, and find both server workers in /proc. Then
# SIGTERM drains the workers and the supervisor exits 0. ~6 s.
set -euo pipefail
R="${TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}"
find_bin() {  # runfiles layout under bazel test, bazel-bin otherwise
  for c in "$R/sluice/$1" "$R/$1" "$R/bazel-bin/$1"; do [ -x "$c" ] && { echo "$c"; return; }; done
  echo "missing $1" >&2; exit 1
}
SERVER=$(find_bin servers/heartbeat_server)
CLIENT=$(find_bin perf/scale_client)
TMP=$(mktemp -d)
SPID=""
cleanup() { [ -n "$SPID" ] && kill -KILL "$SPID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

: > "$TMP/srv.out"
"$SERVER" --workers 2 --io epoll --interval-ms 300 --misses 3 > "$TMP/srv.out" 2> "$TMP/srv.err" &
SPID=$!
port=""
for _ in $(seq 100); do
  port=$(sed -nE 's/^listening on [^ ]*:([0-9]+) .*/\1/p' "$TMP/srv.out" | head -1)
  [ -n "$port" ] && break
  kill -0 "$SPID" 2>/dev/null || break
  sleep 0.05
done
[ -n "$port" ] || { echo "heartbeat_server did not start" >&2; cat "$TMP/srv.err" >&2; exit 1; }
grep -q "workers=2" "$TMP/srv.out"

rc=0
timeout 60 "$CLIENT" --port "$port" --conns 2000 --steps 500 --procs 2 --sources 2 \
  --rate 4000 --interval-ms 300 --misses 3 --hold-s 2 --step-hold-s 0.5 \
  --server-pid "$SPID" --json "$TMP/out.json" || rc=$?
cat "$TMP/out.json" >&2
[ "$rc" = 0 ] || { echo "scale_client exited $rc (3: false drops)" >&2; exit 1; }
python3 - "$TMP/out.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
steps = d["steps"]
assert [s["conns"] for s in steps] == [500, 2000], steps
for s in steps:
    assert s["open"] == s["conns"], s
    assert s["connect_failed"] == 0 and s["false_drops"] == 0 and s["late_drops"] == 0, s
    assert s["bad_frames"] == 0, s
    assert s["pings"] > 0 and 0 <= s["pings"] - s["pongs"] <= s["conns"], s
    assert s["server_processes"] == 3, s   # the supervisor and its two workers
    assert s["server_pss_mib"] > 0 and s["rtt_p99_ms"] > 0, s
print("scale_smoke: ok", [(s["conns"], s["pongs"]) for s in steps])
PY
kill -TERM "$SPID"
wait "$SPID" || { echo "heartbeat_server exited non-zero" >&2; cat "$TMP/srv.err" >&2; exit 1; }
SPID=""
grep -c "exited 0" "$TMP/srv.err" | grep -qx 2 || { cat "$TMP/srv.err" >&2; exit 1; }
