#!/usr/bin/env bash
# sluice demo: the same echo server on every IO model, driven by our load
# generator, then framed echo, all on 127.0.0.1. Prints what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
source scripts/lib.sh

echo "== building"
bazel build -c opt //servers:echo_server //perf:loadgen 2>&1 | grep -E '^(ERROR|FAILED)' || true
ECHO=bazel-bin/servers/echo_server
LOADGEN=bazel-bin/perf/loadgen
[ -x "$ECHO" ] && [ -x "$LOADGEN" ] || { echo "build failed"; exit 1; }
TMP=$(mktemp -d)
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$TMP"' EXIT

echo
echo "== IO back ends on this machine (echo_server --list-io)"
$ECHO --list-io

echo
echo "== by hand: one line through the default back end"
start_server "$TMP/s.out" $ECHO --port 0
cat "$TMP/s.out"
reply=$(printf 'hello, sluice\n' | timeout 5 nc -q1 127.0.0.1 "$SERVER_PORT" || true)
echo "sent 'hello, sluice', got back '$reply'"
stop_server && echo "server stopped on SIGTERM, exit 0"

echo
echo "== every IO model: 64 connections, 64-byte messages, ping-pong, 2 s each"
printf '%-12s %12s %10s %10s %10s %8s %s\n' io msgs/s p50_us p99_us max_us errors exit
for io in $($ECHO --list-io | awk '$2 == "available" {print $1}'); do
  start_server "$TMP/s.out" $ECHO --io "$io" --port 0 --log-level warn
  res=$($LOADGEN --port "$SERVER_PORT" --conns 64 --size 64 --pipeline 1 \
        --duration-s 2 --warmup-s 0.5 --quiet || true)
  rc=0; stop_server || rc=$?
  printf '%-12s %12s %10s %10s %10s %8s %s\n' "$io" \
    "$(json_field "$res" msgs_per_s)" "$(json_field "$res" p50_us)" \
    "$(json_field "$res" p99_us)" "$(json_field "$res" max_us)" \
    "$(json_field "$res" errors)" "$rc"
done

echo
echo "== framing: length-prefixed messages (4-byte big-endian length) split and coalesced by TCP"
start_server "$TMP/s.out" $ECHO --codec length --port 0 --log-level warn
cat "$TMP/s.out"
res=$($LOADGEN --port "$SERVER_PORT" --codec length --conns 16 --size 1000 --pipeline 8 \
      --duration-s 2 --warmup-s 0.5 --quiet || true)
echo "loadgen: $res"
stop_server
echo
echo "== a bad frame (length 0xFFFFFFFF) closes only that connection"
start_server "$TMP/s.out" $ECHO --codec length --port 0
printf '\xff\xff\xff\xff' | timeout 5 nc -q2 127.0.0.1 "$SERVER_PORT" >/dev/null || true
sleep 0.2
grep -m1 'codec' "$TMP/s.out.err" || true
stop_server && echo "server still healthy; stopped with exit 0"
echo
echo "demo done."
