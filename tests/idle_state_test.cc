// Idle detection and reconnect backoff logic with an injected clock: no
// sleeping, no sockets.
#include "core/idle_state.h"

#include <algorithm>
#include <vector>

#include <gtest/gtest.h>

#include "core/backoff.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

std::vector<IdleKind> kinds(const IdleState::Fired& f) {
  return {f.kinds.begin(), f.kinds.begin() + static_cast<std::ptrdiff_t>(f.count)};
}

TEST(IdleState, OffWhenAllZero) {
  IdleState s;
  s.start({}, Clock::time_point{});
  EXPECT_EQ(s.next_check(), Clock::time_point::max());
  EXPECT_EQ(s.poll(Clock::time_point{} + 1h).count, 0u);
}

TEST(IdleState, ReaderIdleFiresAfterSilenceAndRepeats) {
  const Clock::time_point t0{};
  IdleState s;
  IdleOptions o;
  o.reader = 150ms;
  s.start(o, t0);
  EXPECT_EQ(s.next_check(), t0 + 150ms);
  // Activity does not move the timer: the check at 150 ms finds the read
  // at 100 ms and re-arms for the remaining time.
  s.on_read(t0 + 100ms);
  EXPECT_EQ(s.poll(t0 + 150ms).count, 0u);
  EXPECT_EQ(s.next_check(), t0 + 250ms);
  // Silent since 100 ms: idle at 250 ms, then every 150 ms while silent.
  EXPECT_EQ(kinds(s.poll(t0 + 250ms)), std::vector<IdleKind>{IdleKind::kReader});
  EXPECT_EQ(s.next_check(), t0 + 400ms);
  EXPECT_EQ(kinds(s.poll(t0 + 400ms)), std::vector<IdleKind>{IdleKind::kReader});
  // A late timer (loop busy) still fires once, not once per missed period.
  EXPECT_EQ(s.poll(t0 + 900ms).count, 1u);
  EXPECT_EQ(s.next_check(), t0 + 1050ms);
}

TEST(IdleState, WriterProgressKeepsWriterAwake) {
  const Clock::time_point t0{};
  IdleState s;
  IdleOptions o;
  o.writer = 100ms;
  s.start(o, t0);
  // A large send the kernel keeps taking: progress every 40 ms.
  Clock::time_point now = t0;
  for (int i = 0; i < 20; ++i) {
    now += 40ms;
    s.on_write(now);
    if (s.next_check() <= now) {
      EXPECT_EQ(s.poll(now).count, 0u) << "writer-idle during progress at step " << i;
    }
  }
  // The peer stops reading: no more progress -> writer-idle 100 ms later.
  const Clock::time_point last = now;
  while (s.next_check() < last + 100ms) EXPECT_EQ(s.poll(s.next_check()).count, 0u);
  EXPECT_EQ(s.next_check(), last + 100ms);
  EXPECT_EQ(kinds(s.poll(last + 100ms)), std::vector<IdleKind>{IdleKind::kWriter});
}

TEST(IdleState, AllIdleNeedsBothSidesQuiet) {
  const Clock::time_point t0{};
  IdleState s;
  IdleOptions o;
  o.reader = 100ms;
  o.writer = 100ms;
  o.all = 60ms;
  s.start(o, t0);
  EXPECT_EQ(s.next_check(), t0 + 60ms);
  s.on_write(t0 + 50ms);  // writes keep all-idle away, not reader-idle
  EXPECT_EQ(s.poll(t0 + 60ms).count, 0u);
  EXPECT_EQ(s.next_check(), t0 + 100ms);
  EXPECT_EQ(kinds(s.poll(t0 + 100ms)), std::vector<IdleKind>{IdleKind::kReader});
  EXPECT_EQ(kinds(s.poll(t0 + 150ms)), (std::vector<IdleKind>{IdleKind::kWriter, IdleKind::kAll}));
}

TEST(IdleState, RestartResetsTheClocks) {
  const Clock::time_point t0{};
  IdleState s;
  IdleOptions o;
  o.reader = 50ms;
  s.start(o, t0);
  s.start(o, t0 + 40ms);
  EXPECT_EQ(s.next_check(), t0 + 90ms);
  EXPECT_EQ(s.poll(t0 + 89ms).count, 0u);
}

TEST(Backoff, GrowsGeometricallyWithJitterUpToTheCap) {
  Backoff b(std::chrono::milliseconds(100), std::chrono::milliseconds(1000), 42);
  const int64_t caps[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (int64_t cap : caps) {
    const auto d = std::chrono::duration_cast<std::chrono::microseconds>(b.next()).count();
    EXPECT_GE(d, cap * 1000 / 2);
    EXPECT_LE(d, cap * 1000);
  }
  EXPECT_EQ(b.attempts(), 7);
  b.reset();
  EXPECT_LE(b.next(), std::chrono::milliseconds(100));
}

TEST(Backoff, JitterSpreadsClientsApart) {
  // Many clients that lost the server at once must not retry in lock-step.
  std::vector<int64_t> first;
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    Backoff b(std::chrono::milliseconds(1000), std::chrono::seconds(30), seed);
    first.push_back(b.next().count());
  }
  std::sort(first.begin(), first.end());
  EXPECT_GT(std::unique(first.begin(), first.end()) - first.begin(), 45);
}

TEST(Backoff, HugeAttemptCountsDoNotOverflow) {
  Backoff b(std::chrono::microseconds(1), std::chrono::hours(1), 1);
  for (int i = 0; i < 200; ++i) {
    auto d = b.next();
    ASSERT_GT(d.count(), 0);
    ASSERT_LE(d, std::chrono::hours(1));
  }
}

}  // namespace
}  // namespace sluice
