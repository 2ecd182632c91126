#!/usr/bin/env bash
# Lab topic "teardown" (docs/LAB.md): the four segments of a close and who
# sits in TIME_WAIT; a handler that forgets to close (CLOSE_WAIT piles up)
# next to sluice's idle timeout reaping silent peers; server-side
# TIME_WAIT and why a restarted server needs SO_REUSEADDR. Runs without
# root too (127.0.0.1, no capture). ~10 s.   scripts/lab.sh teardown
set -euo pipefail
[ "${1:-}" = --help ] && { sed -n '2,6p' "$0" | sed 's/^# //'; exit 0; }
source "$(dirname "$0")/common.sh"
lab_init teardown
D=$LAB_TMP
if [ "$LAB_LOCAL" = 1 ]; then
  NS_S=- NS_C=- HOST=127.0.0.1 SRV_ADDR=127.0.0.1
  # Fixed ports for the bind test; on the shared loopback, pick them per run.
  P1=$((20000 + $$ % 20000)); P2=$((P1 + 1))
else
  lab_pair; HOST=0.0.0.0 P1=7002 P2=7003
fi

# 1. A server whose handler never closes (peer.py forget-close: it keeps
# every accepted socket and exits after 3 s). Five clients hang up at once.
lab_bg $NS_S "$D/forget" python3 "$LAB_PEER" forget-close --host $HOST --port $P1 --hold 3
FORGET_PID=$BG_PID
for _ in $(seq 1 50); do grep -q listening "$D/forget" && break; sleep 0.05; done
[ "$LAB_LOCAL" = 1 ] || LAB_TCPDUMP_REL=1 lab_tcpdump $NS_C eth0 "$D/cap" tcp port $P1
in_ns $NS_C python3 "$LAB_PEER" hangup-clients --host $SRV_ADDR --port $P1 --n 5 >"$D/hangup"
sleep 0.8
{ lab_ss $NS_S -tan "( sport = :$P1 )"; echo
  lab_ss $NS_C -tan "( dport = :$P1 )"; } >"$D/ss-closewait"
lab_wait_pid $FORGET_PID 5 || true
sleep 0.3
lab_ss $NS_C -tano "( dport = :$P1 )" >"$D/ss-timewait"
[ "$LAB_LOCAL" = 1 ] || lab_tcpdump_stop

