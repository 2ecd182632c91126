#!/usr/bin/env bash
# Lab topic "iomodels" (docs/LAB.md, docs/IO_MODELS.md): the same load
# (perf/loadgen: 8 connections, 64-byte ping-pong, 1.5 s measured) on each
# back end of `echo_server --list-io`, and while it runs: every thread's
# state and wait channel from /proc/PID/task/*/{stat,wchan} (where in the
# kernel it sleeps), sampled 20 times in the warm-up, and the server's
# system calls counted over the measured window (root: `perf stat` on syscall
# tracepoints, exact and cheap; otherwise `strace -c -f`, exact but it
# slows the server). Blocking IO shows a thread per connection asleep in
# the socket read; select/poll/epoll one loop thread asleep in its
# readiness wait; io_uring one thread and far fewer syscalls per message.
# 127.0.0.1, no namespaces: runs without root too. ~20 s.
#   scripts/lab.sh iomodels
set -euo pipefail
[ "${1:-}" = --help ] && { sed -n '2,13p' "$0" | sed 's/^# //'; exit 0; }
source "$(dirname "$0")/common.sh"
lab_init iomodels
D=$LAB_TMP
CONNS=8 MEASURE=1.5

# The syscall counter. perf's syscall tracepoints need root (or a low
# perf_event_paranoid); strace needs only ptrace rights over our own child.
# `perf trace -s` would name every syscall, but at ~100k syscalls/s it
# loses events (its ring buffer overflows), so the counts would be low.
CALLS=(recvfrom sendto read write readv writev recvmsg sendmsg accept4 epoll_wait epoll_pwait epoll_ctl
       select pselect6 poll ppoll io_uring_enter futex nanosleep clock_nanosleep)
# LAB_SYSCALLS=strace picks strace as root too (to try that path).
COUNTER=none
if [ -n "${LAB_SYSCALLS:-}" ]; then COUNTER=$LAB_SYSCALLS
elif [ "$(id -u)" -eq 0 ] && command -v perf >/dev/null &&
   perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1; then COUNTER=perf
elif command -v strace >/dev/null && strace -o /dev/null true 2>/dev/null; then COUNTER=strace
fi
# count_syscalls PID SECONDS OUT: "COUNT NAME" lines, "COUNT total" first.
count_syscalls() {
  local pid=$1 s=$2 out=$3 ev=(-e raw_syscalls:sys_enter) c
  case $COUNTER in
    perf)
      for c in "${CALLS[@]}"; do ev+=(-e "syscalls:sys_enter_$c"); done
      perf stat -x, "${ev[@]}" -p "$pid" -- sleep "$s" 2>"$out.raw" >/dev/null || true
      awk -F, '$1 ~ /^[0-9]+$/ { n = $3; sub(/.*:sys_enter_?/, "", n); if (n == "") n = "total"; print $1, n }' \
        "$out.raw" | sort -k1,1nr >"$out" ;;
    strace)
      timeout -s INT "$s" strace -c -f -p "$pid" -o "$out.raw" 2>/dev/null || true
      # "% time seconds usecs/call calls [errors] syscall": calls is the
      # 4th column (the errors column is empty for most lines).
      awk '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ { print $4, $NF }' \
        "$out.raw" | sort -k1,1nr >"$out" ;;
    *) : >"$out" ;;
  esac
}
# sample_threads PID N OUT: up to N snapshots 25 ms apart, "tid state
# wchan" per thread each, until loadgen's measured phase begins. Two
# processes per snapshot whatever the thread count (blocking has ~20).
sample_threads() {
  local pid=$1 n=$2 out=$3 lg_err=$4 i
  : >"$out"
  for i in $(seq 1 "$n"); do
    # stat: "tid (comm) state ..." (echo_server's comm has no spaces);
    # wchan via grep -H: "/proc/PID/task/TID/wchan:channel".
    awk 'FNR == NR { st[$1] = $3; next }
      { split($0, a, ":"); split(a[1], p, "/"); w = a[2]; sub(/\..*/, "", w)   # do_x.isra.0: compiler suffix
        if (w == "" || w == "0") w = "-"; print p[5], st[p[5]], w }' \
      <(cat /proc/"$pid"/task/*/stat 2>/dev/null) <(grep -H '' /proc/"$pid"/task/*/wchan 2>/dev/null) >>"$out" || true
    grep -q 'phase measure' "$lg_err" 2>/dev/null && break
    sleep 0.025
  done
}

