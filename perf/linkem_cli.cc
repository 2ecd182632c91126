#include "perf/linkem_cli.h"

#include <array>
#include <cstdio>
#include <utility>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace sluice::perf::linkem {

std::string describe(const LinkParams& p) {
  std::string s = fmt::format("delay {:g} ms", p.delay_ns / 1e6);
  if (p.jitter_ns) s += fmt::format(" +-{:g} ms{}", p.jitter_ns / 1e6, p.order_per_flow ? " (in order per flow)" : "");
  if (p.loss > 0) s += fmt::format(", loss {:g}", p.loss);
  if (p.ge_p > 0)
    s += fmt::format(", GE p={:g} r={:g} bad={:g} good={:g}", p.ge_p, p.ge_r, p.ge_loss_bad, p.ge_loss_good);
  if (p.dup > 0) s += fmt::format(", dup {:g}", p.dup);
  if (p.reorder > 0) s += fmt::format(", reorder {:g} (+{:g} ms)", p.reorder, p.reorder_ns / 1e6);
  if (p.rate_bps > 0) {
    s += fmt::format(", rate {:g} Mbit/s, queue", p.rate_bps / 1e6);
    if (p.queue_packets) s += fmt::format(" {} pkts", p.queue_packets);
    if (p.queue_bytes) s += fmt::format(" {} B", p.queue_bytes);
  }
  return s;
}

std::optional<int> parse_options(int argc, char** argv, Options& o) {
  CLI::App app{
      "linkem: a userspace link emulator between two network namespaces (root).\n"
      "CMD runs in the far namespace; --near runs a shell command in the near one.\n"
      "Link options: --X sets both directions, --up-X (near->far) and --down-X\n"
      "(far->near) one each. See docs/LINKEM.md.",
      "linkem"};
  const auto& specs = param_specs();
  std::vector<std::array<std::string, 3>> values(specs.size());
  std::vector<std::array<CLI::Option*, 3>> opts(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string n = specs[i].name;
    opts[i][0] = app.add_option("--" + n, values[i][0], specs[i].help)->group("Link (both directions)");
    opts[i][1] = app.add_option("--up-" + n, values[i][1], "near->far only")->group("Link, one direction");
    opts[i][2] = app.add_option("--down-" + n, values[i][2], "far->near only")->group("Link, one direction");
  }
  std::string subnet = "10.201.0.0";
  app.add_option("--seed", o.seed, "seed of every random choice (same seed, same choices)")->capture_default_str();
  app.add_option("--mtu", o.mtu, "MTU of both TUN devices")->check(CLI::Range(576, 65535))->capture_default_str();
  app.add_option("--subnet", subnet,
                 "the /30 of the link: near = .1, far = .2 of it (namespaces are private, so "
                 "concurrent runs may share it)")
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "hard limit of the run, seconds (exit 124 if reached)")
      ->check(CLI::Range(0.001, 1e7))
      ->capture_default_str();
  app.add_option("--grace-ms", o.grace_ms, "SIGTERM -> SIGKILL grace when stopping commands")
      ->check(CLI::Range(0, 600000))
      ->capture_default_str();
  app.add_option("--near", o.near_cmd, "shell command to run in the near namespace (sh -c)");
  app.add_option("--json", o.json_path, "write the statistics as JSON to this file");
  app.add_flag("-q,--quiet", o.quiet, "no start-up line (statistics are still printed)");
  app.add_flag("--cleanup-stale", o.cleanup_stale,
               "delete namespaces left by linkem runs that were SIGKILLed (linkem-PID-* whose PID is "
               "gone), then exit");
  app.add_option("command", o.far_cmd, "CMD [ARGS...] to run in the far namespace (after --)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    for (int scope = 0; scope < 3; ++scope) {
      if (opts[i][scope]->count() == 0) continue;
      for (LinkParams* p : {&o.up, &o.down}) {
        if ((scope == 1 && p != &o.up) || (scope == 2 && p != &o.down)) continue;
        // --X first, then --up-X/--down-X override it (scope order).
        if (std::string err = specs[i].apply(*p, values[i][scope]); !err.empty()) {
          fmt::print(stderr, "linkem: --{}{}: {}\n", scope == 1 ? "up-" : scope == 2 ? "down-" : "",
                     specs[i].name, err);
          return 2;
        }
      }
    }
  }
  for (auto [p, n] : {std::pair{&o.up, "up"}, std::pair{&o.down, "down"}}) {
    if (std::string err = validate(*p); !err.empty()) {
      fmt::print(stderr, "linkem: {} direction: {}\n", n, err);
      return 2;
    }
  }
  if (std::string err; !parse_subnet(subnet, &o.subnet, &err)) {
    fmt::print(stderr, "linkem: {}\n", err);
    return 2;
  }
  return std::nullopt;
}

}  // namespace sluice::perf::linkem
