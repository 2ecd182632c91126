// One scale_client process (perf/scale_conns.h drives its connections) and
// the pipe protocol between it and the parent scale_client, which steps
// every process through ramp, hold and report together.
//
// Thread rules: each process is single-threaded; a pipe has one writer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "perf/histogram.h"
#include "perf/scale_conns.h"

namespace sluice::perf::scale {

// Parent -> child.
enum Op : uint32_t { kRamp = 1, kHold = 2, kEnd = 3, kQuit = 4 };
struct Ctl {
  uint32_t op = 0;
  uint32_t pad = 0;
  uint64_t arg = 0;
};
// Child -> parent: a progress record (type 1), or a report (type 2)
// followed by three histograms (connect, RTT, ping lateness), each as a
// count n and n (value, count) pairs.
struct Record {
  uint32_t type = 0;
  uint32_t ramp_done = 0;
  ConnsCounters c{};
};

// Whole reads and writes on a pipe (EINTR retried); false on EOF or error.
bool write_full(int fd, const void* p, size_t n);
bool read_full(int fd, void* p, size_t n);
// Reads one histogram of a report (after its Record) into h.
bool get_histogram(int fd, Histogram& h);

// A client process's main: serves Ctl records from `ctl`, reports on `up`
// (a progress Record every 250 ms, a report on kEnd). Returns its exit code.
int child_main(const ConnsOptions& o, int ctl, int up);

}  // namespace sluice::perf::scale
