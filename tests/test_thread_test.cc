// TestThread and its helpers (tests/test_thread.h): a test that fails an
// ASSERT while its threads run must fail, not abort the binary ("terminate
// called without an active exception") nor hang in the join.
#include "tests/test_thread.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <gtest/gtest-spi.h>

namespace sluice::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// EXPECT_FATAL_FAILURE's statement may only touch statics.
std::atomic<bool> g_go{true};
std::atomic<bool> g_body_ended{false};
int g_pair[2] = {-1, -1};
std::atomic<bool> g_reader_ended{false};

// A test body whose ASSERT fails while a flag-driven thread runs.
void assert_fails_with_flag_thread_running() {
  TestThread t = stoppable_thread(
      [] {
        while (g_go) std::this_thread::sleep_for(1ms);
        g_body_ended = true;
      },
      [] { g_go = false; });
  ASSERT_TRUE(false) << "early return";
}

// A test body whose ASSERT fails while a thread is blocked in recv().
void assert_fails_with_reader_blocked() {
  TestThread t([](std::stop_token st) {
    UnblockOnStop unblock(st, g_pair[1]);
    char c;
    ::recv(g_pair[1], &c, 1, 0);  // nobody ever writes
    g_reader_ended = true;
  });
  std::this_thread::sleep_for(20ms);  // the reader is in recv() now
  ASSERT_TRUE(false) << "early return";
}

TEST(TestThread, FailedAssertStopsAndJoinsAFlagDrivenThread) {
  g_go = true;
  g_body_ended = false;
  const auto t0 = Clock::now();
  EXPECT_FATAL_FAILURE(assert_fails_with_flag_thread_running(), "early return");
  EXPECT_TRUE(g_body_ended.load()) << "the thread was not joined";
  EXPECT_LT(Clock::now() - t0, 5s);
}

TEST(TestThread, FailedAssertUnblocksAThreadInRecv) {
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g_pair), 0);
  g_reader_ended = false;
  const auto t0 = Clock::now();
  EXPECT_FATAL_FAILURE(assert_fails_with_reader_blocked(), "early return");
  EXPECT_TRUE(g_reader_ended.load()) << "the thread was not joined";
  EXPECT_LT(Clock::now() - t0, 5s) << "recv() was not woken";
  ::close(g_pair[0]);
  ::close(g_pair[1]);
}

TEST(TestThread, WaitUntilEndsOnPredicateStopOrLimit) {
  std::stop_source src;
  EXPECT_TRUE(wait_until(src.get_token(), [] { return true; }, 1s));
  const auto t0 = Clock::now();
  EXPECT_FALSE(wait_until(src.get_token(), [] { return false; }, 30ms));
  EXPECT_GE(Clock::now() - t0, 30ms);
  src.request_stop();
  const auto t1 = Clock::now();
  EXPECT_FALSE(wait_until(src.get_token(), [] { return false; }, 10s));
  EXPECT_LT(Clock::now() - t1, 1s);
}

TEST(TestThread, StopAndJoinStopsEveryThread) {
  std::atomic<int> ended{0};
  std::vector<TestThread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&](std::stop_token st) {
      while (!st.stop_requested()) std::this_thread::sleep_for(1ms);
      ++ended;
    });
  }
  stop_and_join(threads);
  EXPECT_EQ(ended.load(), 3);
}

}  // namespace
}  // namespace sluice::testing
