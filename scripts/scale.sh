#!/usr/bin/env bash
# Connection scale (issue 14; figures in docs/SCALE.md): a heartbeat_server
# with enough worker processes holds N TCP connections from
# perf/scale_client, at heartbeat interval I with M misses, for a hold
# time; then the server is stopped with SIGTERM and its drain is timed.
#
#   scripts/scale.sh                                  # 100,000 conns, epoll and uring side by side
#   scripts/scale.sh --conns 1000000 --interval-ms 30000 --hold-s 120 --io epoll
#   scripts/scale.sh --breakdown                      # where poll/select/nonblocking/blocking give out
#   scripts/scale.sh --io epoll --stall-s 20 --out /tmp/stall   # SIGSTOP the workers mid-hold
#   scripts/scale.sh --conns 20000 --hold-s 10 --out /tmp/scale   # a quick look
#
# As root it makes its own network namespace (the host is not touched) and
# sets, inside it only: net.ipv4.ip_local_port_range=1024 65535,
# net.core.somaxconn=65535, net.ipv4.tcp_max_syn_backlog=65535,
# net.ipv4.tcp_migrate_req=1. It prints what it set. --no-netns runs on
# the host's loopback with the host's settings.
#
# Steps: the client ramps to each of --steps (default N/10, N/4, N/2), holds
# one interval there, measures, then goes on to N and holds --hold-s.
# Writes OUT/scale-IO.json (every step's row, and the drain), and
# OUT/scale.svg (memory per connection and heartbeat RTT p99 against
# connections, every back end). OUT defaults to docs/perf/scale.
# Exit status: 0 when every run held its connections with zero false drops.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

conns=100000 steps="" io_list=epoll,uring interval=5000 misses=3 hold=60 rate=20000
workers=0 out="$root/docs/perf/scale" netns=1 breakdown=0 threads=1 stall=0
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) conns=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --io) io_list=$2; shift 2 ;;
    --interval-ms) interval=$2; shift 2 ;;
    --misses) misses=$2; shift 2 ;;
    --hold-s) hold=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-netns) netns=0; shift ;;
    --breakdown) breakdown=1; shift ;;
    --stall-s) stall=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$breakdown" = 1 ]; then
  # One worker process (so its descriptor limit is the cap), every
  # readiness model, growing counts: the seed's IO-model lesson, measured.
  io_list=blocking,nonblocking,select,poll,epoll,uring
  conns=${conns_breakdown:-18000} workers=1 hold=$(( interval / 1000 + 2 ))
  [ -n "$steps" ] || steps=500,1000,2000,5000,10000
fi
[ -n "$steps" ] || steps="$((conns / 10)),$((conns / 4)),$((conns / 2))"
# Each worker stays well under the 20,000-descriptor limit even when the
# kernel's hash gives it a few percent more than its share.
[ "$workers" != 0 ] || workers=$(( (conns + 16999) / 17000 ))
# Closing costs CPU per connection (~20 us for both ends on this 2-core
# machine): let the drain take that long before workers abort what is left.
drain_ms=$(( conns / 20 > 10000 ? conns / 20 : 10000 ))
mkdir -p "$out"
logs=$(mktemp -d "${TMPDIR:-/tmp}/sluice-scale.XXXXXX")  # server and client logs (large at 1M)
echo "logs: $logs" >&2

# shellcheck disable=SC2086
bazel ${BAZEL_STARTUP:-} build //servers:heartbeat_server //perf:scale_client >&2
bin="$root/bazel-bin"
server="$bin/servers/heartbeat_server"
client="$bin/perf/scale_client"

