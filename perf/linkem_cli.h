// linkem's command line (CLI11): the options, their defaults, and the
// per-direction link options (--X for both, --up-X, --down-X; see
// perf/linkem_config.h). Every value is checked here, before anything is
// created, so bad input ends the run with a message and status 2.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "perf/linkem_config.h"
#include "perf/linkem_model.h"

namespace sluice::perf::linkem {

struct Options {
  LinkParams up, down;
  uint64_t seed = 1;
  int mtu = 1500;
  Subnet subnet;
  double duration_s = 600;
  int grace_ms = 2000;
  std::string near_cmd;
  std::vector<std::string> far_cmd;
  std::string json_path;
  bool quiet = false;
  bool cleanup_stale = false;
};

// Fills `o` from the command line. Returns the exit status when parsing
// ends the run (--help: 0, bad input: 2, with the message printed), else
// nullopt.
std::optional<int> parse_options(int argc, char** argv, Options& o);

// One line of the parameters in force ("delay 20 ms, loss 0.05, ...").
std::string describe(const LinkParams& p);

}  // namespace sluice::perf::linkem
