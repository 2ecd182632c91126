// What the kernel says a process has used, from /proc: CPU ticks, run
// time and context switches summed over its threads (perf tools only; a
// benchmark samples it at the start and end of a measured window).
#pragma once

#include <cstdint>
#include <string>

namespace sluice::perf {

struct ProcSample {
  bool ok = false;
  int64_t ticks = 0;     // utime + stime (clock ticks), whole process
  int64_t run_ns = 0;    // sum of /proc/PID/task/*/schedstat run time
  int64_t vol = 0;       // voluntary context switches, all threads
  int64_t invol = 0;     // nonvoluntary
  int64_t threads = 0;
};

// The process `pid` now (ok false if it cannot be read).
ProcSample sample_proc(int64_t pid);
// Busy ticks of all CPUs (user..steal less idle and iowait), /proc/stat.
int64_t busy_ticks();

}  // namespace sluice::perf