IOS=$("$ECHO_SERVER" --list-io | awk '$2 == "available" { print $1 }')
lab_q "阻塞IO，非阻塞IO，同步IO(多路复用)，异步IO: the same load on each, who waits where?"
lab_note "load: loadgen --conns $CONNS --size 64 --pipeline 1, ${MEASURE} s measured; syscalls counted with $COUNTER"
printf '  %-11s %7s  %-50s %7s  %s\n' "io" "threads" "where they sleep (wchan x samples; main left out)" "sys/msg" "top syscalls per message" >"$D/table"
for io in $IOS; do
  lab_server - "$D/$io.srv" "$ECHO_SERVER" --host 127.0.0.1 --port 0 --io "$io" --threads 1 --idle-timeout-ms 0
  lab_bg - "$D/$io.lg" "$LOADGEN" --port "$SERVER_PORT" --conns $CONNS --size 64 --pipeline 1 --warmup-s 1.3 \
    --duration-s $MEASURE
  LG=$BG_PID
  # Threads first, during the warm-up, then syscalls over the measured
  # window: apart, so that strace's stops (ptrace_stop) are not what the
  # samples see, and the count covers exactly the messages loadgen counts.
  for _ in $(seq 1 100); do grep -q 'phase warmup' "$D/$io.lg.err" 2>/dev/null && break; sleep 0.05; done
  sample_threads "$SERVER_PID" 40 "$D/$io.threads" "$D/$io.lg.err"
  for _ in $(seq 1 100); do grep -q 'phase measure' "$D/$io.lg.err" 2>/dev/null && break; sleep 0.02; done
  count_syscalls "$SERVER_PID" $MEASURE "$D/$io.sys"
  lab_wait_pid $LG 10 || true
  # And once idle, after the load: under full load a single loop is
  # nearly always running, so a few samples may never catch it in its
  # wait; idle, it sits there (the same call it waits in under load).
  sleep 0.2
  sample_threads "$SERVER_PID" 4 "$D/$io.idle" /dev/null
  cat "$D/$io.idle" >>"$D/$io.threads"
  lab_stop "$SERVER_PID"
  msgs=$(sed -nE 's/.*"msgs":([0-9]+).*/\1/p' "$D/$io.lg")
  threads=$(awk '{ print $1 }' "$D/$io.threads" | sort -u | wc -l)
  # Where they sleep: the wait channels of the sleeping samples, most
  # frequent first; "-" is a running thread (R).
  # The main thread (tid = pid) only waits for signals: left out.
  waits=$(awk -v p="$SERVER_PID" '$1 != p { n[$3]++ } END { for (w in n) print n[w], w }' "$D/$io.threads" | sort -k1,1nr | head -3 |
    awk '{ printf "%s%s x%d", (NR > 1 ? ", " : ""), ($2 == "-" ? "running" : $2), $1 }')
  total=$(awk '$2 == "total" { print $1 }' "$D/$io.sys")
  permsg=$(awk -v t="${total:-0}" -v m="${msgs:-0}" 'BEGIN { if (m > 0 && t > 0) printf "%.2f", t / m; else print "-" }')
  top=$(awk -v m="${msgs:-0}" '$2 != "total" && m > 0 { printf "%s%s %.2f", (n++ ? ", " : ""), $2, $1 / m } n == 3 { exit }' "$D/$io.sys")
  printf '  %-11s %7s  %-50s %7s  %s\n' "$io" "$threads" "$waits" "$permsg" "$top" >>"$D/table"
  echo "$io threads=$threads permsg=$permsg msgs=${msgs:-0} waits=$waits" >>"$D/summary"
done
lab_show "$D/table" 20
lab_note "threads: distinct threads in the samples taken during the warm-up and 4 once idle (with"
lab_note "the main thread, which only waits for signals). blocking: a reader and a writer thread per connection plus an"
lab_note "acceptor and the loop: readers asleep in recv() (wait_woken: the socket's wait queue),"
lab_note "writers and the loop on condition variables (futex) -- the scheduler is the multiplexer,"
lab_note "and the hand-offs cost futex calls. nonblocking: one loop trying every socket (recvfrom"
lab_note "returning EAGAIN counts too); an idle pass backs off on a timed condvar wait (futex),"
lab_note "never a readiness wait. select and poll: one loop asleep in poll_schedule_timeout (the"
lab_note "kernel's sleep for both), epoll in do_epoll_wait, until a socket is ready; then a recv"
lab_note "and a send per message. uring: the kernel does the recv and send itself; the loop"
lab_note "sleeps in io_cqring_wait, and one io_uring_enter submits and reaps a whole batch."

has() {  # IO ERE: the back end's summary line matches ERE
  grep -Eq -- "^$1 .*$2" "$D/summary" 2>/dev/null
}
num() { sed -nE "s/^$1 .*$2=([0-9.]+).*/\\1/p" "$D/summary"; }
if grep -q '^blocking ' "$D/summary" 2>/dev/null; then
  lab_expect_true "blocking: at least a thread per connection ($(num blocking threads) threads, $CONNS conns)" \
    test "$(num blocking threads)" -ge $CONNS
fi
for io in select poll epoll; do
  grep -q "^$io " "$D/summary" 2>/dev/null || continue
  # select and poll both sleep in poll_schedule_timeout (do_select and
  # do_sys_poll call it); epoll in do_epoll_wait.
  case $io in select|poll) wc=poll_schedule_timeout ;; epoll) wc=do_epoll_wait ;; esac
  lab_expect_true "$io: a loop thread (<= 3 threads in all) waiting in $wc" \
    bash -c "[ $(num $io threads) -le 3 ] && grep -Eq '^$io .*waits=.*$wc' '$D/summary'"
done
# strace attaches to each thread in turn and stops it at every syscall, so
# its counts cover an uneven part of the window: per message, only perf's.
if [ "$COUNTER" = strace ]; then
  lab_note "syscalls per message under strace: attaching takes part of the window, so they are low"
  lab_note "and not comparable; as root, perf counts them exactly (and the uring check runs)."
fi
if [ "$COUNTER" = perf ] && grep -q '^uring ' "$D/summary" && grep -q '^epoll ' "$D/summary"; then
  lab_expect_true "uring: syscalls per message well below epoll's ($(num uring permsg) vs $(num epoll permsg))" \
    awk -v u="$(num uring permsg)" -v e="$(num epoll permsg)" 'BEGIN { exit !(u > 0 && e > 0 && u < e / 2) }'
fi
lab_expect_true "every back end answered the load" bash -c "! grep -q 'msgs=0 ' '$D/summary'"
lab_done
