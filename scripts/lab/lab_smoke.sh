#!/usr/bin/env bash
# Test of the TCP/UDP lab (scripts/lab.sh, docs/LAB.md): the topics that need
# no root, short, on 127.0.0.1 (LAB_LOCAL=1: no namespaces, no tcpdump),
# whatever user runs it (~15 s):
#   sticky    two writes read as one, one write read as several; the line
#             and length codecs hold a partial frame and answer whole ones;
#   teardown  CLOSE_WAIT behind a handler that never closes, FIN_WAIT_2 and
#             TIME_WAIT on the side that closed first, sluice's idle timeout
#             closing silent peers, server-side TIME_WAIT, SO_REUSEADDR;
#   handshake needs a link of its own: in local mode it must skip, saying so.
# Each topic checks its own evidence (exit 1 on a failed check); this test
# also checks that the traces hold the segments' and sockets' states.
set -euo pipefail
R="${TEST_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
if [ -d "$R/sluice/scripts/lab" ]; then ROOT=$R/sluice; else ROOT=$(cd "$(dirname "$0")/../.." && pwd); fi
export LAB_BIN=$ROOT LAB_LOCAL=1
[ -x "$LAB_BIN/servers/echo_server" ] || LAB_BIN=$ROOT/bazel-bin
fail() { echo "lab_smoke: FAIL: $*" >&2; exit 1; }
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT

for t in sticky teardown handshake; do
  rc=0; timeout 60 "$ROOT/scripts/lab/$t.sh" >"$OUT/$t" 2>&1 || rc=$?
  cat "$OUT/$t"
  [ "$rc" = 0 ] || fail "topic $t exited $rc"
done
want() {  # TOPIC ERE: the topic's trace must hold a line matching ERE
  grep -Eq -- "$2" "$OUT/$1" || fail "$1: no line matching /$2/"
}
want sticky "one recv\(\) returned 10 bytes: b'PING1PING2'"
want sticky "recv\(\) calls returned 262144 bytes \(intact\)"
want sticky "nothing within 0.5 s \(the codec holds the partial frame\)"
want sticky "^lab sticky: ([0-9]+)/\1 checks held"
want teardown "^  CLOSE-WAIT .*:[0-9]+ +127.0.0.1:[0-9]+"
want teardown "^  FIN-WAIT-2 "
want teardown "^  TIME-WAIT .*timer:\(timewait,[0-9]+sec"
want teardown "Address already in use"
want teardown "^lab teardown: ([0-9]+)/\1 checks held"
want handshake "SKIPPED: needs root"
[ "$(grep -c '^check: ok' "$OUT/sticky" "$OUT/teardown" | awk -F: '{s += $2} END {print s}')" -ge 15 ] ||
  fail "fewer checks than expected ran"
echo "lab_smoke: PASS"
