#!/usr/bin/env bash
# Self-test of the measuring instrument: loadgen against the min-epoll
# yardstick (TCP and UDP, ping-pong and pipelined, tiny and multi-segment
# messages, the length codec's bytes) must report no errors and sane
# numbers; against a deliberately broken echo (python3) it must report
# verify errors / lost datagrams and exit non-zero. --tls against Python's
# ssl echo (certificates from the openssl CLI): verified runs are clean; a
# CA or a name that does not match fails with the reason. Loopback only; every run
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
run_ok udp-host-name --proto udp --conns 2 --host localhost
TCP=$TCP_SAVE
# --host takes names (resolved up front); an unknown one is a bad option:
# exit 2 with getaddrinfo's reason, at once.
run_ok host-name --conns 2 --host localhost
run_ok numeric-v4 --conns 2 --host 127.0.0.1
rc=0
J=$(timeout 20 "$LOADGEN" --port "$TCP" --host no-such-host.invalid --duration-s 0.4 --quiet 2>"$TMP/bad-host.err") || rc=$?
check "unknown host exits 2" '[ "$rc" = 2 ]'
check "unknown host says why" 'grep -q "cannot resolve --host no-such-host.invalid: " "$TMP/bad-host.err"'

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

# --tls against an independent TLS echo (Python's ssl, one thread per
# connection), with a CA and a server certificate for 127.0.0.1 made here.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca \
  -keyout "$TMP/ca.key" -out "$TMP/ca.pem" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=other \
  -keyout "$TMP/other.key" -out "$TMP/other.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$TMP/srv.key" -out "$TMP/srv.csr" 2>/dev/null
openssl x509 -req -in "$TMP/srv.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial -days 2 \
  -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1') -out "$TMP/srv.pem" 2>/dev/null
cat > "$TMP/tls_echo.py" <<'PY'
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(f"listening on 127.0.0.1:{s.getsockname()[1]}", flush=True)
def serve(c):
    try:
        c = ctx.wrap_socket(c, server_side=True)
        while True:
            d = c.recv(65536)
            if not d: return
            c.sendall(d)
    except (OSError, ssl.SSLError):
        return
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
start python3 "$TMP/tls_echo.py" "$TMP/srv.pem" "$TMP/srv.key"
TCP=$PORT
J=$("$LOADGEN" --port "$TCP" --duration-s 0.3 --warmup-s 0 --quiet --tls --tls-ca "$TMP/ca.pem")
check "tls reported" '[ "$(field "$J" tls)" = 1 ]'
run_ok tls-ping-pong --conns 2 --tls --tls-ca "$TMP/ca.pem"
run_ok tls-pipelined-multi-record --conns 4 --size 40000 --pipeline 4 --threads 2 --tls --tls-ca "$TMP/ca.pem"
run_ok tls-by-name --conns 2 --tls --tls-ca "$TMP/ca.pem" --tls-server-name localhost
run_ok tls-insecure --conns 2 --tls --tls-insecure
tls_refused() {  # tls_refused NAME EXPECTED-STDERR ARGS...
  local name=$1 want=$2; shift 2
  set +e
  J=$("$LOADGEN" --port "$TCP" --conns 2 --duration-s 0.1 --warmup-s 0 --quiet --tls "$@" 2> "$TMP/err"); rc=$?
  set -e
  check "$name exit status" '[ "$rc" = 1 ]'
  check "$name connect_errors" '[ "$(field "$J" connect_errors)" = 2 ]'
  check "$name reason" 'grep -q "TLS handshake with 127.0.0.1:$TCP failed: $want" "$TMP/err" || { cat "$TMP/err" >&2; false; }'
}
tls_refused tls-other-ca "certificate verify failed" --tls-ca "$TMP/other.pem"
tls_refused tls-wrong-name "certificate verify failed: hostname mismatch" --tls-ca "$TMP/ca.pem" --tls-server-name example.com
set +e
"$LOADGEN" --port "$TCP" --duration-s 0.1 --quiet --tls-ca "$TMP/ca.pem" > /dev/null 2>&1; rc=$?
set -e
check "--tls-ca without --tls refused" '[ "$rc" = 2 ]'

# Refuses non-loopback targets.
set +e
"$LOADGEN" --host 192.0.2.1 --port 9 --duration-s 0.1 --quiet > /dev/null 2>&1; rc=$?
set -e
check "non-loopback refused" '[ "$rc" = 2 ]'

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
