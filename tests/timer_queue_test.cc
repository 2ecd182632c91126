// Timer logic with an injected clock: no sleeping to reach deadlines.
#include "core/timer_queue.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <random>
#include <tuple>
#include <unordered_map>
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

// ---- timing wheel: scale, resolution, ordering, re-arming ----------------

namespace sluice {
namespace {

using namespace std::chrono_literals;

int64_t ceil_ms(Clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return ns / 1000000 + (ns % 1000000 > 0 ? 1 : 0);
}

TEST(TimerWheel, SubTickDeadlinesRoundUpNeverEarly) {
  TimerQueue q;
  Clock::time_point t0{};
  int n = 0;
  q.add(t0 + 1500us, {}, [&] { ++n; });
  EXPECT_EQ(q.next_deadline(), t0 + 2ms);
  EXPECT_EQ(q.run_expired(t0 + 1999us), 0u);  // due, but fires on the tick
  EXPECT_EQ(n, 0);
  EXPECT_EQ(q.run_expired(t0 + 2ms), 1u);
  EXPECT_EQ(n, 1);
}

TEST(TimerWheel, OrderingWithinATickIsByDeadlineThenArmOrder) {
  TimerQueue q;
  Clock::time_point t0{};
  std::vector<int> fired;
  // All in the tick ending at 5 ms, added out of order; two share 4.5 ms.
  q.add(t0 + 4900us, {}, [&] { fired.push_back(4); });
  q.add(t0 + 4500us, {}, [&] { fired.push_back(2); });
  q.add(t0 + 4100us, {}, [&] { fired.push_back(1); });
  q.add(t0 + 4500us, {}, [&] { fired.push_back(3); });
  q.add(t0 + 5000us, {}, [&] { fired.push_back(5); });
  // One far timer that cascades down into the same tick later.
  TimerQueue q2;
  std::vector<int> fired2;
  q2.add(t0 + 300ms, {}, [&] { fired2.push_back(1); });  // filed in level 1
  q2.run_expired(t0 + 100ms);
  q2.add(t0 + 300ms, {}, [&] { fired2.push_back(2); });  // level 0 now
  q2.add(t0 + 299800us, {}, [&] { fired2.push_back(0); });
  EXPECT_EQ(q.run_expired(t0 + 5ms), 5u);
  EXPECT_EQ(fired, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(q2.next_deadline(), t0 + 256ms);  // level 1 cascades first
  EXPECT_EQ(q2.run_expired(t0 + 256ms), 0u);
  EXPECT_EQ(q2.next_deadline(), t0 + 300ms);
  EXPECT_EQ(q2.run_expired(t0 + 300ms), 3u);
  EXPECT_EQ(fired2, (std::vector<int>{0, 1, 2}));
}

TEST(TimerWheel, PeriodicSkipsMissedPeriodsAndSurvivesCascades) {
  TimerQueue q;
  Clock::time_point t0{};
  std::vector<int64_t> at;
  Clock::time_point now = t0;
  TimerId id = q.add(t0 + 700ms, 700ms, [&] { at.push_back(ceil_ms(now)); });
  for (now = t0; now <= t0 + 3500ms; now += 1ms) q.run_expired(now);
  EXPECT_EQ(at, (std::vector<int64_t>{700, 1400, 2100, 2800, 3500}));
  // A long stall: the missed periods collapse into one firing.
  now = t0 + 10'000ms + 300us;
  EXPECT_EQ(q.run_expired(now), 1u);
  // Next: now + interval, rounded up (next_deadline() may first report the
  // moment the timer moves down a level; that fires nothing).
  while (at.size() < 7) {
    now = q.next_deadline();
    ASSERT_LE(now, t0 + 10'701ms);
    q.run_expired(now);
  }
  EXPECT_EQ(at.back(), 10'701);
  EXPECT_TRUE(q.cancel(id));
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerWheel, FarDeadlinesBeyondTheWheelSpan) {
  TimerQueue q;
  Clock::time_point t0{};
  int n = 0;
  const auto far = t0 + std::chrono::hours(24 * 100);  // 100 days > 49.7
  q.add(far, {}, [&] { ++n; });
  q.add(Clock::time_point::max(), {}, [&] { n += 100; });
  Clock::time_point now = t0;
  // Walk in big strides: the wheel must only wake for cascades, never fire
  // early, and fire on time at the end.
  int wakeups = 0;
  while (n == 0 && wakeups < 10000) {
    Clock::time_point next = q.next_deadline();
    ASSERT_GT(next, now);
    ASSERT_LE(next, far);
    now = next;
    q.run_expired(now);
    ++wakeups;
  }
  EXPECT_EQ(n, 1);
  EXPECT_EQ(now, far);
  EXPECT_LT(wakeups, 400) << "too many wake-ups for one far timer";
  EXPECT_EQ(q.size(), 1u);
}

TEST(TimerWheel, ResetFromOwnCallbackReusesTheNode) {
  TimerQueue q;
  Clock::time_point t0{};
  Clock::time_point now = t0;
  int fired = 0;
  TimerId id = 0;
  // A callback with a capture too big for std::function's inline buffer:
  // re-arming must not allocate a new one.
  std::array<char, 64> big{};
  id = q.add(t0 + 1ms, {}, [&, big] {
    (void)big;
    ++fired;
    EXPECT_FALSE(q.cancel(id));  // firing one-shot: not pending
    EXPECT_TRUE(q.reset(id, now + 1ms));
  });
  now += 1ms;
  q.run_expired(now);  // first run sizes the scratch vector
  const size_t mem = q.memory_bytes();
  for (int i = 1; i < 100000; ++i) {
    now += 1ms;
    q.run_expired(now);
  }
  EXPECT_EQ(fired, 100000);
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.memory_bytes(), mem);
  EXPECT_TRUE(q.cancel(id));
  EXPECT_FALSE(q.reset(id, now));  // stale id
  EXPECT_EQ(q.size(), 0u);
}

TEST(TimerWheel, StaleIdsNeverMatchRecycledNodes) {
  TimerQueue q;
  Clock::time_point t0{};
  TimerId a = q.add(t0 + 5ms, {}, [] {});
  EXPECT_TRUE(q.cancel(a));
  TimerId b = q.add(t0 + 5ms, {}, [] {});  // same node, new generation
  EXPECT_NE(a, b);
  EXPECT_FALSE(q.cancel(a));
  EXPECT_FALSE(q.reset(a, t0 + 9ms));
  EXPECT_FALSE(q.cancel(0));
  EXPECT_FALSE(q.cancel(~TimerId{0}));
  EXPECT_TRUE(q.cancel(b));
}

TEST(TimerWheel, CallbackCancelsLaterTimersOfTheSameTick) {
  TimerQueue q;
  Clock::time_point t0{};
  std::vector<int> fired;
  TimerId second = 0;
  q.add(t0 + 3ms, {}, [&] {
    fired.push_back(1);
    EXPECT_TRUE(q.cancel(second));
  });
  second = q.add(t0 + 3ms, {}, [&] { fired.push_back(2); });
  q.add(t0 + 3ms, {}, [&] { fired.push_back(3); });
  EXPECT_EQ(q.run_expired(t0 + 3ms), 2u);
  EXPECT_EQ(fired, (std::vector<int>{1, 3}));
  EXPECT_EQ(q.size(), 0u);
}

// 200k timers, one per "connection": add, cancel half, reset the rest
// (idle-timer pattern), then run the clock and check every survivor fires
// exactly once, never early and at most one tick late.
TEST(TimerWheel, TwoHundredThousandTimersAddCancelReset) {
  constexpr int kN = 200000;
  TimerQueue q;
  Clock::time_point t0{};
  std::mt19937_64 rng(7);
  std::vector<TimerId> ids(kN);
  std::vector<Clock::time_point> due(kN);
  std::vector<int> fired_at(kN, -1);
  std::vector<int> count(kN, 0);
  Clock::time_point now = t0;
  for (int i = 0; i < kN; ++i) {
    due[i] = t0 + std::chrono::microseconds(1000 + rng() % 20'000'000);
    ids[i] = q.add(due[i], {}, [&, i] {
      ++count[i];
      fired_at[i] = static_cast<int>(ceil_ms(now));
    });
  }
  EXPECT_EQ(q.size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; i += 2) ASSERT_TRUE(q.cancel(ids[i]));
  for (int i = 1; i < kN; i += 2) {
    due[i] = t0 + std::chrono::microseconds(1000 + rng() % 30'000'000);
    ASSERT_TRUE(q.reset(ids[i], due[i]));
  }
  EXPECT_EQ(q.size(), static_cast<size_t>(kN / 2));
  size_t total = 0;
  while (q.size() > 0 && now < t0 + 40s) {
    Clock::time_point next = q.next_deadline();
    ASSERT_GT(next, now);
    now = next;  // jump straight to the next event, as the loop does
    total += q.run_expired(now);
  }
  EXPECT_EQ(total, static_cast<size_t>(kN / 2));
  for (int i = 0; i < kN; ++i) {
    if (i % 2 == 0) {
      ASSERT_EQ(count[i], 0) << i;
      continue;
    }
    ASSERT_EQ(count[i], 1) << i;
    // Fired at the first tick boundary at or after the deadline.
    ASSERT_EQ(fired_at[i], ceil_ms(due[i])) << i;
  }
  // Memory: the node slab only (callbacks fit inline).
  const double per_timer = static_cast<double>(q.memory_bytes()) / kN;
  std::printf("timer wheel: %zu-byte nodes, %.1f bytes/timer at %d timers\n",
              TimerQueue::node_bytes(), per_timer, kN);
  EXPECT_LT(per_timer, 80.0);
}

// Random adds/cancels/resets/clock jumps against a reference model: a timer
// fires at the first run_expired() whose tick reaches max(ceil(deadline),
// the tick after the last run), in (tick, deadline, arm order) order.
TEST(TimerWheel, MatchesReferenceModelUnderRandomOperations) {
  TimerQueue q;
  Clock::time_point t0{};
  std::mt19937_64 rng(12345);
  struct Ref {
    int64_t when_ns;
    uint64_t seq;
    int64_t tick;
  };
  std::map<int, Ref> live;         // key: timer number
  std::unordered_map<int, TimerId> ids;
  std::vector<int> fired;
  uint64_t seq = 0;
  int64_t next_tick = 0;  // tick after the last run (TimerQueue's current_)
  Clock::time_point now = t0;
  int counter = 0;
  auto ns_of = [](Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  };
  auto pick_when = [&] {
    const uint64_t r = rng() % 100;
    int64_t off;
    if (r < 5) off = -static_cast<int64_t>(rng() % 5'000'000'000);  // past
    else if (r < 60) off = static_cast<int64_t>(rng() % 300'000'000);  // < 300 ms
    else if (r < 90) off = static_cast<int64_t>(rng() % 60'000'000'000);  // < 60 s
    else off = static_cast<int64_t>(rng() % (int64_t{3} << 43));  // up to ~100 days
    return now + std::chrono::nanoseconds(off);
  };
  for (int step = 0; step < 100000; ++step) {
    const uint64_t op = rng() % 100;
    if (op < 40 || live.empty()) {
      const int k = counter++;
      Clock::time_point w = pick_when();
      ids[k] = q.add(w, {}, [&, k] { fired.push_back(k); });
      const int64_t ns = ns_of(w);
      live[k] = {ns, seq++, std::max(ns / 1000000 + (ns % 1000000 > 0), next_tick)};
    } else if (op < 55) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      ASSERT_TRUE(q.cancel(ids[it->first]));
      live.erase(it);
    } else if (op < 75) {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      Clock::time_point w = pick_when();
      ASSERT_TRUE(q.reset(ids[it->first], w));
      const int64_t ns = ns_of(w);
      it->second = {ns, seq++, std::max(ns / 1000000 + (ns % 1000000 > 0), next_tick)};
    } else {
      const uint64_t r = rng() % 100;
      int64_t adv;
      if (r < 70) adv = static_cast<int64_t>(rng() % 5'000'000);
      else if (r < 95) adv = static_cast<int64_t>(rng() % 2'000'000'000);
      else adv = static_cast<int64_t>(rng() % (int64_t{1} << 42));
      now += std::chrono::nanoseconds(adv);
      const int64_t now_tick = ns_of(now) / 1000000;
      // Expected firing order.
      std::vector<std::pair<std::tuple<int64_t, int64_t, uint64_t>, int>> exp;
      for (auto& [k, r2] : live) {
        if (r2.tick <= now_tick) exp.push_back({{r2.tick, r2.when_ns, r2.seq}, k});
      }
      std::sort(exp.begin(), exp.end());
      fired.clear();
      const Clock::time_point nd = q.next_deadline();
      if (!live.empty()) {
        int64_t min_tick = INT64_MAX;
        for (auto& [k, r2] : live) min_tick = std::min(min_tick, r2.tick);
        ASSERT_LE(ns_of(nd), min_tick * 1000000) << "next_deadline after a deadline";
      }
      ASSERT_EQ(q.run_expired(now), exp.size()) << "step " << step;
      ASSERT_EQ(fired.size(), exp.size());
      for (size_t i = 0; i < exp.size(); ++i) {
        ASSERT_EQ(fired[i], exp[i].second) << "step " << step << " position " << i;
        live.erase(exp[i].second);
      }
      next_tick = std::max(next_tick, now_tick + 1);
    }
    ASSERT_EQ(q.size(), live.size());
  }
}

}  // namespace
}  // namespace sluice
