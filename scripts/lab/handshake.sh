#!/usr/bin/env bash
# Lab topic "handshake" (docs/LAB.md): the three segments that open a TCP
# connection, with their sequence and acknowledgement numbers, and the
# listener's accept queue (ss -lnt: Recv-Q and Send-Q against the backlog).
# Root: two namespaces and a veth; ~6 s.   scripts/lab.sh handshake
set -euo pipefail
[ "${1:-}" = --help ] && { sed -n '2,5p' "$0" | sed 's/^# //'; exit 0; }
source "$(dirname "$0")/common.sh"
lab_init handshake
lab_need_root
lab_pair
D=$LAB_TMP

lab_server $NS_S "$D/echo" "$ECHO_SERVER" --host 0.0.0.0 --port 7000 --io epoll --backlog 16
lab_tcpdump $NS_C eth0 "$D/cap" tcp port 7000
in_ns $NS_C python3 "$LAB_PEER" hello --host $SRV_ADDR --port 7000 --hold 0.2 >"$D/client"
lab_tcpdump_stop

lab_q "TCP怎么做到连接的？三次握手，为什么不能两次握手 (how does TCP connect; why three segments, not two)"
lab_cmd "ip netns exec $NS_C tcpdump -nn -S -i eth0 tcp port 7000   # client side of the veth"
# Annotate: the first SYN, SYN-ACK and ACK, checking the arithmetic.
sed -E 's/, options \[[^]]*\]//' "$D/cap" | awk '
  { line = $0; note = "" }
  /Flags \[S\],/ && !syn { syn = 1; match($0, /seq [0-9]+/); x = substr($0, RSTART + 4, RLENGTH - 4) + 0
    note = sprintf("SYN: the client picks its ISN x=%.0f and asks for a connection", x) }
  /Flags \[S\.\],/ && !synack { synack = 1; match($0, /seq [0-9]+/); y = substr($0, RSTART + 4, RLENGTH - 4) + 0
    match($0, /ack [0-9]+/); a = substr($0, RSTART + 4, RLENGTH - 4) + 0
    note = sprintf("SYN-ACK: the server picks its ISN y=%.0f and acknowledges x: ack=x+1 %s", y, (a == x + 1) ? "holds" : "DOES NOT HOLD") }
  /Flags \[\.\],/ && synack && !ack3 { ack3 = 1; match($0, /ack [0-9]+/); a = substr($0, RSTART + 4, RLENGTH - 4) + 0
    note = sprintf("ACK: the client acknowledges y: ack=y+1 %s. Now each side knows the other received its ISN", (a == y + 1) ? "holds" : "DOES NOT HOLD") }
  /Flags \[P\.\]/ && !data { data = 1; note = "first data: seq continues from x+1 (the SYN used one number)" }
  /Flags \[F/ && fin < 2 { fin++; note = (fin == 1) ? "FIN: the client closes (topic teardown)" : "FIN: the server closes too" }
  { print line; if (note != "") print "      ^ " note }' >"$D/annotated"
lab_show "$D/annotated" 30
lab_note "Why not two: with only SYN and SYN-ACK the server could not know that the client got"
lab_note "its ISN y, nor tell a fresh SYN from an old duplicate one still in the network; the"
lab_note "third segment acknowledges y, so both directions' starting numbers are confirmed."
lab_expect "SYN from the client" "$D/annotated" "^ *\^ SYN: the client picks"
lab_expect "SYN-ACK acknowledges the client's ISN + 1" "$D/annotated" "ack=x\+1 holds"
lab_expect "ACK acknowledges the server's ISN + 1" "$D/annotated" "ack=y\+1 holds"

# The accept queue. A listener with backlog 4 that never accepts: the
# kernel completes handshakes into the queue until it is full (Recv-Q =
# backlog + 1: the check is ">", not ">="), then drops further SYNs, which
# the clients retransmit (1 s, 3 s, ...).
lab_q "listen(fd, backlog): what the backlog bounds (the accept queue of completed handshakes)"
lab_bg $NS_S "$D/noaccept" python3 "$LAB_PEER" listen-noaccept --host 0.0.0.0 --port 7001 --backlog 4 --hold 6
for _ in $(seq 1 50); do in_ns $NS_S ss -lnt 'sport = :7001' | grep -q LISTEN && break; sleep 0.05; done
LAB_TCPDUMP_REL=1 lab_tcpdump $NS_C eth0 "$D/cap2" 'tcp port 7001 and tcp[tcpflags] & tcp-syn != 0'
lab_bg $NS_C "$D/many" python3 "$LAB_PEER" many-connect --host $SRV_ADDR --port 7001 --n 8 --hold 1.6 --hold2 2
sleep 1.3
{ lab_ss $NS_S -lnt "( sport = :7001 or sport = :7000 )"
  echo
  echo "\$ ss -tan state established '( dport = :7001 )' | wc -l   # client side, ESTABLISHED"
  echo "  $(in_ns $NS_C ss -Htan state established '( dport = :7001 )' | wc -l)"
  echo "\$ ss -tan state syn-sent '( dport = :7001 )' | wc -l      # client side, still SYN-SENT"
  echo "  $(in_ns $NS_C ss -Htan state syn-sent '( dport = :7001 )' | wc -l)"
} >"$D/queue"
sleep 0.6
lab_tcpdump_stop
lab_show "$D/queue"
lab_note "port 7001 (never accepts, backlog 4): Recv-Q = connections waiting in the accept queue,"
lab_note "Send-Q = the backlog. It holds backlog+1; the other clients' SYNs are dropped and stay"
lab_note "SYN-SENT, retransmitting. Port 7000 is sluice's echo_server (--backlog 16): Recv-Q 0,"
lab_note "its loop accepts as soon as the listener is readable."
echo "  SYNs seen for port 7001 (first and retransmitted; relative times):"
awk '/Flags \[S\]/ {print $1, $3, $4, $5, $6, $7}' "$D/cap2" | sort -k2,2 -s >"$D/syns"
lab_show "$D/syns" 16
lab_expect "the accept queue is full: Recv-Q 5 against backlog 4" "$D/queue" "^LISTEN +5 +4 .*:7001"
lab_expect "sluice's listener shows its backlog 16" "$D/queue" "^LISTEN +0 +16 .*:7000"
lab_expect "some clients stay in SYN-SENT" "$D/queue" "^  [1-9]"
# A SYN sent twice from one port: dropped at the full queue, retransmitted.
lab_expect "dropped SYNs are retransmitted" <(awk '{print $2}' "$D/syns" | sort | uniq -d) "."
lab_done
