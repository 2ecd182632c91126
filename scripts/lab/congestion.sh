#!/usr/bin/env bash
# Lab topic "congestion" (docs/LAB.md): bulk transfers over a lossy link
# (perf/linkem: 20 Mbit/s, RTT 20 ms, 1 % random loss on the data path, a
# one-BDP drop-tail queue) with kernel TCP cubic, reno and bbr, then rudp's
# own controllers. For TCP: the capture on the sender's side shows
# duplicate ACKs (with SACK blocks) and the retransmission they trigger
# (fast retransmit); `ss -ti` sampled every 100 ms gives cwnd over time.
# rudp_bulk --trace gives rudp's cwnd. A sparkline per flow; a gnuplot SVG
# of all of them in --out. Root; ~25 s.   scripts/lab.sh congestion
set -euo pipefail
[ "${1:-}" = --help ] && { sed -n '2,9p' "$0" | sed 's/^# //'; exit 0; }
source "$(dirname "$0")/common.sh"
lab_init congestion
lab_need_root
D=$LAB_TMP
RUDP_BULK=$LAB_BIN/perf/rudp_bulk
SCAN=$LAB_REPO/scripts/lab/ccscan.py
# The link: netem does not exist on this kernel, so loss needs linkem (TUN,
# user space; docs/LINKEM.md), set up as perf/ccbench.py does: loss on the
# data direction only (near -> far), ACKs on a clean path.
RATE=20 RTT=20 LOSS=0.01 QBYTES=50000 SECS=6   # queue: 1 BDP = 20 Mbit/s x 20 ms
TCP_CCS=(cubic reno bbr)
RUDP_CCS=(newreno cubic bbr)
for x in "$LINKEM" "$RUDP_BULK"; do
  [ -x "$x" ] || { echo "lab congestion: missing $x (bazel build //perf:linkem //perf:rudp_bulk)" >&2; exit 1; }
done
avail=$(cat /proc/sys/net/ipv4/tcp_available_congestion_control)
for cc in "${TCP_CCS[@]}"; do
  # A module not loaded yet: setsockopt(TCP_CONGESTION) as root loads it.
  case " $avail " in *" $cc "*) ;; *) modprobe "tcp_$cc" 2>/dev/null || true ;; esac
done

# link NAME INDEX NEAR_CMD -- FAR_ARGV...: one linkem link in the
# background, subnet 10.201.0.(4 x INDEX)/30 so that links run side by side
# (each its own namespaces and forwarding process; they share only the
# CPUs). The near command waits for $D/go so the capture starts first.
# Sets LINK_PID and LINK_NS (the near namespace).
link() {
  local name=$1 i=$2 near=$3; shift 4
  "$LINKEM" -q --rate ${RATE}mbit --delay-ms $((RTT / 2)) --up-loss $LOSS --queue-packets 0 \
    --queue-bytes $QBYTES --seed $((i + 1)) --subnet 10.201.0.$((i * 4)) --duration 40 \
    --json "$D/$name.link.json" --near "while [ ! -e $D/go ]; do sleep 0.05; done; sleep 0.3; $near" \
    -- "$@" >"$D/$name.linkem" 2>&1 &
  LINK_PID=$!
  disown "$LINK_PID"
  LAB_PIDS+=("$LINK_PID")
  LINK_NS=linkem-$LINK_PID-near
  LAB_NS+=("$LINK_NS" "linkem-$LINK_PID-far")   # if linkem is killed, cleanup deletes them
  local _
  for _ in $(seq 1 100); do
    ip -n "$LINK_NS" link show linkem0 2>/dev/null | grep -q 'UP' && return 0
    sleep 0.05
  done
  echo "lab congestion: linkem did not come up:" >&2; cat "$D/$name.linkem" >&2; return 1
}

lab_q "TCP拥塞如何控制 / 快重传: what does a loss do to the sender, per congestion controller?"
lab_note "link: ${RATE} Mbit/s, RTT ${RTT} ms, $(awk -v l=$LOSS 'BEGIN{print l*100}') % loss on the data path, queue ${QBYTES} B; ${SECS} s of bulk per flow"
rm -f "$D/go"
declare -A LPID SPID DPID
for i in "${!TCP_CCS[@]}"; do
  cc=${TCP_CCS[$i]}
  link "tcp-$cc" "$i" "exec $RUDP_BULK --proto tcp --tcp-cc $cc --host \$LINKEM_FAR_ADDR --port 9000 --seconds $SECS --drain 3 --timeout 20 --json $D/tcp-$cc.client.json" \
    -- "$RUDP_BULK" --server --proto tcp --host 0.0.0.0 --port 9000 --seconds $SECS --warmup 1 --json "$D/tcp-$cc.server.json"
  LPID[$cc]=$LINK_PID
  # The sender's side: data out (and what linkem drops after it), ACKs in.
  lab_tcpdump "$LINK_NS" linkem0 "$D/tcp-$cc.cap" -s 128 tcp port 9000
  DPID[$cc]=$TCPDUMP_PID
  # ss -ti every 100 ms, each sample stamped; one bash in the namespace.
  lab_bg "$LINK_NS" "$D/tcp-$cc.ss" bash -c 'while :; do echo "T $(date +%s.%N)"; ss -tin "( dport = :9000 )"; sleep 0.1; done'
  SPID[$cc]=$BG_PID
