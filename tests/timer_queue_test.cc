// Timer logic with an injected clock: no sleeping to reach deadlines.
#include "core/timer_queue.h"

#include <vector>

#include <gtest/gtest.h>

namespace sluice {
namespace {

using namespace std::chrono_literals;

TEST(TimerQueue, FiresInDeadlineOrder) {
  TimerQueue q;
  Clock::time_point t0{};
  std::vector<int> fired;
  q.add(t0 + 30ms, {}, [&] { fired.push_back(3); });
  q.add(t0 + 10ms, {}, [&] { fired.push_back(1); });
  q.add(t0 + 20ms, {}, [&] { fired.push_back(2); });
  EXPECT_EQ(q.next_deadline(), t0 + 10ms);
  EXPECT_EQ(q.run_expired(t0 + 5ms), 0u);
  EXPECT_EQ(q.run_expired(t0 + 25ms), 2u);
  EXPECT_EQ(q.run_expired(t0 + 30ms), 1u);
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(q.next_deadline(), Clock::time_point::max());
}

TEST(TimerQueue, CancelPreventsFiring) {
  TimerQueue q;
  Clock::time_point t0{};
  int n = 0;
  TimerId a = q.add(t0 + 1ms, {}, [&] { ++n; });
  q.add(t0 + 2ms, {}, [&] { n += 10; });
  EXPECT_TRUE(q.cancel(a));
  EXPECT_FALSE(q.cancel(a));
  EXPECT_EQ(q.next_deadline(), t0 + 2ms);  // stale entry skipped
  q.run_expired(t0 + 5ms);
  EXPECT_EQ(n, 10);
}

TEST(TimerQueue, RepeatingTimerDoesNotDriftAndCanCancelItself) {
  TimerQueue q;
  Clock::time_point t0{};
  int n = 0;
  TimerId id = 0;
  id = q.add(t0 + 10ms, 10ms, [&] {
    if (++n == 3) q.cancel(id);
  });
  q.run_expired(t0 + 10ms);
  EXPECT_EQ(q.next_deadline(), t0 + 20ms);
  q.run_expired(t0 + 21ms);
  EXPECT_EQ(q.next_deadline(), t0 + 30ms);  // anchored, not 31ms
  q.run_expired(t0 + 30ms);
  EXPECT_EQ(n, 3);
  q.run_expired(t0 + 100ms);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerQueue, CallbackMayAddTimers) {
  TimerQueue q;
  Clock::time_point t0{};
  int n = 0;
  q.add(t0 + 1ms, {}, [&] { q.add(t0 + 2ms, {}, [&] { ++n; }); });
  q.run_expired(t0 + 1ms);
  EXPECT_EQ(n, 0);
  q.run_expired(t0 + 2ms);
  EXPECT_EQ(n, 1);
}

}  // namespace
}  // namespace sluice
