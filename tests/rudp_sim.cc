#include "tests/rudp_sim.h"

#include <spdlog/spdlog.h>

namespace sluice::rudptest {

namespace {

// Wraps the scenario's handler: starts the script with the loop and
// resumes the world when stop() reaches the loop (see io/sim_world.h,
// Determinism).
class Driver final : public Handler {
 public:
  Driver(Scenario& s, sim::World& w) : s_(s), w_(w) {}
  // Set before start(): the port is known before the loop thread begins.
  Server* server = nullptr;
  void on_open(Connection& c) override { s_.server_handler().on_open(c); }
  void on_message(Connection& c, std::string_view d) override {
    s_.server_handler().on_message(c, d);
  }
  void on_peer_shutdown(Connection& c) override { s_.server_handler().on_peer_shutdown(c); }
  void on_high_water(Connection& c, size_t p) override { s_.server_handler().on_high_water(c, p); }
  void on_drain(Connection& c) override { s_.server_handler().on_drain(c); }
  void on_idle(Connection& c, IdleKind k) override { s_.server_handler().on_idle(c, k); }
  void on_close(Connection& c, CloseReason r, int e) override {
    s_.server_handler().on_close(c, r, e);
  }
  void on_loop_start(EventLoop& loop, size_t) override {
    w_.resume();
    s_.start(loop, server->port());
  }
  void on_server_stop(EventLoop&, size_t) override {
    w_.resume();
    s_.stopping();
  }

 private:
  Scenario& s_;
  sim::World& w_;
};

}  // namespace

std::vector<std::string> run(const SimRun& r, Scenario& s) {
  sim::World world(r.seed, r.faults);
  s.world = &world;
  Driver driver(s, world);
  ServerOptions so = r.server;
  so.threads = 1;
  so.backend_factory = [&world](size_t) { return world.backend(); };
  so.transport = rudp::transport(r.options);
  so.stop_deadline = 5000ms;
  Server server(so, driver);
  driver.server = &server;
  s.server = &server;
  std::promise<void> finished;
  s.done_fn_ = [&world, &finished] { world.pause([&finished] { finished.set_value(); }); };
  std::string error;
  if (server.start(&error) != 0) return {"start: " + error};
  auto f = finished.get_future();
  if (f.wait_for(120s) != std::future_status::ready) {
    s.fail("seed {}: no result within 120 s of real time (virtual {} s)", r.seed,
           std::chrono::duration_cast<std::chrono::seconds>(world.now() - sim::World::kEpoch)
               .count());
    // Unstick the loop: done() never ran, so the world may still run.
    s.done();
    if (f.wait_for(10s) != std::future_status::ready) {
      s.fail("seed {}: hung for good", r.seed);
      std::terminate();
    }
  }
  if (world.now() - sim::World::kEpoch > r.virtual_limit) {
    s.fail("seed {}: took {} s of virtual time", r.seed,
           std::chrono::duration_cast<std::chrono::seconds>(world.now() - sim::World::kEpoch)
               .count());
  }
  server.stop();
  if (r.totals) {
    const sim::SimStats& w = world.stats();
    r.totals->datagrams_to_core += w.datagrams_to_core;
    r.totals->datagrams_lost += w.datagrams_lost;
    r.totals->datagrams_duplicated += w.datagrams_duplicated;
    r.totals->datagrams_corrupted += w.datagrams_corrupted;
    r.totals->bottleneck_drops += w.bottleneck_drops;
    r.totals->bottleneck_ce_marks += w.bottleneck_ce_marks;
    r.totals->jumped += world.now() - sim::World::kEpoch;  // virtual time, summed
  }
  std::vector<std::string> out;
  for (const std::string& v : s.violations) out.push_back(fmt::format("seed {}: {}", r.seed, v));
  return out;
}

}  // namespace sluice::rudptest
