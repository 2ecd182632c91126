// The simulated world itself (io/sim_world.h): virtual time, pausing,
// refused connections, time jumps, and that a seed replays exactly.
#include <netinet/in.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "core/event_loop.h"
#include "core/net.h"
#include "core/udp_endpoint.h"
#include "io/sim_peer.h"
#include "io/sim_world.h"
#include "tests/sim_scenarios.h"

namespace sluice::simtest {
namespace {

using namespace std::chrono_literals;
using sim::World;

TEST(SimWorld, TimersRunInVirtualTimeWithoutSleeping) {
  World w(1);
  EventLoop loop(w.backend());
  std::vector<std::chrono::milliseconds> fired;
  const auto real_start = std::chrono::steady_clock::now();
  loop.run([&] {
    w.resume();
    for (int s : {30, 1, 10}) {
      loop.run_after(std::chrono::seconds(s), [&, s] {
        fired.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(loop.now() - World::kEpoch));
        if (s == 30) loop.quit();
      });
    }
  });
  const auto real = std::chrono::steady_clock::now() - real_start;
  ASSERT_EQ(fired.size(), 3u);
  // Exactly on time: with nothing else scheduled, the clock jumps to each
  // deadline (rounded up to the 1 ms tick).
  EXPECT_EQ(fired[0], 1000ms);
  EXPECT_EQ(fired[1], 10000ms);
  EXPECT_EQ(fired[2], 30000ms);
  EXPECT_LT(real, 5s) << "40 s of virtual time should take milliseconds";
}

TEST(SimWorld, PausedWorldBlocksInRealTimeUntilWakeup) {
  World w(2);
  auto backend = w.backend();
  w.after(5ms, [] {});
  const auto before = w.now();
  std::thread waker([&] {
    std::this_thread::sleep_for(50ms);
    backend->wakeup();
  });
  const auto real_start = std::chrono::steady_clock::now();
  EXPECT_EQ(backend->wait(std::chrono::milliseconds(1000)), 0);
  waker.join();
  EXPECT_GE(std::chrono::steady_clock::now() - real_start, 40ms);
  EXPECT_EQ(w.now(), before) << "a paused world's clock stands still";
  w.resume();
  EXPECT_EQ(backend->wait(std::chrono::milliseconds(1000)), 1);
  EXPECT_EQ(w.now(), before + 5ms);
}

TEST(SimWorld, ConnectWithNothingListeningIsRefused) {
  World w(3);
  auto backend = w.backend();
  w.resume();
  sim::StreamPeer* p = w.connect(1);
  int err = 0;
  p->on_reset = [&](int e) { err = e; };
  EXPECT_TRUE(p->write("lost"));
  while (backend->wait(std::chrono::milliseconds(100)) > 0) {
  }
  EXPECT_EQ(err, -ECONNREFUSED);
  EXPECT_EQ(p->error(), -ECONNREFUSED);
  EXPECT_FALSE(p->write("more"));
}

TEST(SimWorld, AJumpRunsEverythingDueBeforeWaitReturns) {
  sim::SimFaults f;
  f.jump = 1.0;  // every wait stalls
  f.max_jump = 2000ms;
  World w(4, f);
  auto backend = w.backend();
  w.resume();
  std::vector<int> ran;
  for (int i = 1; i <= 20; ++i) w.after(std::chrono::milliseconds(i * 100), [&ran, i] { ran.push_back(i); });
  const auto start = w.now();
  backend->wait(std::chrono::milliseconds(0));  // a stall even with a zero timeout
  const auto leapt = w.now() - start;
  ASSERT_GT(leapt, 0ms);
  EXPECT_EQ(w.stats().jumps, 1u);
  EXPECT_EQ(w.stalled_between(start, w.now()), leapt);
  // Exactly the events due by the end of the stall ran, in order.
  const size_t due = static_cast<size_t>(std::min<int64_t>(20, leapt / 100ms));
  ASSERT_EQ(ran.size(), due);
  for (size_t i = 0; i < ran.size(); ++i) EXPECT_EQ(ran[i], static_cast<int>(i + 1));
}

// The same seed gives the same run: every counter and the virtual time at
// the end, for every suite (this is what makes a printed seed a replay).
TEST(SimWorld, ASeedReplaysExactly) {
  spdlog::set_level(spdlog::level::warn);
  for (const Suite& s : suites()) {
    for (uint64_t seed = 1; seed <= 25; ++seed) {
      const Outcome a = s.run(seed);
      const Outcome b = s.run(seed);
      SCOPED_TRACE(std::string(s.name) + " seed=" + std::to_string(seed));
      EXPECT_EQ(a.virtual_time, b.virtual_time);
      EXPECT_EQ(a.stats.events, b.stats.events);
      EXPECT_EQ(a.stats.bytes_to_core, b.stats.bytes_to_core);
      EXPECT_EQ(a.stats.bytes_from_core, b.stats.bytes_from_core);
      EXPECT_EQ(a.stats.datagrams_to_core, b.stats.datagrams_to_core);
      EXPECT_EQ(a.stats.datagrams_lost, b.stats.datagrams_lost);
      EXPECT_EQ(a.stats.jumps, b.stats.jumps);
      EXPECT_EQ(a.violations, b.violations);
    }
  }
}

// Two endpoints of the core on one world talk through it (what an rudp
// test needs: both ends in the simulation), with loss and duplication
// applied on the way; the counters add up.
TEST(SimWorld, TwoCoreEndpointsExchangeDatagrams) {
  sim::SimFaults f;
  f.loss = 0.2;
  f.duplicate = 0.2;
  World w(7, f);
  EventLoop loop(w.backend());
  struct Owner final : UdpEndpoint::Owner {
    EventLoop* loop;
    int released = 0;
    std::vector<std::unique_ptr<UdpEndpoint>>* eps;
    void release(UdpEndpoint& ep) override {
      for (auto& p : *eps) {
        if (p.get() == &ep) loop->destroy_later(std::move(p));
      }
      ++released;
    }
  } owner;
  struct Counter final : DatagramHandler {
    std::vector<std::string> got;
    void on_datagram(UdpEndpoint&, const io::Datagram& d) override { got.emplace_back(d.data); }
  } a_handler, b_handler;
  std::vector<std::unique_ptr<UdpEndpoint>> eps;
  owner.loop = &loop;
  owner.eps = &eps;
  const int sent = 200;
  loop.run([&] {
    w.resume();
    eps.push_back(std::make_unique<UdpEndpoint>(loop, bind_udp("127.0.0.1", 0, {}), a_handler, owner));
    eps.push_back(std::make_unique<UdpEndpoint>(loop, bind_udp("127.0.0.1", 0, {}), b_handler, owner));
    ASSERT_EQ(eps[0]->start(), 0);
    ASSERT_EQ(eps[1]->start(), 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(eps[1]->local_port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < sent; ++i) {
      eps[0]->send_to(reinterpret_cast<const sockaddr*>(&to), sizeof to, "d" + std::to_string(i));
    }
    loop.run_after(1s, [&] {
      eps[0]->close();
      eps[1]->close();
    });
    loop.run_after(2s, [&] { loop.quit(); });
  });
  EXPECT_EQ(owner.released, 2);
  EXPECT_TRUE(a_handler.got.empty());
  const sim::SimStats& st = w.stats();
  EXPECT_EQ(st.datagrams_from_core, static_cast<uint64_t>(sent));
  EXPECT_EQ(b_handler.got.size(), st.datagrams_to_core);
  EXPECT_EQ(b_handler.got.size() + st.datagrams_lost,
            static_cast<uint64_t>(sent) + st.datagrams_duplicated);
  EXPECT_GT(st.datagrams_lost, 0u);
  EXPECT_GT(st.datagrams_duplicated, 0u);
  for (const std::string& d : b_handler.got) EXPECT_EQ(d[0], 'd');
}

// Regressions: seeds that failed before a core fix.

// Server::stop()'s deadline aborted connections to peers that had stopped
// reading, dropping output, and the handler heard on_close(kServerStop, 0),
// the same as after a complete flush. Now -ETIMEDOUT
// (Connection::close_for_stop). Before the fix 1483 of seeds 1..2000
// failed; seed 2 was the first.
TEST(SimRegression, StopDeadlineCutIsReportedSeed2) {
  spdlog::set_level(spdlog::level::warn);
  const Outcome o = run_stop_deadline(2);
  EXPECT_TRUE(o.violations.empty()) << o.violations.front();
}

// The same for an idle close still flushing when the next idle check came:
// aborted with output dropped, reported as on_close(kIdle, 0). Now
// -ETIMEDOUT. Before the fix 1551 of seeds 1..2000 failed; seed 1 first.
TEST(SimRegression, IdleAbortWhileFlushingIsReportedSeed1) {
  spdlog::set_level(spdlog::level::warn);
  const Outcome o = run_idle_abort(1);
  EXPECT_TRUE(o.violations.empty()) << o.violations.front();
}

// Server::stop()'s last-resort quit came at twice the deadline: with a
// 10 ms deadline, a connection aborted at the deadline whose back end
// released it later than that (a late on_detached, SimFaults::late_detach)
// was still counted when the loop quit, and its descriptor leaked. The
// quit now waits at least 1 s past the deadline. Seed 451 failed first.
TEST(SimRegression, StopWaitsForLateDetachSeed451) {
  spdlog::set_level(spdlog::level::err);
  const Outcome o = run_stop_deadline(451);
  EXPECT_TRUE(o.violations.empty()) << o.violations.front();
}

}  // namespace
}  // namespace sluice::simtest
