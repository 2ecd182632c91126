// Running rudp on the simulated world (io/sim_world.h): a Server with the
// rudp transport and rudp::Clients on the same loop (one world, one loop
// thread: deterministic from the seed), datagrams lost, duplicated,
// corrupted and delayed (so reordered) as SimFaults say, in virtual time.
//
// A scenario is a ServerSide handler plus a script run on the loop thread
// once it starts (make clients, send), which calls done() when its checks
// are in; run() then stops the server and returns what the checks found.
//
// Thread rules: run() on the test's thread; everything else on the loop
// thread.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/event_loop.h"
#include "core/server.h"
#include "io/sim_world.h"
#include "rudp/rudp.h"

namespace sluice::rudptest {

using namespace std::chrono_literals;

struct SimRun {
  uint64_t seed = 1;
  sim::SimFaults faults;
  rudp::Options options;  // both ends
  ServerOptions server;   // transport, backend factory, threads are set by run()
  // Virtual time allowed before the scenario counts as hung.
  std::chrono::seconds virtual_limit{600};
  // If set: the world's counters at the end are added here.
  sim::SimStats* totals = nullptr;
};

class Scenario {
 public:
  virtual ~Scenario() = default;
  // The server's handler (on the loop thread).
  virtual Handler& server_handler() = 0;
  // Loop thread, once the loop runs: set up clients and start.
  virtual void start(EventLoop& loop, uint16_t port) = 0;
  // Loop thread, when the server is stopping: drop clients here.
  virtual void stopping() {}

  // For scripts: the run is over (checks done). Loop thread.
  void done() {
    if (done_fn_) {
      auto f = std::move(done_fn_);
      done_fn_ = nullptr;
      f();
    }
  }
  template <class... Args>
  void fail(fmt::format_string<Args...> f, Args&&... args) {
    violations.push_back(fmt::format(f, std::forward<Args>(args)...));
  }
  std::vector<std::string> violations;
  sim::World* world = nullptr;
  Server* server = nullptr;  // set before start()

 private:
  friend std::vector<std::string> run(const SimRun& r, Scenario& s);
  std::function<void()> done_fn_;
};

// Runs the scenario to its done() (or the limits) and stops the server.
// Returns the violations, with the seed in each.
std::vector<std::string> run(const SimRun& r, Scenario& s);

}  // namespace sluice::rudptest
