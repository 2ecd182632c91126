// Long simulation campaigns: runs suites (tests/sim_scenarios.h) over
// consecutive seeds until a seed count or a time budget is used up, and
// prints runs/s, runs, and every violation with its seed and the command
// that replays it. Exit status 1 when any run failed.
//
//   sim_campaign --suite echo --seeds 100000 --minutes 10 --first-seed 1
//   sim_campaign --suite all --minutes 60
//   sim_campaign --suite idle --first-seed 1234 --seeds 1 --verbose
//   sim_campaign --suite all --interleave --stop-at-first --minutes 1
//
// --interleave runs each seed on every chosen suite in turn (one time
// budget for all) instead of suite after suite; --stop-at-first ends at
// the first violation and prints how long it took (scripts/planted.sh).
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
  bool interleave = false;
  bool stop_at_first = false;
  app.add_option("--suite", suite, "suite name, or all");
  app.add_option("--seeds", seeds, "seeds per suite (0: until the time budget is spent)");
  app.add_option("--minutes", minutes, "time budget per suite (0: no limit)");
  app.add_option("--first-seed", first, "first seed");
  app.add_flag("--interleave", interleave, "each seed on every suite in turn, one time budget");
  app.add_flag("--stop-at-first", stop_at_first, "stop at the first violation");
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

  using Clock = std::chrono::steady_clock;
  const auto budget = std::chrono::duration<double, std::ratio<60>>(minutes);
  const auto began = Clock::now();
  // Runs one seed of one suite; true if it found a violation.
  auto run_one = [&](const Suite& s, uint64_t seed, double* virtual_s) {
    const Outcome o = s.run(seed);
    *virtual_s += std::chrono::duration<double>(o.virtual_time).count();
    if (verbose) {
      std::printf("%s seed=%llu: %zu violations, %.3f s virtual, %llu events, %llu jumps\n",
                  s.name, static_cast<unsigned long long>(seed), o.violations.size(),
                  std::chrono::duration<double>(o.virtual_time).count(),
                  static_cast<unsigned long long>(o.stats.events),
                  static_cast<unsigned long long>(o.stats.jumps));
    }
    if (o.violations.empty()) return false;
    std::printf("VIOLATION suite=%s seed=%llu after %.1f s\n", s.name,
                static_cast<unsigned long long>(seed),
                std::chrono::duration<double>(Clock::now() - began).count());
    for (const std::string& v : o.violations) std::printf("    %s\n", v.c_str());
    std::printf("  replay: %s\n", replay_command(s.name, seed).c_str());
    std::fflush(stdout);
    return true;
  };
  auto report = [&](const char* name, uint64_t runs, uint64_t failed, Clock::time_point start,
                    double virtual_s) {
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("suite %-14s runs %llu  failed %llu  %.0f runs/s  %.1f s wall  %.0f s virtual\n",
                name, static_cast<unsigned long long>(runs),
                static_cast<unsigned long long>(failed), secs > 0 ? runs / secs : 0.0, secs,
                virtual_s);
    std::fflush(stdout);
  };

  uint64_t total_failed = 0;
  if (interleave) {
    uint64_t runs = 0;
    double virtual_s = 0;
    for (uint64_t seed = first; seeds == 0 || seed < first + seeds; ++seed) {
      if (minutes > 0 && Clock::now() - began >= budget) break;
      for (const Suite* s : chosen) {
        ++runs;
        if (run_one(*s, seed, &virtual_s)) ++total_failed;
        if (stop_at_first && total_failed > 0) break;
      }
      if (stop_at_first && total_failed > 0) break;
    }
    report(suite.c_str(), runs, total_failed, began, virtual_s);
    return total_failed == 0 ? 0 : 1;
  }
  for (const Suite* s : chosen) {
    const auto start = Clock::now();
    uint64_t runs = 0, failed = 0;
    double virtual_s = 0;
    for (uint64_t seed = first; seeds == 0 || seed < first + seeds; ++seed) {
      if (minutes > 0 && Clock::now() - start >= budget) break;
      ++runs;
      if (run_one(*s, seed, &virtual_s)) ++failed;
      if (stop_at_first && failed > 0) break;
    }
    report(s->name, runs, failed, start, virtual_s);
    total_failed += failed;
    if (stop_at_first && failed > 0) break;
  }
  return total_failed == 0 ? 0 : 1;
}
