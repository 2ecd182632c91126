#!/usr/bin/env bash
# Interoperability test: the independent Python rudp client (written from
# docs/RUDP.md alone) against sluice's echo_server --proto rudp.
#
#   tests/rudp_peer_test.sh [path/to/echo_server]
#
# Runs the peer plain, with 10 % loss each way, and with malformed datagrams
# before and during a session. Exits non-zero if any run fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
peer="${here}/rudp_peer.py"
server="${1:-bazel-bin/servers/echo_server}"
if [[ ! -x "${server}" ]]; then
  echo "rudp_peer_test: echo_server not found at '${server}'" >&2
  exit 2
fi

port="$(python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"

log="$(mktemp "${TMPDIR:-/tmp}/rudp_peer_test.XXXXXX")"
"${server}" --proto rudp --port "${port}" >"${log}" 2>&1 &
server_pid=$!
cleanup() {
  if kill -0 "${server_pid}" 2>/dev/null; then
    kill "${server_pid}" 2>/dev/null || true
    wait "${server_pid}" 2>/dev/null || true
  fi
  rm -f "${log}"
}
trap cleanup EXIT

# wait for the server to listen (up to 5 s)
for _ in $(seq 1 50); do
  if grep -q "listening on" "${log}"; then break; fi
  if ! kill -0 "${server_pid}" 2>/dev/null; then
    echo "rudp_peer_test: echo_server exited:" >&2
    cat "${log}" >&2
    exit 1
  fi
  sleep 0.1
done
if ! grep -q "listening on" "${log}"; then
  echo "rudp_peer_test: echo_server did not start:" >&2
  cat "${log}" >&2
  exit 1
fi

failed=0
run() {
  local name="$1"
  shift
  echo "== ${name}: rudp_peer.py $*"
  if timeout 40 python3 "${peer}" --port "${port}" "$@"; then
    echo "PASS ${name}"
  else
    echo "FAIL ${name}"
    failed=1
  fi
}

run plain   --messages 50  --size 5000
run drop10  --messages 100 --size 5000 --drop 0.1 --seed 7
run garbage --messages 20  --size 3000 --garbage

if ! kill -0 "${server_pid}" 2>/dev/null; then
  echo "FAIL echo_server died during the test:" >&2
  cat "${log}" >&2
  failed=1
fi

if [[ "${failed}" -ne 0 ]]; then
  echo "rudp_peer_test: FAILED"
  exit 1
fi
echo "rudp_peer_test: all passed"
