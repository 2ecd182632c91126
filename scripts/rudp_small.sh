#!/usr/bin/env bash
# Small messages over a lossy, long link (docs/RUDP.md, "Small messages"):
# one 8-256 B message every 20 ms per connection, 5% loss each way,
# one-way delay uniform in 30-62 ms (mean 46: the link's mean RTT is
# 92 ms). rudp and kernel TCP (cubic, bbr) run side by side through the
# same perf/linkem link, each connection its own flow (--order flow: jitter
# never reorders a flow, and flows do not delay each other), and plain UDP
# datagrams at the same rate measure the link's own round trip for this
# traffic (the yardstick: keeping each flow in order under jitter adds to
# the configured mean of 92 ms). Needs root.
#
#   scripts/rudp_small.sh [--seconds 60] [--conns 20] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
conns=20
out=docs/perf/rudp/small.jsonl
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--conns N] [--out FILE]" >&2; exit 2 ;;
  esac
done
bazel build -c opt //perf:linkem //perf:msg_rtt >/dev/null
B=$PWD/bazel-bin/perf
mkdir -p "$(dirname "$out")"
: > "$out"
link=(--delay-ms 46 --jitter-ms 16 --order flow --loss 0.05)
echo "link: ${link[*]}"
client() {  # proto port [tcp-cc]
  local cc=""
  [ -n "${3:-}" ] && cc="--tcp-cc $3"
  echo "$B/msg_rtt --proto $1 --host \$LINKEM_FAR_ADDR --port $2 --conns $conns --seconds $seconds --warmup 5 --label small $cc --json $out"
}
"$B/linkem" "${link[@]}" --duration $((seconds + 120)) --json "${out%.jsonl}-link.json" \
  --near "sleep 1; $(client rudp 9000) & $(client tcp 9001 cubic) & $(client tcp 9002 bbr) & $(client udp 9003) & wait" \
  -- sh -c "$B/msg_rtt --server --proto rudp --host 0.0.0.0 --port 9000 & $B/msg_rtt --server --proto tcp --host 0.0.0.0 --port 9001 & $B/msg_rtt --server --proto tcp --host 0.0.0.0 --port 9002 & $B/msg_rtt --server --proto udp --host 0.0.0.0 --port 9003 & wait"
cat "$out"
