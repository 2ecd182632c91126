// The simulation suites: each runs one scenario on a fresh world from a
// seed and returns the invariants it broke (none: the run passed). Used by
// tests/sim_test.cc (a fixed budget of seeds per suite) and
// tests/sim_campaign.cc (long campaigns).
//
// Thread rules: a scenario runs a server with its own loop thread; call
// run() from one thread at a time per scenario (each run is independent,
// so different threads may run different seeds).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/server.h"
#include "core/udp_server.h"
#include "tests/sim_harness.h"
#include "tests/test_util.h"

namespace sluice::simtest {

struct Suite {
  const char* name;
  const char* what;
  Outcome (*run)(uint64_t seed);
};

const std::vector<Suite>& suites();
const Suite* find_suite(std::string_view name);

// The commands that replay one seed of a suite.
std::string replay_command(std::string_view suite, uint64_t seed);

// Scenarios (sim_stream_scenarios.cc, sim_time_scenarios.cc,
// sim_udp_scenarios.cc).
Outcome run_echo(uint64_t seed);
Outcome run_backpressure(uint64_t seed);
Outcome run_output_cap(uint64_t seed);
Outcome run_stop(uint64_t seed);
Outcome run_stop_deadline(uint64_t seed);
Outcome run_half_close(uint64_t seed);
Outcome run_timers(uint64_t seed);
Outcome run_idle(uint64_t seed);
Outcome run_idle_abort(uint64_t seed);
Outcome run_heartbeat_tcp(uint64_t seed);
Outcome run_heartbeat_udp(uint64_t seed);
Outcome run_udp_echo(uint64_t seed);

// Runs a Server (threads = 1) on h's world with `app` behind a checking
// handler: `script` runs on the loop thread when the loop starts (it
// connects peers and must end in h.finish()); then the server is stopped,
// what is in flight settles, and `check` looks at the end state (test
// thread). Adds the common checks: real-time hang, on_close for every
// connection, connection_count() back to 0, no descriptor leak.
Outcome run_server(Harness& h, ServerOptions options, std::unique_ptr<codec::Codec> codec,
                   Handler& app, const std::function<void(Server&)>& script,
                   const std::function<void()>& check);
// The same for a UdpServer.
Outcome run_udp_server(Harness& h, UdpServerOptions options, DatagramHandler& app,
                       const std::function<void(UdpServer&)>& script,
                       const std::function<void()>& check);

// Length-prefix framing for peers (4-byte big-endian length).
using sluice::testing::frame;
// Takes whole frames from the front of `buf` into `out`.
void unframe(std::string& buf, std::vector<std::string>& out);
std::string random_bytes(sim::Rng& rng, size_t n);
// A shuffled network (segmentation, delays, short sends, window sizes
// drawn from rng); a scenario adds its own faults on top.
sim::SimFaults shuffled_network(sim::Rng& rng);

}  // namespace sluice::simtest
