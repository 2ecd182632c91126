#!/usr/bin/env bash
# Broadcast vs echo: server CPU per delivered message (issue 12: "a
# broadcast to 10,000 connections across 2 loops costs at most 1.5x the
# server CPU per delivered message of one echo, in one run").
#
#   scripts/broadcast_bench.sh                      # epoll, 3 rounds, 10k conns (~1 min)
#   scripts/broadcast_bench.sh --io epoll,uring --rounds 5
#   scripts/broadcast_bench.sh --conns 1000 --rounds 1 --out /tmp/bc   # quick look
#   scripts/broadcast_bench.sh --help
#
# Every phase runs against a fresh perf/fanout_server (--threads loops,
# pinned to the first allowed CPU) driven by perf/fanout_client (pinned to
# the others). The client connects, makes sure the server serves every
# connection, then runs the measured phase and samples the server's
# /proc/PID/stat (utime+stime), task/*/schedstat and task/*/status (context
# switches) at the instant the phase starts and ends: connecting and
# readiness are not in the window. Server CPU per delivered message is that
# CPU time over the messages the client received in the window:
#   broadcast: --lines lines published at --line-rate/s, each delivered to
#              every connection (the N subscribers and the publisher);
#   echo:      --echo-per-conn lines per connection, one outstanding at a
#              time, --echo-rate lines/s in all; every echo is a delivery.
# Phases are interleaved -- each round runs broadcast and echo back to back
# for every back end, the order flipping every round -- and the ratio
# broadcast/echo is taken per round, then the median over rounds (this
# machine is shared: ratios within one round cancel most of its drift).
#
# Writes OUT/broadcast-table.md (the Markdown table and the medians, also
# printed) and OUT/broadcast-runs.jsonl (every client JSON line, with the
# back end and round added). OUT defaults to docs/perf.
# BAZEL_STARTUP="--output_base=DIR" passes Bazel startup options.
# Exit status: 0 if every phase delivered everything, 1 otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

io_list=epoll rounds=3 conns=10000 threads=2 size=64
lines=40 line_rate=8 echo_per_conn=20 echo_rate=50000
out="$root/docs/perf" build=1 quiet_wait=3 target=1.5 spin=0
usage() {
  sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF

Options (defaults in brackets):
  --io LIST            back ends, comma-separated [$io_list] (e.g. epoll,uring)
  --rounds N           rounds of broadcast+echo per back end [$rounds]
  --conns N            connections [$conns] (broadcast adds one publisher)
  --threads N          server event loops [$threads]
  --size B             line bytes, newline included [$size]
  --lines N            broadcast: lines published [$lines]
  --line-rate R        broadcast: lines/s [$line_rate]
  --echo-per-conn N    echo: lines per connection [$echo_per_conn]
  --echo-rate R        echo: lines/s, all connections [$echo_rate]
  --quiet-wait S       before each phase, wait up to S s for other load < 0.15 CPUs [$quiet_wait]
  --target X           the ratio to judge against [$target]
  --client-spin        the client polls without sleeping in the window (see perf/fanout_client.cc)
  --out DIR            where the table and the raw runs go [docs/perf]
  --no-build           use bazel-bin as it is
EOF
}
while [ $# -gt 0 ]; do
  case $1 in
    --io) io_list=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --lines) lines=$2; shift 2 ;;
    --line-rate) line_rate=$2; shift 2 ;;
    --echo-per-conn) echo_per_conn=$2; shift 2 ;;
    --echo-rate) echo_rate=$2; shift 2 ;;
    --quiet-wait) quiet_wait=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --client-spin) spin=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "broadcast_bench: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Build, then copy the binaries: bazel-bin follows whichever build ran last
