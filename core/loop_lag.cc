#include "core/loop_lag.h"

#include <algorithm>

namespace sluice {

Clock::duration LagProbe::lag(Clock::time_point due, Clock::time_point loop_now,
                              Clock::time_point clock) {
  const Clock::duration dispatch = std::max(Clock::duration::zero(), clock - loop_now);
  const Clock::duration before = std::max(Clock::duration::zero(), loop_now - due - kSlop);
  return dispatch + before;
}

void LagProbe::start(EventLoop& loop, metrics::LocalHistogram& hist, Clock::duration interval) {
  stop();
  loop_ = &loop;
  hist_ = &hist;
  interval_ = interval;
  due_ = loop.clock() + interval;
  timer_ = loop.run_at(due_, [this] { fire(); });
}

void LagProbe::stop() {
  if (loop_ != nullptr && timer_ != 0) loop_->cancel(timer_);
  timer_ = 0;
  loop_ = nullptr;
}

void LagProbe::fire() {
  const Clock::time_point clock = loop_->clock();
  hist_->observe_ns(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(lag(due_, loop_->now(), clock))
          .count()));
  // Re-armed from its own callback: same node, no allocation.
  due_ = clock + interval_;
  loop_->reset_timer_at(timer_, due_);
}

}  // namespace sluice
