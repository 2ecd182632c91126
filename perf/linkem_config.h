// linkem's option values: parsing and checking the strings the command
// line gives (rates, delays, probabilities, the /30 subnet), with no IO, so
// that bad input gets a clear message before anything is created, and so
// the parsing is unit-tested (perf/linkem_model_test.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "perf/linkem_model.h"

namespace sluice::perf::linkem {

// "100mbit", "1.5Gbit", "64kbit", "2000000" (bit/s), "12.5mbps" (bytes/s,
// as tc writes it). Suffixes are case-insensitive: bit, kbit, mbit, gbit,
// bps, kbps, mbps, gbps; none means bit/s. 0 means unlimited. On error
// returns -1 and sets *err.
int64_t parse_rate(std::string_view s, std::string* err);

// A per-direction link option: --NAME sets both directions, --up-NAME and
// --down-NAME one each (and win over --NAME).
struct ParamSpec {
  const char* name;  // "delay-ms"
  const char* help;
  // Parses `value` into `p`; returns "" or what is wrong.
  std::string (*apply)(LinkParams& p, const std::string& value);
};
const std::vector<ParamSpec>& param_specs();

// The /30 the two TUN ends live in: near = base + 1, far = base + 2.
struct Subnet {
  uint32_t base = 0;  // host order, a multiple of 4
  std::string near_addr() const;
  std::string far_addr() const;
};
// "10.201.0.0" (or any address inside the /30, e.g. "10.201.0.1"). On
// error returns false and sets *err.
bool parse_subnet(std::string_view s, Subnet* out, std::string* err);

}  // namespace sluice::perf::linkem
