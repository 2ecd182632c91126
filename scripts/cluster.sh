#!/usr/bin/env bash
# Scale-out across "hosts" (issue 19): three network namespaces each run a
# heartbeat_server behind HAProxy (TCP mode, PROXY protocol v2, health
# checks); heartbeat clients in a fourth namespace connect through the
# balancer. Mid-run one host's server is killed (SIGKILL: a crashed host),
# later it comes back. Needs root; skips (exit 0) otherwise.
#
#   scripts/cluster.sh                 # 30 clients, ~20 s
#   scripts/cluster.sh --clients 60 --out /tmp/cluster.md
#
# Topology (names $PREFIX-<pid>-*, all deleted on exit):
#
#   cl 10.78.10.2 --- 10.78.10.1 lb (haproxy :9000) --- 10.78.1.1 --- h1 10.78.1.2 :7100
#                                                    --- 10.78.2.1 --- h2 10.78.2.2 :7100
#                                                    --- 10.78.3.1 --- h3 10.78.3.2 :7100
#
# The hosts only see the balancer's addresses on their links: the client
# addresses they log come from the PROXY v2 header (--proxy-protocol
# required; HAProxy's health checks send one too, check-send-proxy).
#
# Timeline: clients start at 0 (PING every 100 ms); h2's server is killed
# at --kill-at; HAProxy marks it DOWN after two failed checks (300 ms
# apart); the clients it served see their connection cut and reconnect
# (HAProxy sends them to h1/h3: leastconn); h2 restarts at --back-at and
# HAProxy marks it UP; a second client batch then connects and leastconn
# puts it on h2 first. Output: a Markdown summary (stdout, and --out).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

CLIENTS=30 LATE=10 DURATION=20 KILL_AT=6 BACK_AT=11 OUT="" BUILD=1
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; cat <<EOF
Options:
  --clients N     sessions of the first client batch (default $CLIENTS)
  --late N        sessions of the batch started after h2 is back (default $LATE)
  --duration S    length of the first batch's run (default $DURATION)
  --kill-at S     when h2's server is killed (default $KILL_AT)
  --back-at S     when it is restarted (default $BACK_AT)
  --out FILE      also write the summary there
  --no-build      use the binaries in bazel-bin as they are
EOF
}
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) CLIENTS=$2; shift ;;
    --late) LATE=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --kill-at) KILL_AT=$2; shift ;;
    --back-at) BACK_AT=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "cluster: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ! [ "$KILL_AT" -lt "$BACK_AT" ] || ! [ "$((BACK_AT + 4))" -lt "$DURATION" ]; then
  echo "cluster: need kill-at < back-at and back-at + 4 < duration" >&2; exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "cluster: SKIPPED: needs root (it creates network namespaces); try: sudo $0"
  exit 0
fi
scripts/deps.sh haproxy
if [ "$BUILD" = 1 ]; then
  bazel build //servers:heartbeat_server //servers:heartbeat_client >/dev/null 2>&1 ||
    { echo "cluster: build failed" >&2; exit 1; }
fi
B=$(pwd)/bazel-bin
HB=$B/servers/heartbeat_server HBC=$B/servers/heartbeat_client

P="cluster-$$"
NS_LB=$P-lb NS_CL=$P-cl HOSTS=(1 2 3)
TMP=$(mktemp -d /tmp/cluster.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  netns_teardown $NS_LB $NS_CL $P-h1 $P-h2 $P-h3
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for n in $NS_LB $NS_CL $P-h1 $P-h2 $P-h3; do
  ip netns add "$n"
  ip -n "$n" link set lo up
done
# veths made inside the balancer's namespace: no name ever exists in the
# host namespace.
ip -n $NS_LB link add to-cl type veth peer name eth0 netns $NS_CL
ip -n $NS_LB addr add 10.78.10.1/24 dev to-cl
ip -n $NS_CL addr add 10.78.10.2/24 dev eth0
ip -n $NS_LB link set to-cl up
ip -n $NS_CL link set eth0 up
for h in "${HOSTS[@]}"; do
  ip -n $NS_LB link add to-h$h type veth peer name eth0 netns $P-h$h
  ip -n $NS_LB addr add 10.78.$h.1/24 dev to-h$h
  ip -n $P-h$h addr add 10.78.$h.2/24 dev eth0
  ip -n $NS_LB link set to-h$h up
  ip -n $P-h$h link set eth0 up
done

# stamp: each line prefixed with the wall clock (s.ns), for the timeline.
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done; }

