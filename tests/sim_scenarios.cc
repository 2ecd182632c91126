// The suite table and the common server runners (see sim_scenarios.h).
#include "tests/sim_scenarios.h"

#include <chrono>

#include <fmt/format.h>

namespace sluice::simtest {

using namespace std::chrono_literals;

namespace {
// A run that has not finished after this much real time is a hang (the
// scenarios take milliseconds; this leaves room for a loaded machine).
constexpr auto kRealLimit = std::chrono::milliseconds(20000);
}  // namespace

const std::vector<Suite>& suites() {
  static const std::vector<Suite> all = {
      {"echo", "length-framed echo: segmentation, short sends, resets, time jumps", run_echo},
      {"backpressure", "a peer that stops reading: high water, drain, exact delivery",
       run_backpressure},
      {"output_cap", "a server pushing to a peer that never reads is cut off at the cap",
       run_output_cap},
      {"stop", "graceful stop: every reply owed is delivered, then EOF", run_stop},
      {"stop_deadline", "stop with peers that stopped reading: ends by the deadline, cuts reported",
       run_stop_deadline},
      {"half_close", "the server half-closes and keeps reading; the peer keeps sending",
       run_half_close},
      {"timers", "loop timers never early, in order, across time jumps", run_timers},
      {"idle", "reader-idle close: due in virtual time, never for a peer that pings",
       run_idle},
      {"idle_abort", "an idle close that cannot flush is aborted, and says output was dropped",
       run_idle_abort},
      {"heartbeat_tcp", "heartbeat service over TCP: pingers stay, silent peers dropped",
       run_heartbeat_tcp},
      {"heartbeat_udp", "heartbeat service over UDP with loss, duplication, reordering",
       run_heartbeat_udp},
      {"udp_echo", "datagram echo under loss, duplication, reordering", run_udp_echo},
  };
  return all;
}

const Suite* find_suite(std::string_view name) {
  for (const Suite& s : suites()) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

std::string replay_command(std::string_view suite, uint64_t seed) {
  return fmt::format(
      "bazel test //tests:sim_test --test_env=SLUICE_SIM_SEED={} "
      "--test_filter=All/Sim.Seeds/{}  (or: bazel run //tests:sim_campaign -- "
      "--suite {} --first-seed {} --seeds 1 --verbose)",
      seed, suite, suite, seed);
}

namespace {
Outcome outcome_of(Harness& h) {
  Outcome o;
  o.violations = std::move(h.violations());
  o.stats = h.world().stats();
  o.virtual_time = h.world().now() - sim::World::kEpoch;
  return o;
}
}  // namespace

Outcome run_server(Harness& h, ServerOptions options, std::unique_ptr<codec::Codec> codec,
                   Handler& app, const std::function<void(Server&)>& script,
                   const std::function<void()>& check) {
  const size_t fds_before = count_fds();
  {
    Server* server_ptr = nullptr;
    CheckingHandler checker(h, app, [&] { script(*server_ptr); });
    options.threads = 1;
    options.backend_factory = [&h](size_t) { return h.world().backend(); };
    Server server(options, checker, std::move(codec));
    server_ptr = &server;
    std::string error;
    if (server.start(&error) < 0) {
      h.fail("server start: {}", error);
      return outcome_of(h);
    }
    if (!h.wait_finished(kRealLimit)) {
      h.fail("hang: not done after {} ms of real time", kRealLimit.count());
    }
    server.stop();
    // The loop thread is joined: the world is ours now. Let what is still
    // in flight reach the peers.
    h.world().settle(10s);
    checker.check_all_closed();
    if (server.connection_count() != 0) {
      h.fail("connection_count() is {} after stop", server.connection_count());
    }
    if (check) check();
  }
  if (const size_t after = count_fds(); after != fds_before) {
    h.fail("descriptor leak: {} open before the run, {} after", fds_before, after);
  }
  return outcome_of(h);
}

Outcome run_udp_server(Harness& h, UdpServerOptions options, DatagramHandler& app,
                       const std::function<void(UdpServer&)>& script,
                       const std::function<void()>& check) {
  const size_t fds_before = count_fds();
  {
    UdpServer* server_ptr = nullptr;
    CheckingDatagramHandler checker(h, app, [&] { script(*server_ptr); });
    options.threads = 1;
    options.backend_factory = [&h](size_t) { return h.world().backend(); };
    UdpServer server(options, checker);
    server_ptr = &server;
    std::string error;
    if (server.start(&error) < 0) {
      h.fail("udp server start: {}", error);
      return outcome_of(h);
    }
    if (!h.wait_finished(kRealLimit)) {
      h.fail("hang: not done after {} ms of real time", kRealLimit.count());
    }
    server.stop();
    h.world().settle(10s);
    if (checker.opened() != 1 || checker.closed() != 1) {
      h.fail("endpoint opened {} times, closed {} times", checker.opened(), checker.closed());
    }
    if (check) check();
  }
  if (const size_t after = count_fds(); after != fds_before) {
    h.fail("descriptor leak: {} open before the run, {} after", fds_before, after);
  }
  return outcome_of(h);
}


void unframe(std::string& buf, std::vector<std::string>& out) {
  size_t pos = 0;
  while (buf.size() - pos >= 4) {
    const auto* b = reinterpret_cast<const unsigned char*>(buf.data() + pos);
    const size_t n = (size_t{b[0]} << 24) | (size_t{b[1]} << 16) | (size_t{b[2]} << 8) | b[3];
    if (buf.size() - pos - 4 < n) break;
    out.emplace_back(buf, pos + 4, n);
    pos += 4 + n;
  }
  buf.erase(0, pos);
}

sim::SimFaults shuffled_network(sim::Rng& rng) {
  sim::SimFaults f;
  f.max_segment = rng.range(1, 3000);
  f.max_delay = std::chrono::microseconds(rng.range(0, 5000));
  f.short_send = rng.chance(0.5) ? 0.3 : 0.0;
  f.min_window = rng.range(1, 4096);
  f.max_window = f.min_window + rng.range(0, 128 * 1024);
  f.late_detach = rng.chance(0.5) ? 0.5 : 0.0;
  return f;
}

std::string random_bytes(sim::Rng& rng, size_t n) {
  // Eight bytes per draw: the stop suites make megabytes per run.
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng.next();
    for (size_t k = i; k < std::min(n, i + 8); ++k, v >>= 8) s[k] = static_cast<char>(v);
  }
  return s;
}

}  // namespace sluice::simtest