done
: >"$D/go"
for cc in "${TCP_CCS[@]}"; do
  lab_wait_pid "${LPID[$cc]}" $((SECS + 20)) || true
  lab_stop "${SPID[$cc]}"; lab_stop "${DPID[$cc]}"
done

# rudp's controllers over the same link, one flow each, cwnd from
# rudp_bulk --trace (its Stats every 100 ms).
rm -f "$D/go"
declare -A RPID
for i in "${!RUDP_CCS[@]}"; do
  cc=${RUDP_CCS[$i]}
  link "rudp-$cc" "$i" "exec $RUDP_BULK --proto rudp --cc $cc --window 16777216 --host \$LINKEM_FAR_ADDR --port 9000 --seconds $SECS --drain 3 --timeout 20 --json $D/rudp-$cc.client.json --trace $D/rudp-$cc.trace --trace-ms 100" \
    -- "$RUDP_BULK" --server --proto rudp --cc "$cc" --window 16777216 --host 0.0.0.0 --port 9000 --seconds $SECS --warmup 1 --json "$D/rudp-$cc.server.json"
  RPID[$cc]=$LINK_PID
done
: >"$D/go"
for cc in "${RUDP_CCS[@]}"; do lab_wait_pid "${RPID[$cc]}" $((SECS + 20)) || true; done

# Figures per flow: goodput at the receiver (over [1 s, 6 s]), the
# sender's retransmission overhead, and cwnd over time.
jget() {  # FILE KEY: the number KEY in FILE's last JSON line, or "-"
  python3 -c 'import json,sys
try:
  l=[x for x in open(sys.argv[1]) if x.strip()][-1]; v=json.loads(l).get(sys.argv[2])
  print("-" if v is None else ("%.3g" % v if isinstance(v,float) else v))
except Exception: print("-")' "$1" "$2"
}
{
  printf '%-13s %9s %7s %6s %11s %s\n' flow "goodput" "retx" "drops" "cwnd KB" "cwnd over ${SECS}+ s"
  for cc in "${TCP_CCS[@]}"; do
    python3 "$SCAN" ss "$D/tcp-$cc.ss" "$D/tcp-$cc.dat" >"$D/tcp-$cc.sum"
    python3 "$SCAN" dupacks "$D/tcp-$cc.cap" "$D/tcp-$cc.excerpt" >>"$D/tcp-$cc.sum"
    printf '%-13s %5s Mb/s %7s %6s %11s %s\n' "tcp-$cc" "$(jget "$D/tcp-$cc.server.json" window_mbit_s)" \
      "$(jget "$D/tcp-$cc.client.json" retx_overhead)" "$(sed -nE 's/.*drops_after_loss=([0-9]+).*/\1/p' "$D/tcp-$cc.sum")" \
      "$(awk 'NR==1||$3<mn{mn=$3} $3>mx{mx=$3} END{printf "%.0f-%.0f", mn, mx}' "$D/tcp-$cc.dat")" \
      "$(python3 "$SCAN" spark "$D/tcp-$cc.dat")"
  done
  for cc in "${RUDP_CCS[@]}"; do
    python3 "$SCAN" trace "$D/rudp-$cc.trace" "$D/rudp-$cc.dat" >"$D/rudp-$cc.sum" 2>/dev/null || echo "samples=0" >"$D/rudp-$cc.sum"
    printf '%-13s %5s Mb/s %7s %6s %11s %s\n' "rudp-$cc" "$(jget "$D/rudp-$cc.server.json" window_mbit_s)" \
      "$(jget "$D/rudp-$cc.client.json" retx_overhead)" "$(sed -nE 's/.*drops_after_loss=([0-9]+).*/\1/p' "$D/rudp-$cc.sum")" \
      "$(awk 'NR==1||$3<mn{mn=$3} $3>mx{mx=$3} END{printf "%.0f-%.0f", mn, mx}' "$D/rudp-$cc.dat")" \
      "$(python3 "$SCAN" spark "$D/rudp-$cc.dat")"
  done
} >"$D/table"
lab_show "$D/table"
lab_note "goodput: receiver, 1-6 s; retx: retransmitted / first-sent bytes (TCP_INFO, rudp stats);"
lab_note "drops: 100 ms samples where cwnd fell while the loss counter grew. Loss-based"
lab_note "controllers (reno, cubic, newreno) cut cwnd at each loss and grow it back (sawtooth),"
lab_note "so 1 % loss holds them far below the BDP (50 KB); bbr models bandwidth and RTT and"
lab_note "does not treat a random loss as congestion: its cwnd stays near 2 x BDP."

