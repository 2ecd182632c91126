#!/usr/bin/env bash
# The DoS lab (issue 17): every attack of perf/flood against the bundled
# servers, in network namespaces this script builds and removes, with the
# good client (perf/dosprobe, servers/heartbeat_client) measuring before,
# during and after each one. Needs root; skips (exit 0) otherwise.
#
#   scripts/doslab.sh                      # every scenario (~6 min)
#   scripts/doslab.sh --quick              # SYN off/on, UDP, conn flood, rudp (~1 min)
#   scripts/doslab.sh --only syn,rudp --out /tmp/doslab.md
#
# Topology (names $PREFIX-<pid>-*, all deleted on exit):
#
#   good 10.77.1.2 --- r-good 10.77.1.1 \
#                                         router --tbf $LINK_RATE--> r-srv 10.77.0.1 --- 10.77.0.2 srv
#   atk  10.77.2.2 --- r-atk  10.77.2.1 /
#
# The router sends 10.77.128.0/17 (spoofed sources) and 10.77.64.0/18
# (the connection flood's sources, local to atk via a `local` route) to
# atk. Spoofed addresses are not local there and atk does not forward, so
# the server's SYN-ACKs to them vanish (counted in atk's InAddrErrors, no
# RST: the "synack" column checks it). The server namespace has no default
# route. Sysctls change only inside the lab's namespaces.
#
# Each row: fresh servers (echo on 7000, heartbeat on 7100, of the
# scenario's protocol), sysctls set, then BEFORE s of probing, the flood
# for DURING s, AFTER s more. Output: a Markdown table (stdout, and --out).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

QUICK=0 OUT="" ONLY="" BUILD=1
SYN_RATE=200000 LINK_RATE=1gbit
BEFORE=3 DURING=10 AFTER=3
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; cat <<EOF
Options:
  --quick             a subset with short phases (~1 min)
  --only LIST         scenarios, comma-separated: $ALL_SCENARIOS
  --out FILE          also write the table there
  --syn-rate PPS      SYN/ACK/RST flood rate (default $SYN_RATE; perf/flood caps it)
  --link-rate RATE    the tbf link to the server (default $LINK_RATE)
  --phases B,D,A      seconds before, during and after each attack (default $BEFORE,$DURING,$AFTER)
  --no-build          use the binaries in bazel-bin as they are
EOF
}
ALL_SCENARIOS="control,syn,ack,rst,udp,udp-hb,conn,conn-1src,udp-1src,slowloris,rudp,rudp-1src"
SCENARIOS=$ALL_SCENARIOS
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    --out) OUT=$2; shift ;;
    --syn-rate) SYN_RATE=$2; shift ;;
    --link-rate) LINK_RATE=$2; shift ;;
    --phases) IFS=, read -r BEFORE DURING AFTER <<<"$2"; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "doslab: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  SCENARIOS="syn,udp,conn,rudp"
  BEFORE=1 DURING=4 AFTER=1
fi
[ -n "$ONLY" ] && SCENARIOS=$ONLY
if [ "$(id -u)" -ne 0 ]; then
  echo "doslab: SKIPPED: needs root (it creates network namespaces); try: sudo $0"
  exit 0
fi
if [ "$BUILD" = 1 ]; then
  bazel build //servers:echo_server //servers:heartbeat_server //servers:heartbeat_client \
    //perf:flood //perf:dosprobe >/dev/null 2>&1 || { echo "doslab: build failed" >&2; exit 1; }
fi
B=$(pwd)/bazel-bin
ECHO=$B/servers/echo_server HB=$B/servers/heartbeat_server HBC=$B/servers/heartbeat_client
FLOOD=$B/perf/flood PROBE=$B/perf/dosprobe
HAVE_DEFENSES=0
"$ECHO" --help 2>/dev/null | grep -q -- --source-rate && HAVE_DEFENSES=1

