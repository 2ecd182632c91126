# Shared helpers for the TCP/UDP lab's topics (scripts/lab/<topic>.sh),
# sourced by each topic, never run. docs/LAB.md describes the lab.
#
# Environment a topic gets from scripts/lab.sh (or sets itself when run
# directly):
#   LAB_BIN    where the binaries are (default: bazel-bin of this checkout;
#              the test points it at its runfiles)
#   LAB_LOCAL  1: no root, or --local: run on 127.0.0.1 with no namespaces
#              and no tcpdump (topics that need a link skip)
#   LAB_OUT    directory the topic's raw files are kept in (default: a temp
#              directory deleted on exit)
#
# Every topic: sets up (lab_init), prints annotated evidence (lab_q,
# lab_note, lab_show), checks that the evidence is there (lab_expect), and
# ends with lab_done, whose exit code says whether every check held.
# Everything it started — processes and namespaces — goes on exit (trap).

LAB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../lib.sh
source "$LAB_REPO/scripts/lib.sh"
LAB_BIN=${LAB_BIN:-$LAB_REPO/bazel-bin}
if [ -z "${LAB_LOCAL:-}" ]; then
  LAB_LOCAL=0; [ "$(id -u)" -ne 0 ] && LAB_LOCAL=1
fi
ECHO_SERVER=$LAB_BIN/servers/echo_server
HB_SERVER=$LAB_BIN/servers/heartbeat_server
HB_CLIENT=$LAB_BIN/servers/heartbeat_client
LOADGEN=$LAB_BIN/perf/loadgen
LINKEM=$LAB_BIN/perf/linkem
LAB_PEER=$LAB_REPO/scripts/lab/peer.py

LAB_PIDS=() LAB_NS=() LAB_FAIL=0 LAB_CHECKS=0
LAB_T0=$(date +%s.%N)

# lab_init TOPIC: names, the scratch directory, the cleanup trap.
lab_init() {
  LAB_TOPIC=$1
  LAB_P="lab$$"   # namespace prefix: short (interface names are <= 15 chars)
  if [ -n "${LAB_OUT:-}" ]; then
    LAB_TMP=$LAB_OUT/$LAB_TOPIC; rm -rf "$LAB_TMP"; mkdir -p "$LAB_TMP"; LAB_KEEP=1
  else
    LAB_TMP=$(mktemp -d "/tmp/lab-$LAB_TOPIC.XXXXXX"); LAB_KEEP=0
  fi
  trap lab_cleanup EXIT
  trap 'exit 130' INT TERM
  printf '=== lab: %s ===\n' "$LAB_TOPIC"
}

lab_cleanup() {
  local rc=$? p
  for p in "${LAB_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  netns_teardown "${LAB_NS[@]}"
  [ "$LAB_KEEP" = 1 ] || rm -rf "$LAB_TMP"
  exit $rc
}

# lab_need_root: topics that need a link of their own skip in local mode
# (exit 0 with the reason: the test and `lab.sh all` carry on).
lab_need_root() {
  if [ "$LAB_LOCAL" = 1 ]; then
    echo "lab $LAB_TOPIC: SKIPPED: needs root (network namespaces, tcpdump); try: sudo scripts/lab.sh $LAB_TOPIC"
    exit 0
  fi
}

# lab_pair: two namespaces joined by a veth, both ends named eth0:
#   $NS_C (client) 10.79.0.1  <--veth-->  $NS_S (server) 10.79.0.2
# The veth is made inside the client's namespace, so no name ever appears
# in the host's. Sysctls set later with lab_sysctl stay inside them.
lab_pair() {
  NS_C=$LAB_P-c NS_S=$LAB_P-s CLI_ADDR=10.79.0.1 SRV_ADDR=10.79.0.2
  local n
  for n in $NS_C $NS_S; do
    ip netns add "$n"; LAB_NS+=("$n")
    ip -n "$n" link set lo up
  done
  ip -n $NS_C link add eth0 type veth peer name eth0 netns $NS_S
  ip -n $NS_C addr add $CLI_ADDR/24 dev eth0
  ip -n $NS_S addr add $SRV_ADDR/24 dev eth0
  ip -n $NS_C link set eth0 up
  ip -n $NS_S link set eth0 up
  # Segments of at most 1448 bytes, as on an Ethernet: without this, veth
  # offloads (GSO/GRO) hand tcpdump 64 KB "segments".
  ip netns exec $NS_C ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1 || true
  ip netns exec $NS_S ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1 || true
}

lab_sysctl() {  # NS KEY VALUE
  ip netns exec "$1" sysctl -qw "$2=$3"
}

# in_ns NS CMD...: CMD in namespace NS; NS "-" runs it right here (local mode).
in_ns() {
  local ns=$1; shift
  if [ "$ns" = - ]; then "$@"; else ip netns exec "$ns" "$@"; fi
}
# ns_cmd NS CMD...: sets NS_CMD to the argv that runs CMD in NS. For
# background jobs: "${NS_CMD[@]}" & forks the command itself, so $! is its
# pid (a function run with & would be a subshell, and a signal to it would
# not reach the command).
ns_cmd() {
  local ns=$1; shift
  if [ "$ns" = - ]; then NS_CMD=("$@"); else NS_CMD=(ip netns exec "$ns" "$@"); fi
}

