#!/usr/bin/env bash
# min_mmsg_echo, in both --wait modes, under perf/loadgen (which checks
# every echoed byte): no verify errors and no lost datagrams from one
# socket up to 64 sockets (so recvmmsg returns batches), at the largest
# UDP/IPv4 payload, and the exit line on SIGTERM. It refuses TCP.
# Loopback only; every run is well under a second of load.
set -euo pipefail

R="${TEST_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
find_bin() {  # runfiles layout under bazel test, bazel-bin otherwise
  for c in "$R/sluice/$1" "$R/$1" "$R/bazel-bin/$1"; do [ -x "$c" ] && { echo "$c"; return; }; done
  echo "missing $1" >&2; exit 1
}
LOADGEN=$(find_bin perf/loadgen)
ECHO=$(find_bin perf/peers/min_mmsg_echo)
TMP=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

pass=0; fail=0
check() {  # check NAME CONDITION
  if eval "$2"; then pass=$((pass+1)); else echo "FAIL: $1${J:+: $J}" >&2; fail=$((fail+1)); fi
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

J=
"$ECHO" --port 0 > /dev/null 2>&1 && rc=0 || rc=$?
check "refuses tcp" '[ "$rc" = 2 ]'

for mode in block epoll; do
  # Created here: the background job opens its redirections only once it
  # has forked, and the port poll below may read before that.
  : > "$TMP/out"
  : > "$TMP/err"
  "$ECHO" --port 0 --proto udp --wait "$mode" > "$TMP/out" 2> "$TMP/err" &
  PID=$!
  PORT=
  for _ in $(seq 100); do
    PORT=$(sed -n 's/.*:\([0-9][0-9]*\).*/\1/p' "$TMP/out" | head -1)
    [ -n "$PORT" ] && break
    sleep 0.05
  done
  [ -n "$PORT" ] || { echo "min_mmsg_echo --wait $mode did not start" >&2; exit 1; }
  # The shapes stay within the server's default receive buffer (no drops):
  # 64 x 1 KiB in flight, or one 65507-byte datagram.
  for shape in "--conns 1" "--conns 64 --size 1024" "--conns 16 --pipeline 4 --size 8" \
               "--conns 1 --size 65507"; do
    # shellcheck disable=SC2086
    J=$("$LOADGEN" --port "$PORT" --proto udp --duration-s 0.3 --warmup-s 0.05 --quiet $shape) || true
    check "$mode $shape errors" '[ "$(field "$J" errors)" = 0 ]'
    check "$mode $shape lost" '[ "$(field "$J" lost)" = 0 ]'
    check "$mode $shape msgs" '[ "$(field "$J" msgs)" -gt 10 ]'
  done
  J=
  kill -TERM "$PID"
  wait "$PID" && rc=0 || rc=$?
  PID=
  check "$mode exits 0 on SIGTERM" '[ "$rc" = 0 ]'
  check "$mode exit line" 'grep -Eq "echoed [1-9][0-9]* datagrams in [1-9][0-9]* batches, dropped 0" "$TMP/err"'
done

echo "min_mmsg_echo_test: $pass passed, $fail failed"
[ "$fail" = 0 ]