P="doslab-$$"
NS_SRV=$P-srv NS_GOOD=$P-good NS_ATK=$P-atk NS_RTR=$P-rtr
SRV=10.77.0.2 GOOD=10.77.1.2 ATK=10.77.2.2
SPOOF=10.77.128.0/17 MANY=10.77.64.0/18
TMP=$(mktemp -d /tmp/doslab.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  netns_teardown $NS_SRV $NS_GOOD $NS_ATK $NS_RTR
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
sysctl_ns() { in_ns "$1" sh -c "echo $3 > /proc/sys/$(tr . / <<<"$2")"; }

lab_up() {
  local n
  for n in $NS_SRV $NS_GOOD $NS_ATK $NS_RTR; do
    ip netns add "$n"
    ip -n "$n" link set lo up
    sysctl_ns "$n" net.ipv6.conf.all.disable_ipv6 1
  done
  # veths made inside the router: no name ever exists in the host namespace.
  ip -n $NS_RTR link add r-srv type veth peer name eth0 netns $NS_SRV
  ip -n $NS_RTR link add r-good type veth peer name eth0 netns $NS_GOOD
  ip -n $NS_RTR link add r-atk type veth peer name eth0 netns $NS_ATK
  ip -n $NS_RTR addr add 10.77.0.1/24 dev r-srv
  ip -n $NS_RTR addr add 10.77.1.1/24 dev r-good
  ip -n $NS_RTR addr add 10.77.2.1/24 dev r-atk
  ip -n $NS_SRV addr add $SRV/24 dev eth0
  ip -n $NS_GOOD addr add $GOOD/24 dev eth0
  ip -n $NS_ATK addr add $ATK/24 dev eth0
  for n in $NS_SRV $NS_GOOD $NS_ATK; do ip -n "$n" link set eth0 up; done
  for d in r-srv r-good r-atk; do ip -n $NS_RTR link set $d up; done
  sysctl_ns $NS_RTR net.ipv4.ip_forward 1
  ip -n $NS_SRV route add 10.77.0.0/16 via 10.77.0.1   # and no default route
  ip -n $NS_GOOD route add 10.77.0.0/16 via 10.77.1.1
  ip -n $NS_ATK route add 10.77.0.0/16 via 10.77.2.1
  ip -n $NS_RTR route add $SPOOF via $ATK
  ip -n $NS_RTR route add $MANY via $ATK
  ip -n $NS_ATK route add local $MANY dev lo
  tc -n $NS_RTR qdisc add dev r-srv root tbf rate "$LINK_RATE" burst 1mb latency 50ms
  in_ns $NS_GOOD ping -c1 -W2 $SRV >/dev/null 2>&1 || true  # warm ARP; ping may be absent
}

# Server-side sysctls for one row (the server namespace only).
server_sysctls() {
  sysctl_ns $NS_SRV net.ipv4.tcp_syncookies "$1"
  sysctl_ns $NS_SRV net.core.somaxconn 4096
  sysctl_ns $NS_SRV net.ipv4.tcp_max_syn_backlog 256
  sysctl_ns $NS_SRV net.ipv4.tcp_synack_retries 5
  # Every good connection as a new client's: with saved metrics the kernel
  # calls a peer it has an RTT for "proven" and lets its SYNs past the
  # no-cookies drop rule, so a returning probe would hide the failure.
  sysctl_ns $NS_SRV net.ipv4.tcp_no_metrics_save 1
  ip -n $NS_SRV tcp_metrics flush all 2>/dev/null || true
}

defense_flags() {  # PROTO
  [ "$DEF" = on ] || return 0
  case "$1" in
    tcp) echo "--backlog 4096 --defer-accept-s 5 --max-conns-per-source 100 --source-rate 500 --source-burst 1000" ;;
    rudp) echo "--max-conns-per-source 100 --source-rate 500 --source-burst 1000" ;;
    udp) echo "--source-rate 2000 --source-burst 4000" ;;
  esac
}

proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
proc_rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

