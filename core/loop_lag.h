// LagProbe: how late a loop runs a timer, sampled every `interval` into a
// histogram (the sluice_loop_lag_seconds series).
//
// What it measures: a one-shot timer is due at T; when its callback runs
// it records
//     (clock() - now())  +  max(0, now() - T - kSlop)
// where now() is when the current iteration's wait began. The first part
// is how long that iteration's IO dispatch held the timer back; the second
// is how long the loop was busy past T before that wait began (a previous
// iteration's callbacks, a stall). kSlop (2 ms) is what an idle loop
// shows anyway: deadlines round up to the timer wheel's 1 ms tick and the
// wait's timeout to whole milliseconds, so without it every idle sample
// would read 1-2 ms and hide the sub-millisecond buckets. Busy stretches
// are thus counted from 2 ms past the deadline. One clock read per sample
// and nothing per message: the probe costs nothing on the hot path.
//
// Thread rules: start() and stop() on the loop's thread (or before its
// run()); the histogram is written by that thread only and may be read
// from any thread (metrics::LocalHistogram).
#pragma once

#include <chrono>

#include "core/event_loop.h"
#include "core/metrics.h"

namespace sluice {

class LagProbe {
 public:
  static constexpr Clock::duration kSlop = std::chrono::milliseconds(2);

  // `loop` and `hist` must outlive the probe, or stop() must run first.
  void start(EventLoop& loop, metrics::LocalHistogram& hist, Clock::duration interval);
  void stop();
  ~LagProbe() { stop(); }

  // The figure recorded for a timer due at `due` whose iteration's wait
  // began at `loop_now` and whose callback runs at `clock` (see above).
  static Clock::duration lag(Clock::time_point due, Clock::time_point loop_now,
                             Clock::time_point clock);

 private:
  void fire();

  EventLoop* loop_ = nullptr;
  metrics::LocalHistogram* hist_ = nullptr;
  Clock::duration interval_{};
  Clock::time_point due_{};
  TimerId timer_ = 0;
};

}  // namespace sluice