run=()
ns=""
cleanup() {
  [ -n "${client_pid:-}" ] && kill -KILL "$client_pid" 2>/dev/null || true
  [ -n "${SERVER_PID:-}" ] && kill -KILL "$SERVER_PID" 2>/dev/null || true
  [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
if [ "$netns" = 1 ] && [ "$(id -u)" = 0 ]; then
  ns="sluice-scale-$$"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  echo "namespace $ns: setting (inside it only):" >&2
  ip netns exec "$ns" sysctl -w net.ipv4.ip_local_port_range="1024 65535" \
    net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 >&2
  ip netns exec "$ns" sysctl -w net.ipv4.tcp_migrate_req=1 >&2 ||
    echo "  (tcp_migrate_req unavailable: needs Linux 5.14)" >&2
  run=(ip netns exec "$ns")
elif [ "$netns" = 1 ]; then
  echo "not root: running on the host's loopback with its settings (--no-netns)" >&2
fi

failed=0
for io in ${io_list//,/ }; do
  echo "== $io: $conns connections (steps $steps), $workers worker(s), interval ${interval} ms x $misses" >&2
  log="$logs/server-$io.log"
  if ! start_server "$log" "${run[@]}" "$server" --io "$io" --workers "$workers" \
      --threads "$threads" --interval-ms "$interval" --misses "$misses" --max-conns 0 \
      --drain-ms "$drain_ms"; then
    failed=1; continue
  fi
  json="$out/scale-$io.json"
  : >"$logs/client-$io.err"
  "${run[@]}" "$client" --port "$SERVER_PORT" --conns "$conns" --steps "$steps" \
      --interval-ms "$interval" --misses "$misses" --hold-s "$hold" --rate "$rate" \
      --server-pid "$SERVER_PID" --json "$json" --linger \
      2> >(tee "$logs/client-$io.err" >&2) &
  client_pid=$!
  if [ "$stall" != 0 ]; then
    # 5 s into the last hold, stop every worker (SIGSTOP) for --stall-s:
    # one long loop iteration, longer than interval x misses if asked.
    # Peers keep pinging; their bytes wait in the kernel, and the server
    # must not call them idle for what it has not read yet.
    while kill -0 "$client_pid" 2>/dev/null && ! grep -q "^hold $conns:" "$logs/client-$io.err"; do
      sleep 0.2
    done
    sleep 5
    workers_pids=$(pgrep -P "$SERVER_PID" | paste -sd' ' -)
    [ -n "$workers_pids" ] || workers_pids=$SERVER_PID
    echo "stalling the server's workers for ${stall} s (SIGSTOP)" >&2
    # shellcheck disable=SC2086
    kill -STOP $workers_pids
    sleep "$stall"
    # shellcheck disable=SC2086
    kill -CONT $workers_pids
  fi
  # The client writes its JSON, then lingers: time the server's drain.
  while kill -0 "$client_pid" 2>/dev/null && ! grep -q '^holding' "$logs/client-$io.err"; do
    sleep 0.5
  done
  t0=$(date +%s.%N)
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  rc=0
  for _ in $(seq 1 $(( drain_ms / 50 + 200 ))); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  drain=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  wait "$SERVER_PID" 2>/dev/null || rc=$?
  kill -TERM "$client_pid" 2>/dev/null || true
  crc=0
  wait "$client_pid" || crc=$?
  client_pid=""
  SERVER_PID=""
  echo "$io: server drained in ${drain} s on SIGTERM (exit $rc); client exit $crc" >&2
  [ "$crc" = 0 ] && [ "$rc" = 0 ] || failed=1
  if [ -s "$json" ]; then
    python3 - "$json" "$drain" "$rc" "$io" "$workers" "$stall" <<'EOF'
import json, sys
path, drain, rc, io, workers, stall = sys.argv[1:]
d = json.load(open(path))
d.update(io=io, workers=int(workers), drain_s=float(drain), server_exit=int(rc),
         stall_s=float(stall))
json.dump(d, open(path, "w"), indent=1)
EOF
  fi
done

# The chart: memory per connection and RTT p99 against connections.
python3 "$root/perf/scale_chart.py" "$out" "$io_list" || echo "no chart (gnuplot missing?)" >&2
exit $failed
