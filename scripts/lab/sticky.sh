#!/usr/bin/env bash
# Lab topic "sticky" (docs/LAB.md): TCP is a byte stream. Two writes arrive
# as one read, one write arrives as several reads -- shown on the raw echo
# server (client recv() sizes, the server's read calls under strace, and,
# as root, the segments on the wire) -- then the line and length codecs
# cut the same kind of stream into whole frames. Runs without root too
# (127.0.0.1, no capture). ~5 s.   scripts/lab.sh sticky
set -euo pipefail
[ "${1:-}" = --help ] && { sed -n '2,7p' "$0" | sed 's/^# //'; exit 0; }
source "$(dirname "$0")/common.sh"
lab_init sticky
D=$LAB_TMP
if [ "$LAB_LOCAL" = 1 ]; then NS_S=- NS_C=- HOST=127.0.0.1 SRV_ADDR=127.0.0.1
else lab_pair; HOST=0.0.0.0; fi

# The raw echo server, under strace when there is one: its read calls show
# how the kernel handed it the stream (only syscalls on sockets are kept).
TRACE=()
if command -v strace >/dev/null && strace -o /dev/null true 2>/dev/null; then
  TRACE=(strace -f -qq -e signal=none -e trace=accept4,read,recvfrom,recvmsg,readv -o "$D/strace")
fi
lab_server $NS_S "$D/raw" "${TRACE[@]}" "$ECHO_SERVER" --host $HOST --port 0 --io epoll --codec raw
RAW_PORT=$SERVER_PORT
[ "$LAB_LOCAL" = 1 ] || LAB_TCPDUMP_REL=1 lab_tcpdump $NS_C eth0 "$D/cap" tcp port $RAW_PORT
in_ns $NS_C python3 "$LAB_PEER" sticky --host $SRV_ADDR --port $RAW_PORT >"$D/client"
[ "$LAB_LOCAL" = 1 ] || lab_tcpdump_stop
sleep 0.2

lab_q "TCP粘包/拆包 (sticky packets): is one send() one recv()? (TCP和UDP: TCP is a byte stream, UDP keeps datagram boundaries)"
echo "  client (scripts/lab/peer.py sticky, against echo_server --codec raw):"
lab_show "$D/client"
lab_note "Two writes, one read: the echoes of PING1 and PING2 waited in the client's receive"
lab_note "buffer together, and recv() returns whatever is there -- the boundary is gone."
lab_note "One write, many reads: 256 KB left as many segments; recv() returns what has arrived."
lab_expect "two writes came back in one recv()" "$D/client" "one recv\(\) returned 10 bytes: b'PING1PING2'"
lab_expect "one write came back in several recv()s, intact" "$D/client" "(^|[^0-9])([2-9]|[1-9][0-9]+) recv\(\) calls returned 262144 bytes \(intact\)"
if [ -s "$D/strace" ]; then
  # The connection's fd is what accept4 returned; keep the reads on it.
  fd=$(sed -nE 's/.*accept4\(.*\) = ([0-9]+)$/\1/p' "$D/strace" | head -1)
  grep -E "(read|recvfrom|recvmsg|readv)\($fd, " "$D/strace" | grep -v 'EAGAIN\|unfinished\|resumed' |
    sed -E 's/^[0-9]+ +//; s/(".{0,16})[^"]*"(\.\.\.)?/\1..."/' >"$D/reads" || true
  echo "  the server's reads on the connection (strace):"
  lab_show "$D/reads" 12
  lab_note "The server's read() sizes are neither the client's write sizes nor its recv() sizes:"
  lab_note "each side sees its own cut of the same byte stream."
  lab_expect "the server read the 256 KB in several reads" <(awk -F' = ' '$2 > 10 {n++} END {print n+0}' "$D/reads") "^([2-9]|[1-9][0-9]+)$"
fi
if [ "$LAB_LOCAL" = 0 ]; then
  echo "  on the wire (client side, relative sequence numbers):"
  grep -E 'length [1-9]' "$D/cap" | sed -E 's/, options \[[^]]*\]//' >"$D/data"
  awk 'NR <= 4' "$D/data" >"$D/data.head"
  lab_show "$D/data.head"
  printf '  ... %d data segments in all, largest %s bytes (MSS 1448 on this 1500-byte link)\n' \
    "$(wc -l <"$D/data")" "$(sed -nE 's/.*length ([0-9]+).*/\1/p' "$D/data" | sort -n | tail -1)"
  lab_note "PING1 and PING2 crossed the link as two 5-byte segments, yet the server's first"
  lab_note "recvfrom() above returned all 10 bytes, and its echo went back as one segment."
  lab_expect "PING1 and PING2 went as two segments of 5 bytes" <(grep -c 'length 5$' "$D/data") "^([2-9]|[1-9][0-9]+)$"
  lab_expect "the 256 KB went as many segments of at most 1448 bytes" "$D/data" "length 1448"
fi
lab_stop $SERVER_PID

for codec in line length; do
  lab_q "How an application finds message boundaries: --codec $codec"
  lab_server $NS_S "$D/$codec" "$ECHO_SERVER" --host $HOST --port 0 --io epoll --codec $codec
  in_ns $NS_C python3 "$LAB_PEER" codec --codec $codec --host $SRV_ADDR --port $SERVER_PORT >"$D/client-$codec"
  lab_show "$D/client-$codec"
  lab_stop $SERVER_PID
done
lab_note "Both codecs answer whole frames only: a partial frame is held (no echo at all)"
lab_note "until its last byte arrives, and bytes of the next frame wait for theirs. A line"
lab_note "codec ends a frame at '\\n'; a length codec reads a 4-byte size first (docs/CODECS.md)."
lab_expect "line codec: two frames in one write answered" "$D/client-line" "echo: b'one\\\\ntwo\\\\n'"
lab_expect "line codec: partial frame held" "$D/client-line" "nothing within 0.5 s"
lab_expect "line codec: completed frame answered alone" "$D/client-line" "echo: b'hello\\\\n'$"
lab_expect "length codec: partial frame held" "$D/client-length" "nothing within 0.5 s"
lab_expect "length codec: completed frame answered alone" "$D/client-length" "echo: b'\\\\x00\\\\x00\\\\x00\\\\x05hello'$"
lab_done
