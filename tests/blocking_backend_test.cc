// The blocking (thread-per-connection) back end, driven through the Backend
// interface directly. The scenarios every back end passes (echo,
// concurrency, backpressure, reset, EOF, detach, wakeup, UDP) run from
// tests/backend_scenarios.cc; this file adds what only this model has:
// helper threads (their count, how detach and destruction wake them, the
// max_conns cap), the acceptor's back-off, and the bounded queue of a
// datagram receiver thread.
#include "io/blocking.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/backend_harness.h"
#include "tests/backend_harness_channels.h"
#include "tests/backend_harness_net.h"
#include "tests/backend_scenarios.h"
#include "tests/test_thread.h"
#include "tests/test_util.h"

namespace sluice::io {
namespace {

using namespace sluice::testing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Backend> blocking(size_t max_conns = 4096) {
  BackendOptions o;
  o.max_conns = max_conns;
  return make_blocking_backend(o);
}

INSTANTIATE_TEST_SUITE_P(Blocking, BackendScenarios,
                         ::testing::Values(BackendCase{"blocking", [] { return blocking(); }, {},
                                                       -EBUSY}),
                         BackendCaseName());

// A listener channel that only counts on_detached.
struct CountingListener : Channel {
  using Channel::Channel;
  void on_accept(int fd) override { accepted.push_back(fd); }
  void on_detached() override { ++detached; }
  std::vector<int> accepted;
  int detached = 0;
};

TEST(BlockingBackend, Name) { EXPECT_EQ(blocking()->name(), "blocking"); }

TEST(BlockingBackend, AttachErrors) {
  auto b = blocking();
  // A listener that is not listening would make accept fail forever.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  {
    Channel ch(fd, Channel::Kind::kListener);
    EXPECT_EQ(b->attach(ch), -EINVAL);
  }
  ::close(fd);
  {
    Channel bad(-1, Channel::Kind::kStream);
    EXPECT_EQ(b->attach(bad), -EBADF);
  }
  // Attaching twice is refused; the first attachment still works.
  uint16_t port;
  int lfd = tcp_listen_local(&port);
  ASSERT_GE(lfd, 0);
  ASSERT_EQ(::fcntl(lfd, F_SETFL, ::fcntl(lfd, F_GETFL) | O_NONBLOCK), 0);
  CountingListener l(lfd, Channel::Kind::kListener);
  EXPECT_EQ(b->attach(l), 0);
  EXPECT_EQ(::fcntl(lfd, F_GETFL) & O_NONBLOCK, 0) << "attach clears O_NONBLOCK";
  EXPECT_EQ(b->attach(l), -EBUSY);
  b->detach(l);
  b->detach(l);
  EXPECT_TRUE(pump(*b, [&] { return l.detached == 1; }, 10s));
  EXPECT_EQ(b->wait(50ms), 0);
  EXPECT_EQ(l.detached, 1);
  ::close(lfd);
}

TEST(BlockingBackend, MaxConnsCapRefusesExtraConnections) {
  StreamServer s(blocking(4));
  ASSERT_TRUE(s.ok());
  const size_t threads_before = thread_count();
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::atomic<size_t> threads_peak{0};
  TestThread client([&](std::stop_token st) {
    std::vector<int> keep;
    for (int i = 0; i < 4; ++i) {
      int fd = tcp_client(s.port);
      keep.push_back(fd);
      if (fd < 0 || !send_all(fd, "ping") || recv_n(fd, 4) != "ping") ++bad;
    }
    // Over the cap: accepted by the kernel, then closed by the back end.
    std::vector<int> extra;
    for (int i = 0; i < 3; ++i) extra.push_back(tcp_client(s.port));
    for (int fd : extra) {
      if (fd < 0) continue;  // refused outright is fine too
      const int r = recv_result(fd);
      if (r != 0 && r != -ECONNRESET) {
        ++bad;
        ADD_FAILURE() << "over-cap connection was not closed: " << r;
      }
      ::close(fd);
    }
    threads_peak = thread_count();
    if (s.lis->accepts.load() != 4) {
      ++bad;
      ADD_FAILURE() << "on_accept for a refused connection";
    }
    // The served connections keep working.
    for (int fd : keep) {
      if (fd < 0 || !send_all(fd, "again") || recv_n(fd, 5) != "again") ++bad;
    }
    // Freeing a slot lets a new connection in (once the loop has seen the
    // close; until then new ones are still refused).
    ::close(keep.back());
    keep.pop_back();
    bool ok = false;
    const auto deadline = Clock::now() + 20s;
    while (!ok && Clock::now() < deadline && !st.stop_requested()) {
      int fd = tcp_client(s.port);
      if (fd >= 0) {
        ok = send_all(fd, "new") && recv_n(fd, 3) == "new";
        ::close(fd);
      }
      if (!ok) std::this_thread::sleep_for(20ms);
    }
    if (!ok) {
      ++bad;
      ADD_FAILURE() << "a freed slot was not reused";
    }
    for (int fd : keep) ::close(fd);
    done = true;
  });
  EXPECT_TRUE(s.run_until([&] { return done.load() && s.lis->live() == 0; }));
  client.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(s.lis->max_live, 4u);
  // 4 connections x 2 threads, plus the client thread; never one per
  // refused connection.
  EXPECT_LE(threads_peak.load(), threads_before + 4 * 2 + 1);
}

TEST(BlockingBackend, ShortLivedConnectionsLeakNothing) {
  StreamServer s(blocking());
  ASSERT_TRUE(s.ok());
  // Warm up (first connection, first log line ...), then take the baseline.
  EXPECT_EQ(s.echo_once("x"), "x");
  ASSERT_TRUE(s.run_until([&] { return s.lis->live() == 0; }));
  const size_t threads0 = thread_count();
  const size_t fds0 = count_fds();
  constexpr int kThreads = 4, kPer = 500;
  std::atomic<int> finished{0}, bad{0};
  std::vector<TestThread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t](std::stop_token st) {
      for (int i = 0; i < kPer && !st.stop_requested(); ++i) {
        int fd = tcp_client(s.port);
        if (fd < 0) {
          ++bad;
          continue;
        }
        const std::string msg = pattern(16, static_cast<uint64_t>(t * kPer + i));
        if (!send_all(fd, msg) || recv_n(fd, 16) != msg) ++bad;
        if (i % 2) ::shutdown(fd, SHUT_WR);  // half the time: EOF first
        ::close(fd);
      }
      ++finished;
    });
  }
  EXPECT_TRUE(s.run_until(
      [&] {
        return finished.load() == kThreads && s.lis->accepts.load() == kThreads * kPer + 1 &&
               s.lis->live() == 0;
      },
      240s));
  stop_and_join(clients);
  EXPECT_EQ(bad.load(), 0);
  // Everything released before on_detached: counts are back at once.
  EXPECT_EQ(thread_count(), threads0);
  EXPECT_EQ(count_fds(), fds0);
}

