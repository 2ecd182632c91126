// What the kernel says a process has used, from /proc: CPU ticks, run
// time and context switches summed over its threads (perf tools only; a
// benchmark samples it at the start and end of a measured window).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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
// Proportional set size (/proc/PID/smaps_rollup), KiB; -1 if unreadable.
int64_t pss_kib(int64_t pid);
// The direct children of `pid` (/proc/PID/task/*/children).
std::vector<int64_t> children_of(int64_t pid);
// A field of /proc/meminfo ("Slab", "MemAvailable"), KiB; -1 if absent.
int64_t meminfo_kib(const std::string& field);
// Busy ticks of all CPUs (user..steal less idle and iowait), /proc/stat.
int64_t busy_ticks();

}  // namespace sluice::perf
