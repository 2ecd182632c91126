// TimerQueue: one-shot and repeating timers for one loop.
//
// The clock is passed in (run_expired(now), add(when, ...)), so tests drive
// it with an injected clock and never sleep to reach a deadline.
//
// Implementation: a binary min-heap of (deadline, id) with lazy deletion:
// cancel() only erases the callback, and the stale heap entry is dropped
// when it reaches the top. O(log n) add, O(1) cancel.
//
// Thread rules: loop thread only (not synchronised). Callbacks may add and
// cancel timers, including their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

namespace sluice {

using Clock = std::chrono::steady_clock;
using TimerId = uint64_t;  // 0 is never a valid id
using TimerCallback = std::function<void()>;

class TimerQueue {
 public:
  // interval zero: one-shot; otherwise re-armed every interval after when.
  TimerId add(Clock::time_point when, Clock::duration interval, TimerCallback cb);
  // Returns true if the timer was pending (it will not fire again).
  bool cancel(TimerId id);
  // Runs every timer due at `now`; returns how many ran.
  size_t run_expired(Clock::time_point now);
  // The earliest pending deadline, or time_point::max() when none.
  Clock::time_point next_deadline();
  size_t size() const { return timers_.size(); }

 private:
  struct Entry {
    Clock::time_point when;
    TimerId id;
    bool operator>(const Entry& o) const {
      return when != o.when ? when > o.when : id > o.id;
    }
  };
  struct Timer {
    Clock::duration interval;
    TimerCallback cb;
  };
  void drop_stale_top();

  std::vector<Entry> heap_;  // min-heap via std::greater
  std::unordered_map<TimerId, Timer> timers_;
  TimerId next_id_ = 1;
};

}  // namespace sluice
