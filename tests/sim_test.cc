// The simulation suites (tests/sim_scenarios.h), each over a fixed budget
// of seeds. Seeds: SLUICE_SIM_SEED=N runs that one seed (a replay);
// SLUICE_SIM_SEEDS=count and SLUICE_SIM_FIRST_SEED=S pick a range
// (default: kDefaultSeeds from 1). A failing seed prints its violations
// and the command that replays it.
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "tests/sim_scenarios.h"

namespace sluice::simtest {
namespace {

constexpr uint64_t kDefaultSeeds = 2000;
// Stop a suite after this many failing seeds: one is enough to replay.
constexpr int kMaxReported = 3;

uint64_t env_or(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

std::vector<uint64_t> seeds() {
  if (const char* one = std::getenv("SLUICE_SIM_SEED"); one && *one) {
    return {std::strtoull(one, nullptr, 10)};
  }
  const uint64_t first = env_or("SLUICE_SIM_FIRST_SEED", 1);
  const uint64_t count = env_or("SLUICE_SIM_SEEDS", kDefaultSeeds);
  std::vector<uint64_t> out;
  for (uint64_t s = first; s < first + count; ++s) out.push_back(s);
  return out;
}

class Sim : public ::testing::TestWithParam<Suite> {};

TEST_P(Sim, Seeds) {
  const Suite& suite = GetParam();
  // Peers trigger info lines (idle closes, heartbeat joins/drops) by the
  // thousand; only problems are worth printing here.
  spdlog::set_level(spdlog::level::warn);
  int failed = 0;
  uint64_t runs = 0;
  for (uint64_t seed : seeds()) {
    const Outcome o = suite.run(seed);
    ++runs;
    if (o.violations.empty()) continue;
    std::string all;
    for (const std::string& v : o.violations) all += "\n    " + v;
    ADD_FAILURE() << "suite " << suite.name << " seed=" << seed << ":" << all
                  << "\n  replay: " << replay_command(suite.name, seed);
    if (++failed == kMaxReported) break;
  }
  std::printf("suite %s: %llu runs, %d failed\n", suite.name,
              static_cast<unsigned long long>(runs), failed);
}

INSTANTIATE_TEST_SUITE_P(All, Sim, ::testing::ValuesIn(suites()),
                         [](const ::testing::TestParamInfo<Suite>& p) {
                           return std::string(p.param.name);
                         });

}  // namespace
}  // namespace sluice::simtest