HB_ARGS=(--host 0.0.0.0 --port 7100 --io epoll --interval-ms 100 --misses 5
         --proxy-protocol required --peer-lines-per-s 0)
start_host() {  # H: the host's server, logging to $TMP/h$H.log
  ip netns exec $P-h$1 "$HB" "${HB_ARGS[@]}" > "$TMP/h$1.out" 2> >(stamp >> "$TMP/h$1.log") &
  local pid=$!
  PIDS+=("$pid")
  disown "$pid"  # killed on purpose (h2) or by cleanup: no job-control notice
  eval "HOST_PID_$1=$pid"
  for _ in $(seq 1 100); do
    grep -q '^listening on' "$TMP/h$1.out" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "cluster: h$1's server did not start" >&2; cat "$TMP/h$1.log" >&2; return 1
}
for h in "${HOSTS[@]}"; do start_host "$h"; done

cat > "$TMP/haproxy.cfg" <<EOF
global
  log stdout format raw local0 info
  maxconn 4096
defaults
  mode tcp
  log global
  option tcplog
  option redispatch
  retries 2
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  timeout check 500ms
frontend hb
  bind 10.78.10.1:9000
  default_backend hosts
backend hosts
  balance leastconn
  default-server send-proxy-v2 check-send-proxy check inter 300ms fall 2 rise 2
  server h1 10.78.1.2:7100
  server h2 10.78.2.2:7100
  server h3 10.78.3.2:7100
EOF
haproxy -c -f "$TMP/haproxy.cfg" >/dev/null || { echo "cluster: bad haproxy config" >&2; exit 1; }
ip netns exec $NS_LB haproxy -db -f "$TMP/haproxy.cfg" > >(stamp > "$TMP/haproxy.log") 2>&1 &
PIDS+=("$!")
disown "$!"  # killed by cleanup: no job-control notice
# Ready once it listens (a probe connection would count as a client).
for _ in $(seq 1 100); do
  ip netns exec $NS_LB ss -Hltn 'sport = :9000' 2>/dev/null | grep -q LISTEN && break
  sleep 0.05
done
sleep 0.5  # the first health checks (inter 300 ms)

T0=$(date +%s.%N)
echo "t0=$T0" > "$TMP/meta"
echo "cluster: $CLIENTS clients through haproxy; h2 killed at ${KILL_AT}s, back at ${BACK_AT}s" >&2
ip netns exec $NS_CL "$HBC" --host 10.78.10.1 --port 9000 --conns "$CLIENTS" --interval-ms 100 \
  --misses 5 --duration-s "$DURATION" --backoff-min-ms 50 --backoff-max-ms 500 \
  > "$TMP/clients.json" 2> >(stamp > "$TMP/clients.log") &
CL=$!; PIDS+=("$CL")

sleep_until() { local t; t=$(awk -v a="$T0" -v s="$1" -v n="$(date +%s.%N)" 'BEGIN { d = a + s - n; print (d > 0 ? d : 0) }'); sleep "$t"; }
sleep_until "$KILL_AT"
echo "kill=$(date +%s.%N)" >> "$TMP/meta"
kill -KILL "$HOST_PID_2"
sleep_until "$BACK_AT"
echo "back=$(date +%s.%N)" >> "$TMP/meta"
start_host 2
# The second batch once HAProxy has seen h2 up again (rise 2 x 300 ms).
for _ in $(seq 1 60); do grep -q 'h2 is UP' "$TMP/haproxy.log" && break; sleep 0.1; done
echo "late=$(date +%s.%N)" >> "$TMP/meta"
ip netns exec $NS_CL "$HBC" --host 10.78.10.1 --port 9000 --conns "$LATE" --interval-ms 100 \
  --misses 5 --duration-s 3 > "$TMP/late.json" 2> >(stamp > "$TMP/late.log") &
LATE_PID=$!; PIDS+=("$LATE_PID")
wait "$CL" || true
wait "$LATE_PID" || true
for h in "${HOSTS[@]}"; do
  pid_var="HOST_PID_$h"; kill -TERM "${!pid_var}" 2>/dev/null || true
done
sleep 0.5

python3 perf/cluster_report.py "$TMP" --clients "$CLIENTS" --late "$LATE" ${OUT:+--out "$OUT"}