# lab_bg NS OUT CMD...: CMD in the background (stdout OUT, stderr OUT.err);
# sets BG_PID and remembers it for cleanup.
lab_bg() {
  local ns=$1 out=$2; shift 2
  : >"$out"; : >"$out.err"
  ns_cmd "$ns" "$@"
  "${NS_CMD[@]}" >"$out" 2>"$out.err" &
  BG_PID=$!
  disown "$BG_PID"   # killed by lab_stop or cleanup: no job notices
  LAB_PIDS+=("$BG_PID")
}

# lab_server NS OUT CMD...: a sluice server (prints "listening on ..."):
# started, waited for; sets SERVER_PID and SERVER_PORT (scripts/lib.sh).
lab_server() {
  local ns=$1 out=$2; shift 2
  if [ "$ns" = - ]; then start_server "$out" "$@"; else start_server "$out" ip netns exec "$ns" "$@"; fi
  disown "$SERVER_PID"
  LAB_PIDS+=("$SERVER_PID")
}

# lab_tcpdump NS IFACE OUT FILTER...: a text capture, line-buffered, with
# time since the first packet (-ttttt) and absolute sequence numbers (-S)
# unless LAB_TCPDUMP_REL=1. Waits until tcpdump listens. Sets TCPDUMP_PID.
lab_tcpdump() {
  local ns=$1 ifc=$2 out=$3; shift 3
  local seq=-S; [ "${LAB_TCPDUMP_REL:-0}" = 1 ] && seq=""
  : >"$out"; : >"$out.err"
  # shellcheck disable=SC2086
  ns_cmd "$ns" tcpdump -l -nn $seq -ttttt -i "$ifc" "$@"
  "${NS_CMD[@]}" >"$out" 2>"$out.err" &
  TCPDUMP_PID=$!
  disown "$TCPDUMP_PID"
  LAB_PIDS+=("$TCPDUMP_PID")
  local _
  for _ in $(seq 1 100); do
    grep -q 'listening on' "$out.err" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "lab: tcpdump did not start:" >&2; cat "$out.err" >&2; return 1
}

lab_tcpdump_stop() {
  sleep 0.2   # the last packets still on their way to the capture buffer
  lab_stop "$TCPDUMP_PID"
}

# lab_stop PID: SIGTERM, then SIGKILL after 2 s (PIDs are disowned: poll).
lab_stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  lab_wait_pid "$1" 2 || kill -KILL "$1" 2>/dev/null || true
}
# lab_wait_pid PID SECONDS: until PID is gone; 1 if it is still there.
lab_wait_pid() {
  local _
  for _ in $(seq 1 $(($2 * 20))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
  ! kill -0 "$1" 2>/dev/null
}

# lab_ss NS ARGS...: ss in NS, header kept, "ss ARGS" printed first.
lab_ss() {
  local ns=$1; shift
  echo "\$ ss $*"
  in_ns "$ns" ss "$@"
}

# Seconds since the topic started, 2 decimals.
lab_now() { awk -v a="$LAB_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# Output: a question from the notes, an annotation, a trace excerpt.
lab_q() { printf '\n--- Q: %s\n' "$*"; }
lab_note() { printf '    # %s\n' "$*"; }
lab_cmd() { printf '$ %s\n' "$*"; }
# lab_show FILE [MAX]: the file indented, at most MAX lines (default 40).
lab_show() {
  local max=${2:-40} n
  n=$(wc -l <"$1")
  head -n "$max" "$1" | sed 's/^/  /'
  [ "$n" -le "$max" ] || printf '  ... (%d more lines)\n' $((n - max))
}

# lab_expect DESC FILE ERE: one check of the evidence. Printed as
# "check: ok|FAILED DESC"; a failure makes the topic exit 1 at lab_done.
lab_expect() {
  LAB_CHECKS=$((LAB_CHECKS + 1))
  if grep -Eq -- "$3" "$2" 2>/dev/null; then
    printf 'check: ok      %s\n' "$1"
  else
    printf 'check: FAILED  %s (no line matching /%s/ in %s)\n' "$1" "$3" "$(basename "$2")"
    LAB_FAIL=$((LAB_FAIL + 1))
  fi
}
# lab_expect_true DESC CMD...: a check that is a command.
lab_expect_true() {
  local d=$1; shift
  LAB_CHECKS=$((LAB_CHECKS + 1))
  if "$@"; then printf 'check: ok      %s\n' "$d"
  else printf 'check: FAILED  %s\n' "$d"; LAB_FAIL=$((LAB_FAIL + 1)); fi
}

lab_done() {
  printf '\nlab %s: %d/%d checks held, %ss\n' "$LAB_TOPIC" $((LAB_CHECKS - LAB_FAIL)) "$LAB_CHECKS" "$(lab_now)"
  [ "$LAB_FAIL" -eq 0 ]
}
