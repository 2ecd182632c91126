#!/usr/bin/env bash
# sluice demo: the same echo server on every IO model, driven by our load
# generator, then framed echo, all on 127.0.0.1. Prints what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
source scripts/lib.sh

echo "== building"
bazel build -c opt //servers:echo_server //perf:loadgen //servers:heartbeat_server \
  //servers:heartbeat_client 2>&1 | grep -E '^(ERROR|FAILED)' || true
ECHO=bazel-bin/servers/echo_server
LOADGEN=bazel-bin/perf/loadgen
HBS=bazel-bin/servers/heartbeat_server
HBC=bazel-bin/servers/heartbeat_client
[ -x "$ECHO" ] && [ -x "$LOADGEN" ] && [ -x "$HBS" ] && [ -x "$HBC" ] || { echo "build failed"; exit 1; }
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
grep -m1 'closed' "$TMP/s.out.err" || true
stop_server && echo "server still healthy; stopped with exit 0"

echo
echo "== rudp (docs/RUDP.md): whole messages over UDP, the same echo handler, every byte verified"
start_server "$TMP/s.out" $ECHO --proto rudp --port 0 --log-level warn
cat "$TMP/s.out"
res=$($LOADGEN --proto rudp --port "$SERVER_PORT" --conns 16 --size 3000 --pipeline 4 \
      --duration-s 2 --warmup-s 0.5 --quiet 2>/dev/null || true)
echo "loadgen: $res"
stop_server

echo
echo "== heartbeats (docs/PROTOCOL.md): 4 clients PING every 200 ms; session 0 goes silent after 1 s"
for proto in tcp udp rudp; do
  start_server "$TMP/hb.out" $HBS --proto $proto --port 0 --interval-ms 200 --misses 3
  cat "$TMP/hb.out"
  res=$($HBC --proto $proto --port "$SERVER_PORT" --conns 4 --interval-ms 200 --duration-s 2.5 \
        --stop-pings-after-s 1 --log-level warn || true)
  echo "client: $res"
  echo "server log (one line per join and per drop):"
  grep -E ' (join|drop) ' "$TMP/hb.out.err" | sed 's/^/  /'
  stop_server && echo "heartbeat server ($proto) stopped on SIGTERM, exit 0"
done

echo
echo "== the server restarts under 3 clients: they reconnect with backoff + jitter"
start_server "$TMP/hb.out" $HBS --port 0 --interval-ms 100 --misses 3 --log-level warn
PORT=$SERVER_PORT
$HBC --port "$PORT" --conns 3 --interval-ms 100 --duration-s 3 --backoff-min-ms 100 \
  --backoff-max-ms 1000 >"$TMP/hbc.out" 2>"$TMP/hbc.err" &
CLIENT_PID=$!
sleep 1
stop_server && echo "server stopped at t=1 s"
sleep 0.5
start_server "$TMP/hb.out" $HBS --port "$PORT" --interval-ms 100 --misses 3 --log-level warn
echo "server restarted on the same port at t=1.5 s"
wait "$CLIENT_PID" || true
grep -E 'reconnected' "$TMP/hbc.err" | sed 's/^.*\] //; s/^/  /' || true
echo "client: $(cat "$TMP/hbc.out")"
echo "  (pings_sent = pongs_received + lost + in_flight; PINGs in flight when the server died are lost)"
stop_server

echo
echo "== IO models side by side (scripts/compare.sh --quick; the full sweep is in docs/PERFORMANCE.md)"
scripts/compare.sh --quick --out "$TMP/compare" || echo "comparison failed (see above)"
echo
echo "== congestion control: rudp's controllers beside kernel TCP over an emulated link (scripts/ccbench.sh --quick; docs/CONGESTION.md)"
if [ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ]; then
  scripts/ccbench.sh --quick --out "$TMP/ccbench" || echo "ccbench failed (see above)"
else
  echo "skipped: needs root and /dev/net/tun (linkem makes two network namespaces)"
fi
echo
echo "demo done."