TEST(BlockingBackend, AcceptErrorBacksOffAndRecovers) {
  StreamServer s(blocking());
  ASSERT_TRUE(s.ok());
  // Pre-create the client socket, then exhaust descriptors.
  int cfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(cfd, 0);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(highest_fd() + 32);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> fillers;
  for (;;) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    fillers.push_back(fd);
  }
  const int rc = tcp_connect_fd(cfd, s.port);
  const bool got_error = s.run_until([&] { return !s.lis->accept_errors.empty(); }, 10s);
  const size_t n0 = s.lis->accept_errors.size();
  s.run_for(500ms);
  const size_t n1 = s.lis->accept_errors.size();
  for (int fd : fillers) ::close(fd);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);  // restored before any ASSERT
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(got_error);
  EXPECT_EQ(s.lis->accept_errors[0], -EMFILE);
  EXPECT_LE(n1 - n0, 20u) << "acceptor does not back off";
  // (No check that nothing was accepted meanwhile: a sanitizer runtime may
  // briefly open and close a descriptor, leaving a free slot.)
  // Descriptors are back: the pending connection is accepted and served.
  std::atomic<bool> done{false};
  std::string got;
  TestThread client([&](std::stop_token st) {
    {
      UnblockOnStop unblock(st, cfd);
      set_timeouts(cfd, 30s);
      send_all(cfd, "ok");
      got = recv_n(cfd, 2);
    }
    ::close(cfd);
    done = true;
  });
  EXPECT_TRUE(s.run_until([&] { return done.load() && s.lis->live() == 0; }));
  client.join();
  EXPECT_EQ(got, "ok");
  EXPECT_EQ(s.lis->accepts.load(), 1);
}

TEST(BlockingBackend, DestroyWithHelperThreadsRunning) {
  uint16_t port;
  int lfd = tcp_listen_local(&port);
  ASSERT_GE(lfd, 0);
  auto b = blocking();
  CountingListener listener(lfd, Channel::Kind::kListener);
  ASSERT_EQ(b->attach(listener), 0);
  std::vector<int> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(tcp_client(port));
  EXPECT_TRUE(pump(*b, [&] { return listener.accepted.size() == 3; }, 20s));
  std::vector<std::unique_ptr<TestConn>> streams;
  for (int fd : listener.accepted) {
    streams.push_back(std::make_unique<TestConn>(*b, fd));
    EXPECT_EQ(b->attach(*streams.back()), 0);
  }
  // One stream with a writer blocked in send (the client never reads).
  if (!streams.empty()) streams[0]->queue(pattern(32 << 20, 9));
  // Readers are blocked in recv, the acceptor in accept, a writer in send.
  std::this_thread::sleep_for(100ms);
  const auto t0 = Clock::now();
  b.reset();
  EXPECT_LT(Clock::now() - t0, 10s);
  EXPECT_EQ(listener.detached, 0);  // no callbacks from a destroyed back end
  streams.clear();  // channels may outlive their back end (each closes its fd)
  for (int fd : clients) {
    if (fd >= 0) ::close(fd);
  }
  ::close(lfd);
}

