#!/usr/bin/env bash
# Smoke test of the DoS lab's tools (~10 s; scripts/doslab.sh is the lab).
# Skips (exit 0, with the reason) when not root or without namespaces.
#   1. perf/flood refuses (exit 2, a message) to run in the initial
#      namespace toward a non-loopback address, and to spoof there at all;
#      toward loopback it runs, bounded, and reports what it sent;
#   2. a tiny lab (server and client namespaces, one veth): a short SYN
#      flood from spoofed sources with syncookies on makes the server send
#      cookies (SyncookiesSent > 0) while perf/dosprobe's good client still
#      connects and gets its echo; the SYN-ACKs to the spoofed sources are
#      dropped at the client side, not answered with RSTs;
#   3. no namespace is left behind.
set -euo pipefail
R="${TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}"
find_file() {  # runfiles layout under bazel test, the source tree otherwise
  for c in "$R/sluice/$1" "$R/$1" "$R/bazel-bin/$1"; do [ -e "$c" ] && { echo "$c"; return; }; done
  echo "missing $1" >&2; exit 1
}
skip() { echo "doslab_smoke: SKIPPED: $*"; exit 0; }
fail() { echo "doslab_smoke: FAIL: $*" >&2; exit 1; }
FLOOD=$(find_file perf/flood)
PROBE=$(find_file perf/dosprobe)
ECHO=$(find_file servers/echo_server)

# 1. The guard (needs no root: it must refuse before it opens anything).
rc=0; msg=$("$FLOOD" --mode udp --dst 10.78.0.2 --port 9 --rate 10 --seconds 1 2>&1 >/dev/null) || rc=$?
if [ "$(readlink /proc/self/ns/net)" = "$(readlink /proc/1/ns/net 2>/dev/null)" ] ||
   ! readlink /proc/1/ns/net >/dev/null 2>&1; then
  [ "$rc" = 2 ] || fail "flood toward 10.78.0.2 in the initial namespace: exit $rc, want 2"
  grep -q "refusing to run" <<<"$msg" || fail "no clear message: $msg"
  rc=0; "$FLOOD" --mode syn --dst 127.0.0.1 --port 9 --src-cidr 10.78.128.0/17 --rate 10 --seconds 1 \
    2>/dev/null || rc=$?
  [ "$rc" = 2 ] || fail "spoofing in the initial namespace: exit $rc, want 2"
  out=$("$FLOOD" --mode udp --dst 127.0.0.1 --port 9 --rate 1000 --seconds 0.2)
  grep -qE '"packets":(1[5-9][0-9]|20[0-9])[,}]' <<<"$out" || fail "loopback flood: $out"
  echo "guard ok: $msg"
else
  echo "(already inside a network namespace: the initial-namespace guard is not checked here)"
fi

[ "$(id -u)" = 0 ] || skip "not root (the lab creates network namespaces)"
command -v ip >/dev/null || skip "no iproute2 (ip)"
P="doslab-smoke-$$"
ip netns add "$P-srv" 2>/dev/null || skip "cannot create network namespaces here"
TMP=$(mktemp -d)
cleanup() {
  for ns in "$P-srv" "$P-cli"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add "$P-cli"
for ns in "$P-srv" "$P-cli"; do ip -n "$ns" link set lo up; done
ip -n "$P-cli" link add eth0 type veth peer name eth0 netns "$P-srv"
ip -n "$P-cli" addr add 10.78.0.1/24 dev eth0
ip -n "$P-srv" addr add 10.78.0.2/24 dev eth0
ip -n "$P-cli" link set eth0 up
ip -n "$P-srv" link set eth0 up
ip -n "$P-srv" route add 10.78.128.0/17 via 10.78.0.1  # spoofed sources: to the client side
set_srv() { ip netns exec "$P-srv" sh -c "echo $2 > /proc/sys/$(tr . / <<<"$1")"; }
set_srv net.ipv4.tcp_syncookies 1
set_srv net.core.somaxconn 128
set_srv net.ipv4.tcp_max_syn_backlog 128
counter() {  # NS GROUP NAME
  ip netns exec "$1" cat /proc/net/netstat /proc/net/snmp | awk -v g="$2:" -v n="$3" '
    $1 == g { if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1 } else { print $col[n]; exit } }'
}

ip netns exec "$P-srv" "$ECHO" --host 0.0.0.0 --port 7000 --io epoll > "$TMP/echo" 2>&1 &
srv=$!
for _ in $(seq 50); do grep -q '^listening on' "$TMP/echo" && break; sleep 0.1; done
grep -q '^listening on' "$TMP/echo" || fail "echo_server did not start: $(cat "$TMP/echo")"
sent0=$(counter "$P-srv" TcpExt SyncookiesSent)
drop0=$(counter "$P-cli" Ip InAddrErrors)
rst0=$(counter "$P-cli" Tcp OutRsts)
ip netns exec "$P-cli" "$PROBE" --proto tcp --host 10.78.0.2 --port 7000 --bind 10.78.0.1 \
  --rate 50 --seconds 4 --phases before:0.5,during:3,after:0.5 > "$TMP/probe.json" &
probe=$!
sleep 0.5
ip netns exec "$P-cli" "$FLOOD" --mode syn --dst 10.78.0.2 --port 7000 \
  --src-cidr 10.78.128.0/17 --rate 20000 --seconds 3 > "$TMP/flood.json"
wait "$probe"
cat "$TMP/flood.json" "$TMP/probe.json"
sent=$(( $(counter "$P-srv" TcpExt SyncookiesSent) - sent0 ))
dropped=$(( $(counter "$P-cli" Ip InAddrErrors) - drop0 ))
rsts=$(( $(counter "$P-cli" Tcp OutRsts) - rst0 ))
echo "SyncookiesSent +$sent; SYN-ACKs to spoofed sources dropped at the client side: $dropped, RSTs: $rsts"
grep -qE '"packets":[1-9][0-9]{3,}' "$TMP/flood.json" || fail "the flood sent (almost) nothing"
[ "$sent" -gt 0 ] || fail "no SYN cookies sent under a SYN flood with syncookies on"
[ "$dropped" -gt 0 ] || fail "no SYN-ACK to a spoofed source reached the client side"
[ "$rsts" = 0 ] || fail "the client side answered SYN-ACKs to spoofed sources with $rsts RSTs"
python3 - "$TMP/probe.json" <<'PY' || fail "good client did not get through"
import json, sys
w = {x["name"]: x for x in json.load(open(sys.argv[1]))["windows"]}
d = w["during"]
assert d["attempts"] >= 100, d
assert d["success_pct"] >= 95, d
assert d["echo_ok"] >= 0.95 * d["attempts"], d
print("good client during the flood:", d["success_pct"], "% connected, p99", d["connect_p99_ms"], "ms")
PY

# 3. Nothing left behind.
kill -TERM "$srv"; wait "$srv" || fail "echo_server: exit $? on SIGTERM"
cleanup
trap - EXIT
left=$(ip netns list | awk '{print $1}' | grep -F "$P" || true)
[ -z "$left" ] || fail "namespaces left behind: $left"
echo "doslab_smoke: ok"