ROW=0
# run_row SCENARIO COOKIES DEFENSES PROBE_PROTO ECHO_ARGS HB_PROTO TARGET(echo|hb) -- FLOOD_ARGS...
run_row() {
  local scen=$1 cookies=$2; DEF=$3; local pproto=$4 echo_args=$5 hbproto=$6 target=$7; shift 8
  ROW=$((ROW + 1))
  local d=$TMP/row-$ROW; mkdir -p "$d"
  local total=$((BEFORE + DURING + AFTER))
  printf 'scenario=%s\ncookies=%s\ndefenses=%s\nprobe=%s\n' "$scen" "$cookies" "$DEF" "$pproto" > "$d/meta"
  echo "doslab: row $ROW: $scen syncookies=$cookies defenses=$DEF" >&2
  server_sysctls "$cookies"
  local eproto; eproto=$(sed -nE 's/.*--proto ([a-z]+).*/\1/p' <<<"$echo_args"); eproto=${eproto:-tcp}
  # shellcheck disable=SC2046,SC2086
  start_server "$d/echo" ip netns exec $NS_SRV "$ECHO" --host 0.0.0.0 --port 7000 --io epoll $echo_args \
    $(defense_flags "$eproto") || return 1
  local epid=$SERVER_PID; PIDS+=("$epid")
  # shellcheck disable=SC2046
  start_server "$d/hb" ip netns exec $NS_SRV "$HB" --host 0.0.0.0 --port 7100 --io epoll --proto "$hbproto" \
    --interval-ms 500 --misses 3 --peer-lines-per-s 0 $(defense_flags "$hbproto") || return 1
  local hpid=$SERVER_PID; PIDS+=("$hpid")
  local tpid=$epid; [ "$target" = hb ] && tpid=$hpid
  in_ns $NS_SRV cat /proc/net/netstat /proc/net/snmp > "$d/srv_before"
  in_ns $NS_ATK cat /proc/net/netstat /proc/net/snmp > "$d/atk_before"
  echo "rss_before=$(proc_rss "$tpid")" >> "$d/meta"

  # ip netns exec execs the tool: $! is the tool itself (a function would fork).
  ip netns exec $NS_GOOD "$HBC" --host $SRV --port 7100 --proto "$hbproto" --conns 20 --interval-ms 500 \
    --misses 3 --duration-s $((total + 1)) > "$d/hbc.json" 2> "$d/hbc.err" &
  local hbc=$!; PIDS+=("$hbc")
  local lp=""; [[ "$echo_args" == *"--codec length"* ]] && lp=--length-prefix
  ip netns exec $NS_GOOD "$PROBE" --proto "$pproto" --host $SRV --port 7000 --bind $GOOD --rate 50 \
    --seconds "$total" --deadline-ms 3000 --phases "before:$BEFORE,during:$DURING,after:$AFTER" \
    $lp > "$d/probe.json" 2> "$d/probe.err" &
  local probe=$!; PIDS+=("$probe")
  sleep "$BEFORE"
  local t0 c0 t1 c1
  t0=$(date +%s.%N); c0=$(proc_ticks "$tpid")
  ip netns exec $NS_ATK "$FLOOD" --seconds "$DURING" "$@" > "$d/flood.json" 2> "$d/flood.err" &
  local fl=$!; PIDS+=("$fl")
  # RSS a second into the attack and at its end: equal means the attack's
  # cost is bounded (warm-up, not growth).
  sleep 1; echo "rss_mid=$(proc_rss "$tpid")" >> "$d/meta"
  wait "$fl" || true
  t1=$(date +%s.%N); c1=$(proc_ticks "$tpid")
  echo "rss_during=$(proc_rss "$tpid")" >> "$d/meta"
  echo "cpu_pct=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.1f", (b - a) / hz / (e - s) * 100 }')" >> "$d/meta"
  wait "$probe" || true
  wait "$hbc" || true
  echo "rss_after=$(proc_rss "$tpid")" >> "$d/meta"
  in_ns $NS_SRV cat /proc/net/netstat /proc/net/snmp > "$d/srv_after"
  in_ns $NS_ATK cat /proc/net/netstat /proc/net/snmp > "$d/atk_after"
  SERVER_PID=$hpid; stop_server || true
  SERVER_PID=$epid; stop_server || true
  # False drops: the server timed out a good client's session.
  echo "hb_false_drops=$(grep -cE "drop ${GOOD//./\\.}:[0-9]+ .*reason=timeout" "$d/hb.err" || true)" >> "$d/meta"
  sleep 1  # let TIME_WAITs and the router's queue settle before the next row
}

