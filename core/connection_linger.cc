// Connection's lingering close (see "States" in core/connection.h): the
// FIN after everything owed, then reading and discarding until the peer
// closes or its kernel has our FIN, bounded in time and bytes.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/connection.h"
#include "core/event_loop.h"
#include "core/net.h"

namespace sluice {

void Connection::start_linger() {
  if (!write_shut_) {
    write_shut_ = true;
    // Everything owed is in the kernel: the FIN goes out after it.
    if (const int rc = shut_write(); rc != 0) {
      // ENOTCONN: reset meanwhile; nothing to wait for
      spdlog::debug("conn #{} {}: shutdown: {}", id_, peer(), std::strerror(-rc));
      detach_now();
      return;
    }
  }
  // Not TCP (TCP_INFO fails): no way to tell when the peer has it all.
  if (tcp_fin_acked(fd()) < 0) {
    detach_now();
    return;
  }
  state_ = State::kLingering;
  discarded_ = 0;  // a fresh budget for this phase
  shared_.owner.count_linger(LingerEvent::kStarted);
  // The idle timer becomes the linger timer (no new per-connection state):
  // idle detection ends here (before on_close: no idle event follows it),
  // and IdleState's clocks, restarted with no kinds enabled, keep when the
  // linger began (last_write()). If this runs inside on_idle_timer (a
  // handler closing an idle peer), kLingering (>= kDetaching) and idle_on_
  // false keep that callback from going on or re-arming the node.
  idle_on_ = false;
  stop_idle();
  idle_.start(IdleOptions{}, loop_.clock());
  // The handler's part ends with the FIN: it hears on_close now, not a
  // delayed ACK (~40 ms) or the peer's close later.
  if (handler_open()) handler().on_close(*this, reason_, error_);
  if (state_ != State::kLingering) return;  // it aborted from on_close
  arm_linger(loop_.clock());
  update_reading();
}

void Connection::arm_linger(Clock::time_point now) {
  // Look for the ACK of our FIN at 1, 2, 4 ... ms, then every 64 ms: a
  // peer that reads promptly is released within a millisecond or two, a
  // slow one costs a few dozen timer runs, never more than the deadline.
  const Clock::time_point began = idle_.last_write();
  const Clock::time_point deadline = began + limits().linger_timeout;
  const Clock::duration step = std::clamp<Clock::duration>(
      now - began, std::chrono::milliseconds(1), std::chrono::milliseconds(64));
  const Clock::time_point when = std::min(now + step, deadline);
  if (idle_timer_ != 0 && loop_.reset_timer_at(idle_timer_, when)) return;
  // `this` stays valid for the timer's life: it is cancelled in
  // detach_now() and in the destructor, both on the loop thread.
  idle_timer_ = loop_.run_at(when, [this] { on_linger_timer(); });
}

void Connection::on_linger_timer() {
  if (state_ != State::kLingering) return;
  if (tcp_fin_acked(fd()) != 0) {
    end_linger(LingerEvent::kFinAcked);
    return;
  }
  const Clock::time_point now = loop_.clock();
  if (now - idle_.last_write() >= limits().linger_timeout) {
    spdlog::debug("conn #{} {}: peer did not take our FIN within {} ms; closing now",
                  id_, peer(), limits().linger_timeout.count());
    end_linger(LingerEvent::kTimeLimit);
    return;
  }
  arm_linger(now);
}

void Connection::end_linger(LingerEvent how) {
  shared_.owner.count_linger(how);
  detach_now();
}

}  // namespace sluice
