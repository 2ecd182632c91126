#include "core/timer_queue.h"

#include <algorithm>

namespace sluice {

TimerId TimerQueue::add(Clock::time_point when, Clock::duration interval,
                        TimerCallback cb) {
  const TimerId id = next_id_++;
  timers_.emplace(id, Timer{interval, std::move(cb)});
  heap_.push_back({when, id});
  std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
  return id;
}

bool TimerQueue::cancel(TimerId id) { return timers_.erase(id) > 0; }

void TimerQueue::drop_stale_top() {
  while (!heap_.empty() && !timers_.count(heap_.front().id)) {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    heap_.pop_back();
  }
}

Clock::time_point TimerQueue::next_deadline() {
  drop_stale_top();
  return heap_.empty() ? Clock::time_point::max() : heap_.front().when;
}

size_t TimerQueue::run_expired(Clock::time_point now) {
  size_t ran = 0;
  for (;;) {
    drop_stale_top();
    if (heap_.empty() || heap_.front().when > now) break;
    const Entry due = heap_.front();
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    heap_.pop_back();
    auto it = timers_.find(due.id);
    Timer& t = it->second;
    if (t.interval.count() > 0) {
      // Re-arm before running so the callback can cancel itself. Anchored
      // to the previous deadline so a periodic timer does not drift.
      Clock::time_point next = due.when + t.interval;
      if (next <= now) next = now + t.interval;  // skip missed periods
      heap_.push_back({next, due.id});
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
      TimerCallback cb = t.cb;  // the callback may cancel (erase) itself
      cb();
    } else {
      TimerCallback cb = std::move(t.cb);
      timers_.erase(it);
      cb();
    }
    ++ran;
  }
  return ran;
}

}  // namespace sluice
