#!/usr/bin/env bash
# Smoke test of //perf:linkem, the real binary on real namespaces and TUN
# devices (~15 s). Skips (exit 0, with the reason) when not root, without
# /dev/net/tun or without iproute2. Checks:
#   1. delay 20 ms each way: the UDP round trip is ~40 ms (and ICMP ping's
#      too, where ping is installed);
#   2. loss 0.2 each way: round-trip loss ~36 % and the per-direction
#      counters ~20 %;
#   3. rate 20 Mbit/s: a TCP transfer far -> near runs at ~20 Mbit/s;
#   4. bad input is refused with a message; SIGTERM stops a run;
#   5. no namespace of any of these runs is left behind.
set -euo pipefail
R="${TEST_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}"
find_file() {  # runfiles layout under bazel test, the source tree otherwise
  for c in "$R/sluice/$1" "$R/$1" "$R/bazel-bin/$1"; do [ -e "$c" ] && { echo "$c"; return; }; done
  echo "missing $1" >&2; exit 1
}
skip() { echo "linkem_smoke: SKIPPED: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "not root (linkem creates network namespaces)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || skip "no iproute2 (ip)"
command -v python3 >/dev/null || skip "no python3"
probe_ns="linkem-smokeprobe-$$"  # root in an unprivileged container may not create namespaces
ip netns add "$probe_ns" 2>/dev/null || skip "cannot create network namespaces here"
ip netns del "$probe_ns"

LINKEM=$(find_file perf/linkem)
PROBE=$(find_file perf/linkem_probe.py)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
NAMES="$TMP/names"  # every namespace name a run reported
: > "$NAMES"
json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }
note_names() { json_field "$1" 'near_ns + "\n" + far_ns' >> "$NAMES"; }
fail() { echo "linkem_smoke: FAIL: $*" >&2; exit 1; }

# 1. Delay.
timeout 60 "$LINKEM" -q --delay-ms 20 --json "$TMP/delay.json" \
  --near "python3 $PROBE udp-ping \$LINKEM_FAR_ADDR 9000 20 50" \
  -- python3 "$PROBE" udp-echo 9000 > "$TMP/delay.out" 2> "$TMP/delay.err" \
  || { cat "$TMP/delay.err" >&2; fail "delay run failed"; }
note_names "$TMP/delay.json"
cat "$TMP/delay.out"
read -r _ sent _ got _ loss _ rtt < "$TMP/delay.out"
[ "$got" = "$sent" ] || fail "lost packets on a lossless link: $got of $sent"
python3 -c "import sys; r=float(sys.argv[1]); sys.exit(0 if 39.5 <= r <= 46 else 1)" "$rtt" \
  || fail "UDP RTT $rtt ms with 20 ms each way (want 39.5..46)"
if command -v ping >/dev/null; then
  timeout 60 "$LINKEM" -q --delay-ms 20 --json "$TMP/ping.json" \
    --near 'ping -q -c 10 -i 0.05 $LINKEM_FAR_ADDR' > "$TMP/ping.out" 2>&1 \
    || { cat "$TMP/ping.out" >&2; fail "ping run failed"; }
  note_names "$TMP/ping.json"
  avg=$(sed -nE 's|^rtt min/avg/max/mdev = [0-9.]+/([0-9.]+)/.*|\1|p' "$TMP/ping.out")
  echo "ping avg rtt $avg ms"
  python3 -c "import sys; r=float(sys.argv[1]); sys.exit(0 if 39.5 <= r <= 46 else 1)" "$avg" \
    || fail "ping RTT $avg ms with 20 ms each way"
else
  echo "(ping not installed: ICMP check skipped)"
fi

# 2. Loss: 400 probes; each way 0.2, so the round trip loses 1 - 0.8^2 = 36 %.
timeout 60 "$LINKEM" -q --loss 0.2 --seed 7 --json "$TMP/loss.json" \
  --near "python3 $PROBE udp-ping \$LINKEM_FAR_ADDR 9000 400 5" \
  -- python3 "$PROBE" udp-echo 9000 > "$TMP/loss.out" 2> "$TMP/loss.err" \
  || { cat "$TMP/loss.err" >&2; fail "loss run failed"; }
note_names "$TMP/loss.json"
cat "$TMP/loss.out"
read -r _ sent _ got _ loss _ rtt < "$TMP/loss.out"
python3 - "$loss" "$TMP/loss.json" <<'PY' || fail "loss out of range"
import json, sys
loss = float(sys.argv[1])
d = json.load(open(sys.argv[2]))
assert 0.27 <= loss <= 0.45, f"round-trip loss {loss}"
for k in ("up", "down"):
    s = d[k]
    frac = s["lost_random"] / s["packets_in"]
    assert 0.13 <= frac <= 0.27, f"{k}: lost {s['lost_random']} of {s['packets_in']}"
    assert s["delivered"] == s["packets_in"] - s["lost_random"] - s["in_flight_at_exit"], s
print("loss ok: round trip", loss, "per direction",
      [round(d[k]["lost_random"] / d[k]["packets_in"], 3) for k in ("up", "down")])
PY

# 3. Rate: 4 MB far -> near over 20 Mbit/s (1.6 s at the rate).
timeout 60 "$LINKEM" -q --rate 20mbit --delay-ms 5 --queue-packets 100 --json "$TMP/rate.json" \
  --near "python3 $PROBE tcp-recv \$LINKEM_FAR_ADDR 9001" \
  -- python3 "$PROBE" tcp-send 9001 4000000 > "$TMP/rate.out" 2> "$TMP/rate.err" \
  || { cat "$TMP/rate.err" >&2; fail "rate run failed"; }
note_names "$TMP/rate.json"
cat "$TMP/rate.out"
read -r _ bytes _ secs _ mbit < "$TMP/rate.out"
[ "$bytes" = 4000000 ] || fail "received $bytes of 4000000 bytes"
python3 -c "import sys; m=float(sys.argv[1]); sys.exit(0 if 16 <= m <= 20.5 else 1)" "$mbit" \
  || fail "TCP at $mbit Mbit/s over a 20 Mbit/s link (want 16..20.5)"

# 4. Bad input; SIGTERM.
if "$LINKEM" --loss 1.5 -- true 2> "$TMP/bad.err"; then fail "--loss 1.5 accepted"; fi
grep -q "probability" "$TMP/bad.err" || fail "no clear message for --loss 1.5: $(cat "$TMP/bad.err")"
if "$LINKEM" --rate 10furlongs -- true 2> "$TMP/bad.err"; then fail "a bad rate accepted"; fi
grep -q "bad rate" "$TMP/bad.err" || fail "no clear message for a bad rate"
"$LINKEM" -q --json "$TMP/term.json" -- sleep 30 2> "$TMP/term.err" &
pid=$!
for _ in $(seq 100); do ip netns list | grep -q "linkem-$pid-far" && break; sleep 0.05; done
ip netns list | grep -q "linkem-$pid-far" || fail "namespaces of a running linkem not seen"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
[ "$rc" = 143 ] || fail "SIGTERM: exit $rc, want 143"
note_names "$TMP/term.json"

# 5. Nothing left behind.
[ "$(wc -l < "$NAMES")" -ge 8 ] || fail "runs reported too few namespaces: $(cat "$NAMES")"
left=$(ip netns list | awk '{print $1}' | grep -F -x -f "$NAMES" || true)
[ -z "$left" ] || fail "namespaces left behind: $left"
echo "linkem_smoke: ok"
