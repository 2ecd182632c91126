// Long simulation campaigns: runs suites (tests/sim_scenarios.h) over
// consecutive seeds until a seed count or a time budget is used up, and
// prints runs/s, runs, and every violation with its seed and the command
// that replays it. Exit status 1 when any run failed.
//
//   sim_campaign --suite echo --seeds 100000 --minutes 10 --first-seed 1
//   sim_campaign --suite all --minutes 60
//   sim_campaign --suite idle --first-seed 1234 --seeds 1 --verbose
//
// Thread rules: single-threaded driver (each run starts its own loop
// thread and joins it).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "tests/sim_scenarios.h"

using namespace sluice::simtest;

int main(int argc, char** argv) {
  CLI::App app{"sluice simulation campaign"};
  std::string suite = "all";
  uint64_t seeds = 0;  // 0: until --minutes runs out
  double minutes = 0;  // 0: until --seeds are done
  uint64_t first = 1;
  bool verbose = false;
  app.add_option("--suite", suite, "suite name, or all");
  app.add_option("--seeds", seeds, "seeds per suite (0: until the time budget is spent)");
  app.add_option("--minutes", minutes, "time budget per suite (0: no limit)");
  app.add_option("--first-seed", first, "first seed");
  app.add_flag("--verbose", verbose, "log at info (what the server logs) and print each run");
  CLI11_PARSE(app, argc, argv);
  if (seeds == 0 && minutes <= 0) seeds = 1000;
  spdlog::set_level(verbose ? spdlog::level::info : spdlog::level::err);

  std::vector<const Suite*> chosen;
  if (suite == "all") {
    for (const Suite& s : suites()) chosen.push_back(&s);
  } else if (const Suite* s = find_suite(suite)) {
    chosen.push_back(s);
  } else {
    std::fprintf(stderr, "unknown suite %s; suites:\n", suite.c_str());
    for (const Suite& s : suites()) std::fprintf(stderr, "  %-14s %s\n", s.name, s.what);
    return 2;
  }

  uint64_t total_failed = 0;
  for (const Suite* s : chosen) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto budget = std::chrono::duration<double, std::ratio<60>>(minutes);
    uint64_t runs = 0, failed = 0;
    double virtual_s = 0;
    for (uint64_t seed = first; seeds == 0 || seed < first + seeds; ++seed) {
      if (minutes > 0 && Clock::now() - start >= budget) break;
      const Outcome o = s->run(seed);
      ++runs;
      virtual_s += std::chrono::duration<double>(o.virtual_time).count();
      if (verbose) {
        std::printf("%s seed=%llu: %zu violations, %.3f s virtual, %llu events, %llu jumps\n",
                    s->name, static_cast<unsigned long long>(seed), o.violations.size(),
                    std::chrono::duration<double>(o.virtual_time).count(),
                    static_cast<unsigned long long>(o.stats.events),
                    static_cast<unsigned long long>(o.stats.jumps));
      }
      if (o.violations.empty()) continue;
      ++failed;
      std::printf("VIOLATION suite=%s seed=%llu\n", s->name, static_cast<unsigned long long>(seed));
      for (const std::string& v : o.violations) std::printf("    %s\n", v.c_str());
      std::printf("  replay: %s\n", replay_command(s->name, seed).c_str());
      std::fflush(stdout);
    }
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("suite %-14s runs %llu  failed %llu  %.0f runs/s  %.1f s wall  %.0f s virtual\n",
                s->name, static_cast<unsigned long long>(runs),
                static_cast<unsigned long long>(failed), secs > 0 ? runs / secs : 0.0, secs,
                virtual_s);
    std::fflush(stdout);
    total_failed += failed;
  }
  return total_failed == 0 ? 0 : 1;
}
