#!/usr/bin/env bash
# Bulk integrity over an emulated lossy, reordering link (docs/RUDP.md,
# "Bulk integrity"): perf/rudp_bulk sends --bytes through perf/linkem with
# rudp, then with kernel TCP (cubic and bbr) over the same link, and checks
# every byte (CRC-32 and count, compared end to end). Needs root (linkem
# makes two network namespaces). Results: one JSON line per transfer.
#
#   scripts/rudp_bulk.sh                 # rudp 1 GiB, TCP 256 MiB each
#   scripts/rudp_bulk.sh --bytes 64M --tcp-bytes 64M --out /tmp/bulk.jsonl
#
# TCP moves less by default: at 1% loss and a 10 ms RTT, cubic holds about
# 1.22 x MSS / (RTT x sqrt(p)) ~ 14 Mbit/s (the Mathis bound), so 1 GiB
# would take it about ten minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bytes=1G
tcp_bytes=256M
out=docs/perf/rudp/bulk.jsonl
link=(--delay-ms 5 --loss 0.01 --reorder 0.02 --reorder-ms 3 --dup 0.005 --rate 300mbit --queue-packets 2000)
while [ $# -gt 0 ]; do
  case "$1" in
    --bytes) bytes=$2; shift 2 ;;
    --tcp-bytes) tcp_bytes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--bytes N] [--tcp-bytes N] [--out FILE]" >&2; exit 2 ;;
  esac
done
bazel build -c opt //perf:linkem //perf:rudp_bulk >/dev/null
B=$PWD/bazel-bin/perf
mkdir -p "$(dirname "$out")"
: > "$out"
run() {  # proto, bytes, extra client args...
  local proto=$1 bytes=$2; shift 2
  "$B/linkem" "${link[@]}" --duration 900 -q \
    --near "sleep 0.5; $B/rudp_bulk --proto $proto --host \$LINKEM_FAR_ADDR --port 9000 --bytes $bytes --json $out $*" \
    -- "$B/rudp_bulk" --server --proto "$proto" --host 0.0.0.0 --port 9000
}
echo "link: ${link[*]}"
# rudp's fixed window (1 MiB) is above the path's BDP (300 Mbit/s x 10 ms
# = 375 KB): it fills the bottleneck queue, as a window that size must.
run rudp "$bytes" --cc-window 1048576
run tcp "$tcp_bytes" --tcp-cc cubic
run tcp "$tcp_bytes" --tcp-cc bbr
cat "$out"
