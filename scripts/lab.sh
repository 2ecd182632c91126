#!/usr/bin/env bash
# See TCP for yourself (issue 20): each topic runs sluice servers and
# clients, captures what the kernel did (tcpdump on a veth or TUN link,
# ss for socket states, windows, cwnd), and prints a short annotated trace
# that maps what happened to a question from the notes. docs/LAB.md walks
# through every topic with a real run.
#
#   scripts/lab.sh --list          # the topics
#   scripts/lab.sh handshake       # one topic
#   scripts/lab.sh all             # every topic, one after the other
#   scripts/lab.sh --local sticky  # on 127.0.0.1, no namespaces (no root)
#
# Topics that need a link of their own (most) need root: they create
# network namespaces (lab<PID>-*) and delete them on exit. Without root
# they skip, saying so; `--local` topics (sticky, teardown, iomodels) run
# anyway. Each topic is bounded (under 40 s) and exits non-zero if a check of its
# evidence failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# In the order of issue 20's list (congestion is its 5th, iomodels its 7th).
TOPICS=(handshake teardown sticky window congestion cablepull iomodels limits)
declare -A SUMMARY=(
  [handshake]="SYN, SYN-ACK, ACK with their numbers; the accept queue against the backlog"
  [teardown]="FIN/ACK x2, who sits in TIME_WAIT; CLOSE_WAIT piling up and idle reaping; SO_REUSEADDR"
  [sticky]="two writes read as one, one write read as many; codecs split them right"
  [window]="a reader that stops: window to zero, zero-window probes, sluice's water marks"
  [congestion]="loss over linkem: dup ACKs and fast retransmit; cwnd over time, kernel cubic/reno/bbr and rudp's"
  [cablepull]="cut the link: nothing, TCP keepalive, heartbeat, TCP_USER_TIMEOUT side by side"
  [iomodels]="one load on each IO back end: threads, where each one waits, syscalls per message"
  [limits]="pointers into the scale and DoS labs"
)

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; cat <<EOF
Options:
  --list        the topics with one line each
  --local       run on 127.0.0.1 without namespaces (what needs no root)
  --out DIR     keep each topic's raw files (captures, ss samples) in DIR/TOPIC
  --no-build    use the binaries in bazel-bin as they are
EOF
}
BUILD=1 ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --list) for t in "${TOPICS[@]}"; do printf '%-11s %s\n' "$t" "${SUMMARY[$t]}"; done; exit 0 ;;
    --local) export LAB_LOCAL=1 ;;
    --out) mkdir -p "$2"; LAB_OUT=$(cd "$2" && pwd); export LAB_OUT; shift ;;
    --no-build) BUILD=0 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "lab: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
[ ${#ARGS[@]} -eq 1 ] || { usage >&2; exit 2; }
want=${ARGS[0]}
if [ "$want" = all ]; then run=("${TOPICS[@]}")
elif [ -n "${SUMMARY[$want]+x}" ]; then run=("$want")
else echo "lab: no topic '$want' (see --list)" >&2; exit 2; fi

if [ "$(id -u)" -eq 0 ]; then
  scripts/deps.sh tcpdump ethtool strace iproute2 python3
fi
if [ "$BUILD" = 1 ]; then
  bazel build //servers:echo_server //servers:heartbeat_server //servers:heartbeat_client \
    //perf:loadgen //perf:linkem //perf:rudp_bulk >/dev/null 2>&1 || { echo "lab: build failed" >&2; exit 1; }
fi

failed=()
for t in "${run[@]}"; do
  scripts/lab/"$t".sh || failed+=("$t")
  echo
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "lab: checks failed in: ${failed[*]}" >&2; exit 1
fi
