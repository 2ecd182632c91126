// Connection's idle detection (see "Idle detection" in core/connection.h):
// one loop timer re-armed lazily, the kernel asked before anything is
// called idle, and ServerOptions::idle_close.
#include <cerrno>
#include <chrono>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/connection.h"
#include "core/event_loop.h"
#include "core/log.h"
#include "core/loop_stats.h"
#include "core/net.h"

namespace sluice {

void Connection::set_idle(const IdleOptions& options) {
  // Lingering, the idle timer is the linger timer (see start_linger()).
  if (state_ == State::kLingering) return;
  idle_on_ = options.enabled();
  idle_.start(options, loop_.clock());
  if (!idle_on_) {
    // Before on_open the node may be the PROXY header's deadline: keep it.
    if (handler_open()) stop_idle();
  } else if (attached_ && state_ < State::kDetaching && handler_open()) {
    arm_idle();  // TLS: not before the handshake is done (tls_open() arms it)
  }
}

void Connection::arm_idle() {
  const Clock::time_point when = idle_.next_check();
  // Re-arming reuses the timer's node (also from inside its own callback).
  if (idle_timer_ != 0 && loop_.reset_timer_at(idle_timer_, when)) return;
  // `this` stays valid for the timer's life: it is cancelled in
  // detach_now() and in the destructor, both on the loop thread.
  idle_timer_ = loop_.run_at(when, [this] { on_idle_timer(); });
}

void Connection::on_idle_timer() {
  if (state_ >= State::kDetaching || !idle_on_) return;  // cancelled meanwhile
  // The loop's time, not the clock: input queued before it has been read
  // (core/event_loop.h, "Loop time").
  const Clock::time_point now = loop_.now();
  // Before calling anything idle, ask the kernel what it saw, and when
  // (core/net.h, TcpProgress):
  //  * input: a segment that arrived but is not read yet (this loop, or a
  //    blocking back end's reader thread, is behind) is activity all the
  //    same: idle means the peer sent nothing, not that we did not look;
  //  * output: the peer acknowledging more of our bytes is progress the
  //    back end may not have reported, at its own granularity (a whole
  //    blocking send(), a writability threshold). It is stamped with the
  //    time of the last ACK, not with now: stamping it now made an idle
  //    timeout fire at up to twice its setting.
  TcpProgress tcp;
  if (tcp_progress(fd(), &tcp) == 0) {
    const Clock::time_point clock = loop_.clock();
    if (idle_.options().reader.count() > 0 || idle_.options().all.count() > 0) {
      // Bytes still queued count as input now, however long ago they came,
      // while we mean to read them: we are behind, the peer is not idle.
      // While reading is paused (backpressure) only arrivals count, so a
      // peer that fills our window and never reads still goes idle.
      const bool behind = want_read() && input_queued(fd());
      idle_.on_read(behind ? clock : clock - tcp.since_data_recv);
    }
    if (tcp.bytes_acked > acked_) {
      idle_.on_write(clock - tcp.since_ack_recv);
      acked_ = tcp.bytes_acked;
    }
  }
  const IdleState::Fired fired = idle_.poll(now);
  if (LoopStats* st = shared_.stats) {
    for (size_t i = 0; i < fired.count; ++i) st->idle[static_cast<size_t>(fired.kinds[i])].add();
  }
  for (size_t i = 0; i < fired.count && state_ < State::kDetaching; ++i) {
    handler().on_idle(*this, fired.kinds[i]);
  }
  if (fired.count > 0 && shared_.close_idle && state_ < State::kDetaching) {
    close_idle(fired.kinds[0]);
  }
  // The handler may have closed the connection (stop_idle() ran) or turned
  // idle detection off; otherwise look again when something can be idle.
  if (state_ < State::kDetaching && idle_on_) arm_idle();
}

// ServerOptions::idle_close: the handler heard on_idle and left the
// connection open. Open: a graceful close. Already flushing (a close that
// makes no progress, e.g. an idle close to a peer that stopped reading):
// abort.
void Connection::close_idle(IdleKind kind) {
  if (state_ != State::kOpen) {
    // Output still owed is dropped: say so (see Handler::on_close).
    return close_with(CloseReason::kIdle, pending_ > 0 ? -ETIMEDOUT : 0, true);
  }
  const IdleOptions& o = idle_.options();
  const Clock::duration d = kind == IdleKind::kReader   ? o.reader
                            : kind == IdleKind::kWriter ? o.writer
                                                        : o.all;
  close_detail_ = std::make_unique<std::string>(fmt::format(
      "{} for {} ms", to_string(kind),
      std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
  // Many peers can go idle at once: at most one line a second per loop
  // thread, with the count of those not logged.
  thread_local LogLimiter limiter;
  if (uint64_t skipped = 0; limiter.allow(loop_.now(), &skipped)) {
    spdlog::info("conn #{} {}: {}; closing ({} more idle closes not logged)", id_,
                 peer(), *close_detail_, skipped);
  }
  close_with(CloseReason::kIdle, 0, false);
}

void Connection::stop_idle() {
  if (idle_timer_ == 0) return;
  loop_.cancel(idle_timer_);  // false while it fires: then it is freed after
  idle_timer_ = 0;
}

}  // namespace sluice
