#include "tests/sim_harness.h"

#include <dirent.h>

#include "core/connection.h"
#include "core/event_loop.h"

namespace sluice::simtest {

void Harness::finish() {
  if (finished_) return;
  finished_ = true;
  // The test's thread hears of it once the loop has nothing left to do at
  // this virtual time: its stop() then lands at the same point every run.
  world_.pause([this] { done_.set_value(); });
}

void Harness::deadline(SimClock::duration limit) {
  world_.after(limit, [this, limit] {
    if (finished_) return;
    fail("hang: not done after {} ms of virtual time",
         std::chrono::duration_cast<std::chrono::milliseconds>(limit).count());
    finish();
  });
}

bool Harness::wait_finished(std::chrono::milliseconds real) {
  return done_.get_future().wait_for(real) == std::future_status::ready;
}

double Harness::ms() const {
  return std::chrono::duration<double, std::milli>(world_.now() - sim::World::kEpoch).count();
}

// ---- CheckingHandler ----

bool CheckingHandler::live(Connection& c, const char* what) {
  if (open_.count(c.id())) return true;
  h_.fail("conn #{}: {} {}", c.id(), what,
          closed_ids_.count(c.id()) ? "after on_close" : "before on_open");
  return false;
}

void CheckingHandler::on_open(Connection& c) {
  if (open_.count(c.id()) || closed_ids_.count(c.id())) h_.fail("conn #{}: on_open twice", c.id());
  open_.insert(c.id());
  ++opened_;
  app_.on_open(c);
}

void CheckingHandler::on_message(Connection& c, std::string_view data) {
  if (live(c, "on_message")) app_.on_message(c, data);
}

void CheckingHandler::on_peer_shutdown(Connection& c) {
  if (live(c, "on_peer_shutdown")) app_.on_peer_shutdown(c);
}

void CheckingHandler::on_high_water(Connection& c, size_t pending) {
  if (live(c, "on_high_water")) app_.on_high_water(c, pending);
}

void CheckingHandler::on_drain(Connection& c) {
  if (live(c, "on_drain")) app_.on_drain(c);
}

void CheckingHandler::on_idle(Connection& c, IdleKind kind) {
  if (live(c, "on_idle")) app_.on_idle(c, kind);
}

void CheckingHandler::on_close(Connection& c, CloseReason reason, int err) {
  if (!live(c, "on_close")) return;
  open_.erase(c.id());
  closed_ids_.insert(c.id());
  ++closed_;
  if (reason == CloseReason::kPeerReset && err == 0) {
    h_.fail("conn #{}: closed as reset without an error", c.id());
  }
  app_.on_close(c, reason, err);
}

void CheckingHandler::on_loop_start(EventLoop& loop, size_t index) {
  h_.world().resume();
  app_.on_loop_start(loop, index);
  if (script_) script_();
}

void CheckingHandler::on_server_stop(EventLoop& loop, size_t index) {
  h_.world().resume();  // stop() has reached the loop: time runs again
  app_.on_server_stop(loop, index);
}

void CheckingHandler::check_all_closed() {
  if (!open_.empty()) h_.fail("{} connections never heard on_close", open_.size());
  if (opened_ != closed_) h_.fail("opened {} connections, closed {}", opened_, closed_);
}

// ---- CheckingDatagramHandler ----

void CheckingDatagramHandler::on_open(UdpEndpoint& ep) {
  if (++opened_ != 1) h_.fail("endpoint opened {} times", opened_);
  h_.world().resume();
  app_.on_open(ep);
  if (script_) script_();
}

void CheckingDatagramHandler::on_datagram(UdpEndpoint& ep, const io::Datagram& d) {
  if (closed_ > 0) h_.fail("on_datagram after on_close");
  app_.on_datagram(ep, d);
}

void CheckingDatagramHandler::on_close(UdpEndpoint& ep) {
  if (++closed_ != 1) h_.fail("endpoint closed {} times", closed_);
  h_.world().resume();
  app_.on_close(ep);
}

size_t count_fds() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
    n -= 3;  // ".", "..", and the directory's own descriptor
  }
  return n;
}

}  // namespace sluice::simtest
