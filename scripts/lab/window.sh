#!/usr/bin/env bash
# Lab topic "window" (docs/LAB.md): a client that writes to the echo server
# and stops reading. Its receive buffer fills, the window it advertises
# shrinks to zero, the server's kernel sends zero-window probes; sluice's
# output queue reaches --high-water and it stops reading that client, so
# the client's own writes stall too (backpressure end to end). Then the
# client reads again and everything drains. Root; ~8 s.
#   scripts/lab.sh window
set -euo pipefail
[ "${1:-}" = --help ] && { sed -n '2,8p' "$0" | sed 's/^# //'; exit 0; }
source "$(dirname "$0")/common.sh"
lab_init window
lab_need_root
lab_pair
D=$LAB_TMP

lab_server $NS_S "$D/echo" "$ECHO_SERVER" --host 0.0.0.0 --port 7000 --io epoll \
  --high-water 262144 --low-water 65536 --idle-timeout-ms 0
LAB_TCPDUMP_REL=1 lab_tcpdump $NS_C eth0 "$D/cap" tcp port 7000
lab_bg $NS_C "$D/client" python3 "$LAB_PEER" slow-reader --host $SRV_ADDR --port 7000 --pause 4 \
  --bytes $((8 << 20)) --rcvbuf 65536
CPID=$BG_PID
sleep 3.5
lab_ss $NS_S -tnio "( sport = :7000 )" >"$D/ss-srv"
lab_ss $NS_C -tnio "( dport = :7000 )" >"$D/ss-cli"
lab_wait_pid $CPID 8 || true
lab_tcpdump_stop

lab_q "滑动窗口 (sliding window): what happens when the receiver stops reading?"
lab_show "$D/client"
sed -E 's/, options \[[^]]*\]//' "$D/cap" >"$D/cap.s"
# The first zero window the client advertised, and the probes that follow.
zl=$(grep -n '10.79.0.1.[0-9]* > 10.79.0.2.7000: .*win 0,' "$D/cap.s" | head -1 | cut -d: -f1 || true)
if [ -n "$zl" ]; then
  sed -n "$((zl > 3 ? zl - 3 : 1)),$((zl + 1))p" "$D/cap.s" >"$D/zero"
  # Zero-window probes: once both sides are stuck the only segments left
  # are the probes, on the persist timer's backoff (0.2, 0.4, 0.8 s ...),
  # and the win-0 answers to them. Data may still flow for a while after
  # the client's window first closes (the server's closes later, once
  # sluice stops reading), so only empty win-0 segments from 0.2 s on.
  awk -v z="$zl" 'function sec(t,  f) { split(t, f, ":"); return f[1] * 3600 + f[2] * 60 + f[3] }
    NR == z { t0 = sec($1) }
    NR > z && sec($1) > t0 + 0.2 && /win 0, length 0/ && n++ < 8' "$D/cap.s" >"$D/probes"
  echo "  the client's window closing (tcpdump, client side, relative seq):"
  lab_show "$D/zero"
  echo "  zero-window probes, both ways (both windows are closed now), each answered with win 0:"
  lab_show "$D/probes"
fi
lab_note "win is in units of the scale agreed in the handshake; it falls as the client's receive"
lab_note "buffer fills, then 0: the server may send nothing more, only probes (their interval"
lab_note "backs off) asking whether the window has opened."
lab_show "$D/ss-srv" 8
lab_note "Server: Send-Q = echoed bytes the client has not taken; Recv-Q = client bytes sluice"
lab_note "left unread: past --high-water 256 KB queued for a client, sluice stops reading it."
lab_show "$D/ss-cli" 8
lab_note "Client: Recv-Q = the full receive buffer; Send-Q = its own writes, stuck because the"
lab_note "server's window is now closed too. Backpressure reached the writer."
lab_expect "the client advertised a zero window" "$D/cap.s" "10.79.0.1.[0-9]+ > 10.79.0.2.7000: .*win 0,"
# A probe and its answer at least; either side's (which persist timer
# fires first within the capture depends on the timing).
lab_expect_true "zero-window probes followed, answered with win 0" \
  test "$(grep -c 'win 0, length 0' "$D/probes" 2>/dev/null || true)" -ge 2
lab_expect "sluice stopped reading: the server's Recv-Q holds the client's bytes" \
  <(awk '/^ESTAB/ && $4 ~ /:7000$/ {print $2}' "$D/ss-srv") "^[1-9][0-9]{4,}$"
lab_expect "the client's writes stalled (it wrote less than 8 MB)" "$D/client" "wrote [0-9]+ bytes meanwhile"
lab_expect "after reading again, everything came back" "$D/client" "got ([0-9]+) of \1 bytes back"
lab_done
