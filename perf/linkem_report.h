// linkem's statistics at exit: two human lines per direction (stderr) and
// the same figures, with the parameters in force, as JSON (--json).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "perf/linkem_model.h"

namespace sluice::perf::linkem {

struct DirectionReport {
  const char* name = "";   // "up" / "down"
  const char* route = "";  // "near->far" / "far->near"
  LinkParams params;
  LinkStats stats;
  DelaySummary delay;        // one-way delay of delivered packets
  size_t in_flight = 0;      // still in the model at exit (discarded)
  int64_t write_errors = 0;  // writes into the other TUN that failed
  int last_write_errno = 0;
  int64_t tun_drops = -1;    // the input TUN's tx_dropped; -1 unknown
};

struct RunReport {
  std::string near_ns, far_ns, near_addr, far_addr;
  uint64_t seed = 0;
  int mtu = 0;
  double seconds = 0;
  int exit_status = 0;
  DirectionReport up, down;
};

void print_report(const RunReport& r);  // to stderr
std::string report_json(const RunReport& r);

}  // namespace sluice::perf::linkem