# in this tree, which must not swap the server mid-run.
if [ "$build" = 1 ]; then
  # shellcheck disable=SC2086
  (cd "$root" && bazel ${BAZEL_STARTUP:-} build //perf:fanout_server //perf:fanout_client >&2)
fi
work=$(mktemp -d /tmp/broadcast-bench.XXXXXX)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
for b in fanout_server fanout_client; do
  cp "$root/bazel-bin/perf/$b" "$work/$b" || { echo "broadcast_bench: build perf/$b first" >&2; exit 2; }
done
mkdir -p "$out"

# Pinning as perf/compare.py does: the server on the first allowed CPU,
# the client on the rest; nothing pinned with a single CPU.
first=$(python3 -c 'import os; print(sorted(os.sched_getaffinity(0))[0])')
ncpu=$(python3 -c 'import os; print(len(os.sched_getaffinity(0)))')
rest=$(python3 -c 'import os; print(",".join(str(c) for c in sorted(os.sched_getaffinity(0))[1:]))')
if [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c "$first") pin_client=(taskset -c "$rest")
  pinning="server on CPU $first, client on CPU $rest"
else
  pin_server=() pin_client=()
  pinning="not pinned (one CPU, or no taskset): server and client share"
fi

busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
# Waits up to $quiet_wait s for the machine's other load to fall below
# 0.15 CPUs; prints the load measured last.
wait_quiet() {
  local tck deadline b0 b1 load
  tck=$(getconf CLK_TCK)
  deadline=$(( $(date +%s%N) + ${quiet_wait%.*} * 1000000000 ))
  while :; do
    b0=$(busy_ticks); sleep 0.25; b1=$(busy_ticks)
    load=$(awk -v d=$((b1 - b0)) -v t="$tck" 'BEGIN{printf "%.2f", d / t / 0.25}')
    if awk -v l="$load" 'BEGIN{exit !(l < 0.15)}' || [ "$(date +%s%N)" -ge "$deadline" ]; then
      echo "$load"; return
    fi
  done
}

runs="$work/runs.jsonl"
: > "$runs"
failed=0
# phase IO MODE ROUND: one fresh server, one client run; appends the JSON.
phase() {
  local io=$1 mode=$2 round=$3 pre json rc=0 args
  pre=$(wait_quiet)
  start_server "$work/server.out" "${pin_server[@]}" "$work/fanout_server" --mode "$mode" --io "$io" \
    --threads "$threads" --port 0
  if [ "$mode" = broadcast ]; then
    args=(--lines "$lines" --line-rate "$line_rate")
  else
    args=(--echo-per-conn "$echo_per_conn" --echo-rate "$echo_rate")
  fi
  if [ "$spin" = 1 ]; then args+=(--spin); fi
  json=$("${pin_client[@]}" "$work/fanout_client" --port "$SERVER_PORT" --mode "$mode" --conns "$conns" \
         --size "$size" --server-pid "$SERVER_PID" "${args[@]}" 2>"$work/client.err") || rc=$?
  stop_server || true
  SERVER_PID=""
  if [ -z "$json" ]; then
    json="{\"mode\":\"$mode\",\"ok\":false,\"error\":\"client printed nothing (rc $rc): $(tr -d '"\\\n' < "$work/client.err" | cut -c1-200)\"}"
  fi
  [ "$rc" -eq 0 ] || { failed=1; echo "broadcast_bench: $io $mode round $round FAILED: $(cat "$work/client.err")" >&2; }
  echo "${json%\}},\"io\":\"$io\",\"round\":$round,\"load_before\":$pre}" >> "$runs"
  echo "broadcast_bench: $io $mode round $round: delivered $(json_field "$json" delivered) of" \
       "$(json_field "$json" expected), server $(json_field "$json" server_cpu_s) s CPU over" \
       "$(json_field "$json" wall_s) s" >&2
}

IFS=, read -r -a ios <<< "$io_list"
echo "broadcast_bench: ${#ios[@]} back end(s) x $rounds rounds x (broadcast, echo); $conns connections; $pinning" >&2
for r in $(seq 1 "$rounds"); do
  for io in "${ios[@]}"; do
    if [ $((r % 2)) -eq 1 ]; then order="broadcast echo"; else order="echo broadcast"; fi
    for mode in $order; do phase "$io" "$mode" "$r"; done
  done
done

# ------------------------------------------------------------- the table --
f() { json_field "$1" "$2"; }
table="$work/table.md"
med() { { printf '%s\n' "$@" | grep . || true; } | median; }
median() { sort -g | awk '{v[NR]=$1} END{if (NR==0) {print "n/a"; exit} if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
{
  echo "Server CPU per delivered message, broadcast vs echo ($(date -u +%Y-%m-%d), $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), kernel $(uname -r), $ncpu CPUs; $pinning)."
  echo "$conns connections, $threads server loops, $size-byte lines. Broadcast: $lines lines at $line_rate/s to $conns subscribers + the publisher. Echo: $echo_per_conn lines per connection, one outstanding, $echo_rate/s in all.$([ "$spin" = 1 ] && echo ' The client spins (--client-spin).')"
  echo
  echo "| io | round | phase | delivered | window s | server CPU s | µs/msg (ticks) | µs/msg (schedstat) | server ctx sw / 1k msgs (vol+invol) | client CPU s | client sleeps / 1k msgs | other load, CPU-s | ok |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  while IFS= read -r j; do
    d=$(f "$j" delivered)
    awk -v io="$(f "$j" io)" -v r="$(f "$j" round)" -v m="$(f "$j" mode)" -v d="${d:-0}" -v w="$(f "$j" wall_s)" \
        -v s="$(f "$j" server_cpu_s)" -v ns="$(f "$j" server_run_ns)" -v cv="$(f "$j" server_ctxsw_vol)" \
        -v ci="$(f "$j" server_ctxsw_invol)" -v c="$(f "$j" client_cpu_s)" -v cs="$(f "$j" client_ctxsw_vol)" \
        -v bg="$(f "$j" bg_cpu_s)" \
        -v ok="$(f "$j" ok)" 'BEGIN{
          if (d > 0) printf "| %s | %s | %s | %d | %.2f | %.2f | %.3f | %.3f | %.1f + %.1f | %.2f | %.0f | %.2f | %s |\n",
            io, r, m, d, w, s, s * 1e6 / d, ns / 1e3 / d, cv * 1000 / d, ci * 1000 / d, c, cs * 1000 / d, bg, ok;
          else printf "| %s | %s | %s | 0 | | | | | | | | | %s |\n", io, r, m, ok }'
  done < "$runs"
  echo
  echo "| io | broadcast µs/msg (median) | echo µs/msg (median) | broadcast/echo per round | median ratio | target ≤ $target |"
  echo "|---|---|---|---|---|---|"
  for io in "${ios[@]}"; do
    ratios=() bs=() es=()
    for r in $(seq 1 "$rounds"); do
      jb=$(grep "\"io\":\"$io\",\"round\":$r," "$runs" | grep '"mode":"broadcast"' | grep '"ok":true' || true)
      je=$(grep "\"io\":\"$io\",\"round\":$r," "$runs" | grep '"mode":"echo"' | grep '"ok":true' || true)
      [ -n "$jb" ] && bs+=("$(awk -v s="$(f "$jb" server_cpu_s)" -v d="$(f "$jb" delivered)" 'BEGIN{printf "%.4f", s*1e6/d}')")
      [ -n "$je" ] && es+=("$(awk -v s="$(f "$je" server_cpu_s)" -v d="$(f "$je" delivered)" 'BEGIN{printf "%.4f", s*1e6/d}')")
      if [ -n "$jb" ] && [ -n "$je" ]; then
        ratios+=("$(awk -v b="${bs[-1]}" -v e="${es[-1]}" 'BEGIN{printf "%.3f", b/e}')")
      fi
    done
    mb=$(med "${bs[@]}")
    me=$(med "${es[@]}")
    mr=$(med "${ratios[@]}")
    verdict=$(awk -v m="$mr" -v t="$target" 'BEGIN{if (m == "n/a" || m == "") print "n/a"; else if (m+0 <= t+0) print "**met**"; else print "**missed**"}')
    echo "| $io | $mb | $me | ${ratios[*]:-n/a} | $mr | $verdict |"
  done
} > "$table"
cp "$table" "$out/broadcast-table.md"
cp "$runs" "$out/broadcast-runs.jsonl"
cat "$table"
echo "broadcast_bench: wrote $out/broadcast-table.md and $out/broadcast-runs.jsonl" >&2
exit "$failed"