// ------------------------------------------------------------ datagrams

TEST(BlockingBackendUdp, AttachChecksSocketType) {
  auto b = blocking();
  int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(tcp, 0);
  {
    Channel ch(tcp, Channel::Kind::kDatagram);
    EXPECT_EQ(b->attach(ch), -EINVAL);
  }
  ::close(tcp);
  // A non-blocking UDP socket is made blocking; attaching twice is refused.
  int fd = udp_local(nullptr);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
  TestDatagram ch(*b, fd);
  EXPECT_EQ(b->attach(ch), 0);
  EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  EXPECT_EQ(b->attach(ch), -EBUSY);
  ch.do_detach();
  EXPECT_TRUE(pump(*b, [&] { return ch.detached == 1; }, 10s));
  ::close(fd);
}

// The receiver thread's queue is bounded: with the loop not running at
// all, it stops at its limit (1024) and the rest stays in the kernel.
TEST(BlockingBackendUdp, ReceiverQueueIsBounded) {
  DatagramServer s(blocking(), 1 << 20);
  ASSERT_TRUE(s.ok());
  s.ch->echo = false;
  int fd = udp_local(nullptr);
  ASSERT_GE(fd, 0);
  constexpr uint32_t kMany = 1500;
  for (uint32_t i = 0; i < kMany; ++i) ASSERT_TRUE(send_to(fd, s.port, numbered(i, 8)));
  std::this_thread::sleep_for(300ms);  // loop idle: the receiver fills up
  const long in_kernel = kernel_rx_queue(s.port);
  if (in_kernel >= 0) {
    EXPECT_GT(in_kernel, 0) << "the receiver's queue is not bounded";
  }
  EXPECT_TRUE(s.run_until([&] { return s.ch->count == kMany; }, 20s));
  ASSERT_EQ(s.ch->got.size(), kMany);
  for (uint32_t i = 0; i < kMany; ++i) {
    if (seq_of(s.ch->got[i].data) != i) {
      ADD_FAILURE() << "datagram " << i << " out of order";
      break;
    }
  }
  ::close(fd);
}

TEST(BlockingBackendUdp, DetachGivesExactlyOneOnDetached) {
  // Receiver blocked in recvfrom, sender idle: detach must wake it
  // (shutdown() does, for UDP too) promptly, and join both threads before
  // on_detached. (Detaching while paused or from inside on_datagram is
  // BackendScenarios.UdpDetachWhilePausedOrFromInsideOnDatagram.)
  const size_t threads0 = thread_count();
  auto b = blocking();
  uint16_t port;
  int fd = udp_local(&port);
  ASSERT_GE(fd, 0);
  TestDatagram ch(*b, fd);
  ASSERT_EQ(b->attach(ch), 0);
  EXPECT_EQ(b->wait(100ms), 0);  // threads are blocked in their calls
  EXPECT_EQ(thread_count(), threads0 + 2);
  const auto t0 = Clock::now();
  ch.do_detach();
  b->detach(ch);  // idempotent
  EXPECT_TRUE(pump(*b, [&] { return ch.detached == 1; }, 10s));
  EXPECT_LT(Clock::now() - t0, 2s) << "shutdown() did not wake recvfrom";
  // Nothing after detach, even with datagrams arriving.
  int c = udp_local(nullptr);
  send_to(c, port, "late");
  EXPECT_EQ(b->wait(100ms), 0);
  EXPECT_EQ(ch.detached, 1);
  EXPECT_EQ(ch.count, 0u);
  EXPECT_EQ(ch.late, 0);
  EXPECT_EQ(thread_count(), threads0) << "threads joined before on_detached";
  ::close(c);
  ::close(fd);
}

TEST(BlockingBackendUdp, DestroyWithThreadsRunning) {
  auto b = blocking();
  int fd = udp_local(nullptr);
  ASSERT_GE(fd, 0);
  auto ch = std::make_unique<TestDatagram>(*b, fd);
  ASSERT_EQ(b->attach(*ch), 0);
  std::this_thread::sleep_for(50ms);  // receiver blocked in recvfrom
  const auto t0 = Clock::now();
  b.reset();
  EXPECT_LT(Clock::now() - t0, 5s);
  EXPECT_EQ(ch->detached, 0);  // no callbacks from a destroyed back end
  ch.reset();
  ::close(fd);
}

}  // namespace
}  // namespace sluice::io