rows_for() {  # the defenses dimension, where the servers have the flags
  local scen=$1 cookies=$2; shift 2
  run_row "$scen" "$cookies" off "$@"
  if [ "$HAVE_DEFENSES" = 1 ]; then run_row "$scen" "$cookies" on "$@"; fi
}

lab_up
FL_SYN=(--dst $SRV --port 7000 --src-cidr $SPOOF --rate "$SYN_RATE")
for s in ${SCENARIOS//,/ }; do
  case "$s" in
    # The machine alone: the same 100k/s UDP flood as udp-1src, at a port
    # nobody listens on. What the good client loses here is the attacker's
    # and the kernel's share of the 2 cores, not any server's doing.
    control) run_row control 1 off tcp "" tcp echo -- --mode udp --dst $SRV --port 7999 \
           --size 64 --rate 100000 ;;
    syn)
      run_row syn 0 off tcp "" tcp echo -- --mode syn "${FL_SYN[@]}"
      rows_for syn 1 tcp "" tcp echo -- --mode syn "${FL_SYN[@]}" ;;
    ack) run_row ack 1 off tcp "" tcp echo -- --mode ack "${FL_SYN[@]}" ;;
    rst) run_row rst 1 off tcp "" tcp echo -- --mode rst "${FL_SYN[@]}" ;;
    udp) run_row udp 1 off udp "--proto udp" tcp echo -- --mode udp --dst $SRV --port 7000 \
           --src-cidr $SPOOF --size 64 --rate 100000 ;;
    udp-hb) run_row udp-hb 1 off udp "--proto udp" udp hb -- --mode udp --dst $SRV --port 7100 \
           --src-cidr $SPOOF --size 64 --rate 100000 ;;
    conn) rows_for conn 1 tcp "" tcp echo -- --mode connect --dst $SRV --port 7000 --bind $MANY \
           --conns 20000 --rate 5000 ;;
    conn-1src) rows_for conn-1src 1 tcp "" tcp echo -- --mode connect --dst $SRV --port 7000 \
           --bind $ATK --conns 10000 --rate 5000 ;;
    udp-1src) rows_for udp-1src 1 udp "--proto udp" tcp echo -- --mode udp --dst $SRV --port 7000 \
           --size 64 --rate 100000 ;;
    slowloris) rows_for slowloris 1 tcp "--codec length" tcp echo -- --mode slowloris --dst $SRV \
           --port 7000 --bind $ATK --conns 2000 --rate 1000 --interval-ms 1000 --frame-bytes 100000 ;;
    rudp) rows_for rudp 1 rudp "--proto rudp" rudp echo -- --mode rudp-initial --dst $SRV \
           --port 7000 --src-cidr $SPOOF --rate 20000 ;;
    # One spoofed address: the reflection case. Every INITIAL would earn
    # its RETRY, aimed at that address (a victim's); the handshake bucket
    # caps what the victim gets.
    rudp-1src) rows_for rudp-1src 1 rudp "--proto rudp" rudp echo -- --mode rudp-initial \
           --dst $SRV --port 7000 --src-cidr 10.77.200.9/32 --rate 20000 ;;
    *) echo "doslab: unknown scenario $s (known: $ALL_SCENARIOS)" >&2; exit 2 ;;
  esac
done

python3 perf/doslab_report.py "$TMP" --link-rate "$LINK_RATE" \
  --phases "$BEFORE,$DURING,$AFTER" ${OUT:+--out "$OUT"}
