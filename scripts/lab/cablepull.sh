#!/usr/bin/env bash
# Lab topic "cablepull" (docs/LAB.md): cut the link under four live
# connections and time who notices, and how:
#   none       an idle connection, no keepalive: neither side ever notices
#   keepalive  SO_KEEPALIVE, idle 2 s, interval 1 s, 3 probes: idle + 1 x 3
#   heartbeat  sluice's heartbeat, PING every 500 ms, 3 misses: ~1.5 s
#   user-to    TCP_USER_TIMEOUT 3 s with unsent data: ~3 s of retransmits
# The "cable" is a blackhole route on each side: packets vanish without an
# error, the interfaces stay up (this kernel has no netem nor tc drop
# actions). Root; ~11 s.   scripts/lab.sh cablepull
set -euo pipefail
[ "${1:-}" = --help ] && { sed -n '2,11p' "$0" | sed 's/^# //'; exit 0; }
source "$(dirname "$0")/common.sh"
lab_init cablepull
lab_need_root
lab_pair
D=$LAB_TMP
HOLD=7   # seconds after the cut that every client waits at most

# Wall-clock stamps on a server's log lines, to put them on one timeline.
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done; }

lab_server $NS_S "$D/echo" "$ECHO_SERVER" --host 0.0.0.0 --port 7000 --io epoll --idle-timeout-ms 0
ip netns exec $NS_S "$HB_SERVER" --host 0.0.0.0 --port 7100 --io epoll --interval-ms 500 --misses 3 \
  --peer-lines-per-s 0 >"$D/hbs" 2> >(stamp >"$D/hbs.log") &
LAB_PIDS+=($!); disown $!
for _ in $(seq 1 100); do grep -q '^listening' "$D/hbs" 2>/dev/null && break; sleep 0.05; done

GO=$D/go
for c in none keepalive user-to; do
  case $c in
    none) opt=() ;;
    keepalive) opt=(--keepalive 2 1 3) ;;
    user-to) opt=(--user-timeout-ms 3000 --send) ;;
  esac
  lab_bg $NS_C "$D/c-$c" python3 "$LAB_PEER" idle-client --host $SRV_ADDR --port 7000 --hold $HOLD --go "$GO" "${opt[@]}"
done
ip netns exec $NS_C "$HB_CLIENT" --host $SRV_ADDR --port 7100 --io epoll --interval-ms 500 --misses 3 \
  --duration-s $((HOLD + 2)) >/dev/null 2> >(stamp >"$D/hbc.log") &
LAB_PIDS+=($!); disown $!
sleep 1.5
lab_ss $NS_S -tn state established >"$D/ss-before"

# Pull the cable.
ip -n $NS_C route add blackhole $SRV_ADDR/32
ip -n $NS_S route add blackhole $CLI_ADDR/32
T_CUT=$(date +%s.%N)
: >"$GO"
# The client sockets' timers 2.5 s after the cut (tcpdump would see
# nothing: the blackhole route drops packets before the device).
sleep 2.5
lab_ss $NS_C -tno "( dport = :7000 )" >"$D/ss-timers"
sleep $((HOLD - 2))
lab_ss $NS_S -tn state established >"$D/ss-after"

lab_q "Cable pulled: 心跳 / keepalive -- how long until each side knows the peer is gone?"
lab_cmd "ip route add blackhole <peer>/32   # in both namespaces, at t=0"
since() { awk -v a="$T_CUT" -v b="$1" 'BEGIN { printf "%+.2f s", b - a }'; }
{
  printf '%-34s %s\n' "mechanism (client side)" "noticed after the cut"
  printf '%-34s %s\n' "none (idle, no keepalive)" "$(sed -nE 's/.*after cut \+[0-9.]+s: //p' "$D/c-none")"
  printf '%-34s %s\n' "TCP keepalive 2 s + 1 s x 3" "$(sed -nE 's/.*after cut (\+[0-9.]+s): (.*)/\1 (\2)/p' "$D/c-keepalive")"
  printf '%-34s %s\n' "TCP_USER_TIMEOUT 3 s, data unsent" "$(sed -nE 's/.*after cut (\+[0-9.]+s): (.*)/\1 (\2)/p' "$D/c-user-to")"
  l=$(grep -m1 'nothing from' "$D/hbc.log" || true)
  printf '%-34s %s\n' "heartbeat 500 ms x 3 misses" "${l:+$(since "${l%% *}") (client: ${l#*\] \[info\] })}"
  l=$(grep -m1 ' drop ' "$D/hbs.log" || true)
  printf '%-34s %s\n' "heartbeat, server side" "${l:+$(since "${l%% *}") (server: ${l#*\] \[info\] })}"
} >"$D/table"
lab_show "$D/table"
echo
lab_show "$D/ss-after"
lab_note "Without keepalive an idle connection sends nothing, so nothing can fail: after $HOLD s"
lab_note "both sides still call it ESTABLISHED (port 7000 above) and would for ever. Keepalive"
lab_note "probes start after 2 s idle (counted from the last segment, before the cut), then one"
lab_note "a second; three unanswered -> ETIMEDOUT. The heartbeat is the application's own probe:"
lab_note "no PONG for 3 intervals. TCP_USER_TIMEOUT bounds how long sent data may stay"
lab_note "unacknowledged or unsent, whatever the retry count."
echo "  the client sockets 2.5 s after the cut:"
lab_show "$D/ss-timers"
lab_note "timer:(keepalive,...,N): N probes sent, none answered. Send-Q 19: the bytes the"
lab_note "TCP_USER_TIMEOUT client wrote after the cut, retried N times (the blackhole refuses them"
lab_note "locally, so the kernel retries on its probe timer, 'persist'; on a real cut the"
lab_note "retransmit timer, 'on'). TCP_USER_TIMEOUT bounds either."
lab_expect "no keepalive: nothing noticed" "$D/c-none" "nothing noticed within"
lab_expect "the idle server still has it ESTABLISHED" "$D/ss-after" "10.79.0.2:7000 +10.79.0.1:"
lab_expect "keepalive: ETIMEDOUT within idle + interval x count" <(sed -nE 's/.*after cut \+([0-9.]+)s: error Connection timed out/\1/p' "$D/c-keepalive") "^[2-5]\."
lab_expect "TCP_USER_TIMEOUT: ETIMEDOUT after ~3 s" <(sed -nE 's/.*after cut \+([0-9.]+)s: error Connection timed out/\1/p' "$D/c-user-to") "^[3-4]\."
lab_expect "heartbeat client noticed" "$D/table" "heartbeat 500 ms x 3 misses +\+(0\.[5-9]|1\.|2\.)"
lab_expect "heartbeat server dropped the peer" "$D/table" "server side +\+(0\.[5-9]|1\.|2\.).*reason=timeout"
lab_expect "keepalive probes going unanswered" "$D/ss-timers" "timer:\(keepalive,[0-9.]+m?s,[1-9]\)"
lab_expect "the unsent data being retransmitted" "$D/ss-timers" "ESTAB +0 +19 .*timer:\((on|persist),[0-9.]+m?s,[1-9]\)"
lab_done
