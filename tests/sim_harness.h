// Running one scenario on a simulated world (io/sim_world.h) and checking
// the invariants every run must keep: what was delivered is exactly what
// was sent, or the connection ended with an error reported to the handler;
// no crash; no hang (bounded virtual and real time); no descriptor leak;
// no callback after on_close; counters that add up.
//
// Determinism: one Server/UdpServer loop (threads = 1) per world. The
// world starts paused; the checking handlers resume it on the loop thread
// (on_loop_start / on_open) and run the scenario's script there, and
// resume it again when stop() reaches the loop (on_server_stop /
// on_close), so nothing depends on when the test's thread gets to run.
//
// Thread rules: a Harness is created and read by the test's thread; its
// scenario callbacks run on the loop thread; finish() hands over through
// a promise (the loop thread then waits, paused, for stop()).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "core/handler.h"
#include "core/udp_endpoint.h"
#include "io/sim_peer.h"
#include "io/sim_world.h"

namespace sluice::simtest {

using sim::SimClock;

// What one run found.
struct Outcome {
  std::vector<std::string> violations;
  sim::SimStats stats;
  SimClock::duration virtual_time{};
};

class Harness {
 public:
  Harness(uint64_t seed, sim::SimFaults faults) : world_(seed, faults) {}

  sim::World& world() { return world_; }
  sim::Rng& rng() { return world_.rng(); }
  uint64_t seed() const { return world_.seed(); }

  template <class... Args>
  void fail(fmt::format_string<Args...> f, Args&&... args) {
    violations_.push_back(fmt::format(f, std::forward<Args>(args)...));
  }
  std::vector<std::string>& violations() { return violations_; }

  // Loop thread: the scenario is over (or gave up). The world pauses and
  // the test's thread goes on to stop the server. Idempotent.
  void finish();
  bool finished() const { return finished_; }
  // Loop thread: finish() with a violation unless finished by then.
  void deadline(SimClock::duration virtual_limit);
  // Test thread: waits for finish() up to `real` (a hang otherwise).
  bool wait_finished(std::chrono::milliseconds real);

  // Milliseconds of virtual time since the world began.
  double ms() const;

 private:
  sim::World world_;
  std::vector<std::string> violations_;
  bool finished_ = false;
  std::promise<void> done_;
};

// Forwards every callback to the scenario's handler and checks the
// Handler contract: on_open once per connection, nothing after on_close,
// on_close exactly once; counts closes by reason.
class CheckingHandler final : public Handler {
 public:
  CheckingHandler(Harness& h, Handler& app, std::function<void()> script)
      : h_(h), app_(app), script_(std::move(script)) {}

  void on_open(Connection& c) override;
  void on_message(Connection& c, std::string_view data) override;
  void on_peer_shutdown(Connection& c) override;
  void on_high_water(Connection& c, size_t pending) override;
  void on_drain(Connection& c) override;
  void on_idle(Connection& c, IdleKind kind) override;
  void on_close(Connection& c, CloseReason reason, int err) override;
  void on_loop_start(EventLoop& loop, size_t index) override;
  void on_server_stop(EventLoop& loop, size_t index) override;

  size_t opened() const { return opened_; }
  size_t closed() const { return closed_; }
  // Test thread, after stop(): every opened connection was closed.
  void check_all_closed();

 private:
  bool live(Connection& c, const char* what);

  Harness& h_;
  Handler& app_;
  std::function<void()> script_;
  std::set<uint64_t> open_;
  std::set<uint64_t> closed_ids_;
  size_t opened_ = 0;
  size_t closed_ = 0;
};

// The same for a DatagramHandler (UdpServer).
class CheckingDatagramHandler final : public DatagramHandler {
 public:
  CheckingDatagramHandler(Harness& h, DatagramHandler& app, std::function<void()> script)
      : h_(h), app_(app), script_(std::move(script)) {}

  void on_open(UdpEndpoint& ep) override;
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override;
  void on_close(UdpEndpoint& ep) override;

  int opened() const { return opened_; }
  int closed() const { return closed_; }

 private:
  Harness& h_;
  DatagramHandler& app_;
  std::function<void()> script_;
  int opened_ = 0;
  int closed_ = 0;
};

// Descriptors this process has open now.
size_t count_fds();

}  // namespace sluice::simtest