# The clearest fast retransmit: the cc whose excerpt has the most dup ACKs.
best=$(for cc in "${TCP_CCS[@]}"; do
  echo "$(sed -nE 's/.*best_dups=([0-9]+).*/\1/p' "$D/tcp-$cc.sum") $cc"; done | sort -rn | head -1)
bcc=${best#* }
lab_q "快重传 (fast retransmit): duplicate ACKs, then the lost segment again (tcp-$bcc, sender side)"
lab_cmd "ip netns exec linkem-PID-near tcpdump -nn -S -i linkem0 tcp port 9000   # TS options left out"
lab_show "$D/tcp-$bcc.excerpt" 16
for cc in "${TCP_CCS[@]}"; do
  printf '  tcp-%-6s %s\n' "$cc" "$(sed -nE 's/retx=([0-9]+) dupack_retx=([0-9]+) best_dups=([0-9]+)/\1 retransmitted segments, \2 right after dup ACKs for them (most dup ACKs before one: \3)/p' "$D/tcp-$cc.sum")"
done
lab_note "Each segment the link dropped leaves a hole: every later segment makes the receiver"
lab_note "repeat its last ack (a dup ACK), its SACK block naming what did arrive beyond the hole."
lab_note "Three dup ACKs (or RACK's reordering window, on Linux) mean 'lost', and the sender"
lab_note "resends at once, long before the retransmission timeout (RTO >= 200 ms): fast retransmit."

if command -v gnuplot >/dev/null; then
  plots=()
  for f in tcp-cubic tcp-reno tcp-bbr rudp-newreno rudp-cubic rudp-bbr; do
    [ -s "$D/$f.dat" ] && plots+=("'$D/$f.dat' using 1:3 with lines lw 1.5 title '$f'")
  done
  gnuplot <<EOF 2>"$D/gnuplot.err" || true
set terminal svg size 900,480 dynamic font 'sans,11' background '#ffffff'
set output '$D/cwnd.svg'
set title 'cwnd over time: ${RATE} Mbit/s, RTT ${RTT} ms, 1% loss, queue 1 BDP (50 KB)'
set xlabel 'seconds'; set ylabel 'cwnd (KB)'; set grid; set key outside right
plot $(IFS=,; echo "${plots[*]}"), 50 with lines dt 2 lc rgb '#888888' title 'BDP'
EOF
  if [ -s "$D/cwnd.svg" ]; then
    if [ "$LAB_KEEP" = 1 ]; then echo "  plot: $D/cwnd.svg"; else echo "  plot: made (keep it with --out DIR)"; fi
  fi
fi

for cc in "${TCP_CCS[@]}"; do
  lab_expect "tcp-$cc: the socket ran $cc (ss -i)" "$D/tcp-$cc.sum" "cc=$cc\$"
  lab_expect "tcp-$cc: retransmissions in the capture" "$D/tcp-$cc.sum" "^retx=[1-9]"
  lab_expect "tcp-$cc: cwnd sampled (>= 20 samples)" "$D/tcp-$cc.sum" "samples=([2-9][0-9]|[1-9][0-9]{2,}) "
done
lab_expect "fast retransmit: >= 3 dup ACKs before a retransmission (some cc)" <(cat "$D"/tcp-*.sum) "best_dups=([3-9]|[1-9][0-9]+)"
for cc in cubic reno; do
  lab_expect "tcp-$cc: cwnd dropped after a loss" "$D/tcp-$cc.sum" "drops_after_loss=[1-9]"
done
for cc in "${RUDP_CCS[@]}"; do
  lab_expect "rudp-$cc: delivered over the lossy link, cwnd traced" \
    <(echo "$(jget "$D/rudp-$cc.server.json" window_mbit_s) $(cat "$D/rudp-$cc.sum")") "^[0-9.]*[1-9][0-9.]* samples=[1-9]"
done
lab_done