lab_q "TCP的三次握手和四次挥手 (the four segments of a close; who waits in TIME_WAIT, and how long)"
if [ "$LAB_LOCAL" = 0 ]; then
  # One connection's close: the first client's port.
  cport=$(awk '/Flags \[F/ {print $3; exit}' "$D/cap" | sed -E 's/.*\.([0-9]+)$/\1/')
  grep -E "\.$cport[ :].*Flags \[(F|\.)" "$D/cap" | grep -v 'length [1-9]' |
    sed -E 's/, options \[[^]]*\]//' | awk '
    /Flags \[F/ && !f1 { f1 = 1; print; print "      ^ 1. FIN from the client: it closed (active close) -> FIN_WAIT_1"; next }
    /Flags \[\.\]/ && f1 && !a1 { a1 = 1; print; print "      ^ 2. the server kernel ACKs it at once -> server CLOSE_WAIT, client FIN_WAIT_2"; next }
    /Flags \[F/ && f1 && !f2 { f2 = 1; print; print "      ^ 3. FIN from the server, only when its process closes (here: exits, ~3 s later) -> LAST_ACK"; next }
    /Flags \[\.\]/ && f2 && !a2 { a2 = 1; print; print "      ^ 4. the client ACKs -> server CLOSED; client TIME_WAIT for 2*MSL (60 s on Linux)"; next }' >"$D/close4"
  lab_cmd "tcpdump -nn -i eth0 tcp port $P1   # one connection of five (relative times)"
  lab_show "$D/close4"
  lab_expect "four segments: FIN, ACK, FIN, ACK" "$D/close4" "\^ 4\. the client ACKs"
fi
lab_show "$D/ss-closewait"
lab_note "While the handler holds its sockets, the server's side sits in CLOSE_WAIT (the"
lab_note "kernel ACKed the FIN; only close() sends ours) and the client's in FIN_WAIT_2."
lab_note "CLOSE_WAIT never times out: a handler that forgets to close leaks them until exit."
lab_show "$D/ss-timewait"
lab_note "The side that closed first (the client) holds TIME_WAIT; the timer counts down"
lab_note "from 60 s (TCP_TIMEWAIT_LEN, 2*MSL), so that late segments of this connection die"
lab_note "out and the last ACK can be resent if lost."
lab_expect "5 connections in CLOSE_WAIT on the forgetful server" <(grep -c "^CLOSE-WAIT .*:$P1 " "$D/ss-closewait" || true) "^5$"
lab_expect "the client side waits in FIN_WAIT_2" "$D/ss-closewait" "FIN-WAIT-2"
lab_expect "the client, which closed first, is in TIME_WAIT with a ~60 s timer" "$D/ss-timewait" "TIME-WAIT.*timer:\(timewait,(59|60)sec"

# 2. sluice's idle timeout reaps silent peers; then server-side TIME_WAIT
# and the restart.
lab_q "A peer that never speaks again (or a handler that never closes): what bounds it?"
lab_server $NS_S "$D/echo" "$ECHO_SERVER" --host $HOST --port $P2 --io epoll --idle-timeout-ms 1000 --log-level debug
ECHO_PID=$SERVER_PID
lab_bg $NS_C "$D/idle" python3 "$LAB_PEER" idle-clients --host $SRV_ADDR --port $P2 --n 3 --hold 2.2
IDLE_PID=$BG_PID
sleep 1.6
{ lab_ss $NS_S -tan "( sport = :$P2 )"; echo; lab_ss $NS_C -tan "( dport = :$P2 )"; } >"$D/ss-idle"
lab_wait_pid $IDLE_PID 5 || true
sleep 0.2
lab_ss $NS_S -tano "( sport = :$P2 )" >"$D/ss-srv-tw"
lab_stop $ECHO_PID
grep -iE 'idle|close' "$D/echo.err" | sed -E 's/^\[[^]]*\] \[sluice\] //' >"$D/echo-idle" || true
lab_show "$D/echo-idle" 6
lab_show "$D/ss-idle"
lab_note "echo_server --idle-timeout-ms 1000: after 1 s of silence sluice closes the connection."
lab_note "Its FIN makes the (forgetful) clients' sockets CLOSE_WAIT; the server's sit in FIN_WAIT_2."
lab_show "$D/ss-srv-tw"
lab_note "The clients closed after that, so this time the server closed first: TIME_WAIT is"
lab_note "on the server, bound to its listening port $P2, for 60 s."
in_ns $NS_S python3 "$LAB_PEER" bind-test --host $HOST --port $P2 >"$D/bind"
lab_server $NS_S "$D/echo2" "$ECHO_SERVER" --host $HOST --port $P2 --io epoll
lab_stop $SERVER_PID
echo "restart: $(head -1 "$D/echo2")" >>"$D/bind"
lab_show "$D/bind"
lab_note "A server restarted within those 60 s cannot bind() its port without SO_REUSEADDR"
lab_note "(EADDRINUSE); with it, bind() ignores TIME_WAIT connections. sluice sets it on every"
lab_note "listener (core/net.cc), so echo_server came back on port $P2 at once."
lab_expect "sluice's idle timeout closed the silent connections" "$D/echo-idle" "idle"
lab_expect "the silent clients' side is in CLOSE_WAIT" "$D/ss-idle" "CLOSE-WAIT"
lab_expect "server-side TIME_WAIT on the listening port" "$D/ss-srv-tw" "TIME-WAIT.*:$P2 .*timer:\(timewait"
lab_expect "bind without SO_REUSEADDR fails" "$D/bind" "SO_REUSEADDR=0: .*failed: Address already in use"
lab_expect "bind with SO_REUSEADDR works" "$D/bind" "SO_REUSEADDR=1: .* ok"
lab_expect "echo_server restarts on the same port" "$D/bind" "restart: listening on .*:$P2 "
lab_done
