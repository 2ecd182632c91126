#!/usr/bin/env bash
# Self-test of the measuring instrument: loadgen against the min-epoll
# yardstick (TCP and UDP, ping-pong and pipelined, tiny and multi-segment
# messages, the length codec's bytes) must report no errors and sane
# numbers; against a deliberately broken echo (python3) it must report
# verify errors / lost datagrams and exit non-zero. Loopback only; every run
# is bounded (well under a second of load each).
set -euo pipefail

R="${TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}"
find_bin() {  # runfiles layout under bazel test, bazel-bin otherwise
  for c in "$R/sluice/$1" "$R/$1" "$R/bazel-bin/$1"; do [ -x "$c" ] && { echo "$c"; return; }; done
  echo "missing $1" >&2; exit 1
}
LOADGEN=$(find_bin perf/loadgen)
ECHO=$(find_bin perf/peers/min_epoll_echo)
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

start() {  # start CMD... ; sets PORT from its first stdout line
  local out="$TMP/srv.$RANDOM"
  : > "$out"
  "$@" > "$out" &
  PIDS+=($!)
  for _ in $(seq 100); do
    PORT=$(sed -n 's/.*:\([0-9][0-9]*\).*/\1/p' "$out" | head -1)
    [ -n "$PORT" ] && return 0
    sleep 0.05
  done
  echo "server did not start: $*" >&2; exit 1
}

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
pass=0; fail=0
check() {  # check NAME CONDITION-ON-$J
  if eval "$2"; then pass=$((pass+1)); else echo "FAIL: $1: $J" >&2; fail=$((fail+1)); fi
}

start "$ECHO" --port 0
TCP=$PORT
start "$ECHO" --port 0 --proto udp
UDP=$PORT

run_ok() {  # run_ok NAME ARGS... : no errors, no loss, messages flowed
  local name=$1; shift
  J=$("$LOADGEN" --port "$TCP" --duration-s 0.4 --warmup-s 0.1 --quiet "$@") || { echo "FAIL: $name exited $?: $J" >&2; fail=$((fail+1)); return; }
  check "$name errors" '[ "$(field "$J" errors)" = 0 ]'
  check "$name lost" '[ "$(field "$J" lost)" = 0 ]'
  check "$name msgs" '[ "$(field "$J" msgs)" -gt 10 ]'
  check "$name p50<=p99<=max" 'python3 -c "import json,sys; j=json.loads(sys.argv[1]); sys.exit(not (0 < j[\"p50_us\"] <= j[\"p99_us\"] <= j[\"p999_us\"] <= j[\"max_us\"]))" "$J"'
}
run_ok ping-pong --conns 1
run_ok pipelined --conns 16 --pipeline 8 --threads 2
run_ok many-conns --conns 300
run_ok tiny --conns 4 --size 1 --pipeline 4
run_ok multi-segment --conns 2 --size 200000 --pipeline 2
run_ok length-prefix-bytes --conns 4 --codec length   # a raw echo returns the prefix too
TCP_SAVE=$TCP; TCP=$UDP
run_ok udp --proto udp --conns 8 --pipeline 4
TCP=$TCP_SAVE

# A corrupting TCP echo (flips one bit at byte 3000) and a lossy UDP echo.
cat > "$TMP/bad.py" <<'PY'
import socket, sys, threading
if sys.argv[1] == "tcp":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
    print(f"listening on 127.0.0.1:{s.getsockname()[1]}", flush=True)
    def serve(c):
        n = 0
        while True:
            d = c.recv(65536)
            if not d: return
            b = bytearray(d)
            if n <= 3000 < n + len(b): b[3000 - n] ^= 1
            n += len(b)
            c.sendall(bytes(b))
    while True:
        c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    print(f"listening on 127.0.0.1:{s.getsockname()[1]}", flush=True)
    n = 0
    while True:
        d, a = s.recvfrom(65536); n += 1
        if n % 10: s.sendto(d, a)
PY
start python3 "$TMP/bad.py" tcp
set +e
J=$("$LOADGEN" --port "$PORT" --conns 1 --duration-s 0.3 --warmup-s 0 --quiet); rc=$?
set -e
check "corrupt echo exit status" '[ "$rc" = 1 ]'
check "corrupt echo verify_errors" '[ "$(field "$J" verify_errors)" -ge 1 ]'
start python3 "$TMP/bad.py" udp
J=$("$LOADGEN" --port "$PORT" --proto udp --conns 2 --pipeline 2 --duration-s 0.4 --warmup-s 0 --udp-timeout-ms 50 --quiet)
check "lossy udp lost" '[ "$(field "$J" lost)" -ge 1 ]'
check "lossy udp no errors" '[ "$(field "$J" errors)" = 0 ]'

# Refuses non-loopback targets.
set +e
"$LOADGEN" --host 192.0.2.1 --port 9 --duration-s 0.1 --quiet > /dev/null 2>&1; rc=$?
set -e
check "non-loopback refused" '[ "$rc" = 2 ]'

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
