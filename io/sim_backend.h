// SimBackend: the io::Backend of a simulated world (io/sim_world.h). Every
// call goes to the world, which keeps the virtual clock (now()), the
// in-memory streams and datagram sockets, and the event queue that wait()
// runs. Not in io::backends(): the real-back-end suites iterate that list,
// and a simulated back end only makes sense together with its world and
// peers. Make one with World::backend() and hand it to a server through
// ServerOptions::backend_factory.
//
// Thread rules: as io::Backend (loop thread; wakeup() from any thread).
// The world must outlive it.
#pragma once

#include <chrono>
#include <string_view>

#include "io/backend.h"
#include "io/sim_world.h"

namespace sluice::sim {

class SimBackend final : public io::Backend {
 public:
  explicit SimBackend(World& world) : world_(world) {}
  ~SimBackend() override { world_.has_backend_ = false; }

  std::string_view name() const override { return "sim"; }
  int attach(io::Channel& ch) override { return world_.attach(ch); }
  void update(io::Channel& ch) override { world_.update(ch); }
  void detach(io::Channel& ch) override { world_.detach(ch); }
  ssize_t send_now(io::Channel& ch, std::string_view bytes) override {
    return world_.send_now(ch, bytes);
  }
  int wait(std::chrono::milliseconds timeout) override { return world_.wait(timeout); }
  void wakeup() override { world_.wakeup(); }
  std::chrono::steady_clock::time_point now() const override { return world_.now(); }

 private:
  World& world_;
};

}  // namespace sluice::sim
