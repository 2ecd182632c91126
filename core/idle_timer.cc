#include "core/idle_timer.h"

namespace sluice {

IdleTimer::~IdleTimer() {
  if (destroyed_) *destroyed_ = true;
  stop();
}

void IdleTimer::start(const IdleOptions& options) {
  on_ = options.enabled();
  state_.start(options, loop_.clock());
  if (on_) {
    arm();
  } else {
    stop();
  }
}

void IdleTimer::stop() {
  on_ = false;
  if (timer_ != 0) loop_.cancel(timer_);  // false while firing: freed after
  timer_ = 0;
}

void IdleTimer::arm() {
  const Clock::time_point when = state_.next_check();
  if (timer_ != 0 && loop_.reset_timer_at(timer_, when)) return;
  // `this` outlives the timer: the destructor cancels it.
  timer_ = loop_.run_at(when, [this] { fire(); });
}

void IdleTimer::fire() {
  if (!on_) return;
  // The loop's time, not the clock: only input that reached the kernel
  // before it is known to have been read (core/event_loop.h).
  const IdleState::Fired fired = state_.poll(loop_.now());
  bool destroyed = false;
  destroyed_ = &destroyed;
  for (size_t i = 0; i < fired.count; ++i) {
    on_idle_(fired.kinds[i]);
    if (destroyed) return;  // the owner let go of us: touch nothing
    if (!on_) break;
  }
  destroyed_ = nullptr;
  if (on_) arm();
}

}  // namespace sluice
