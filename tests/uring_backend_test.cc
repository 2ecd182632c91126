// The io_uring back end, driven through the Backend interface directly. The
// scenarios every back end passes (echo, concurrency, backpressure, reset,
// EOF, detach, wakeup, UDP) run from tests/backend_scenarios.cc on three
// ring set-ups: the default (multishot recv/accept/recvmsg on provided
// buffer rings), every single-shot fallback, and the oldest setup-flag
// tier. This file adds what only io_uring's streams have: feature probing
// and the setup-flag tiers, buffer-ring exhaustion (ENOBUFS) and multishot
// re-arm, short sends, accept back-off and pausing, a ring driven from
// another thread, destruction with operations in flight. Its datagram
// side is uring_datagram_test.cc (same binary).
#include "io/uring.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
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
#include "tests/uring_test_util.h"

namespace sluice::io {
namespace {

using namespace sluice::testing;
using namespace sluice::io::uring_test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

BackendCase uring_case(std::string name, UringTuning t) {
  return {std::move(name), [t]() -> std::unique_ptr<Backend> { return uring(t); }, probe_uring,
          -EEXIST};
}

INSTANTIATE_TEST_SUITE_P(Uring, BackendScenarios,
                         ::testing::Values(uring_case("uring", {}),
                                           uring_case("uring_single_shot", single_shot()),
                                           uring_case("uring_tier4", oldest_tier())),
                         BackendCaseName());

TEST_F(UringBackendTest, ProbeAndSetupFlags) {
  auto plain = make_uring_backend({});
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->name(), "uring");
  auto be = uring();
  ASSERT_NE(be, nullptr);
  const UringInfo& info = be->info();
  std::cout << "uring info: " << info.describe() << "\n";
  RecordProperty("uring_info", info.describe());
  EXPECT_NE(info.sq_entries, 0u);
  EXPECT_FALSE(describe_uring_setup_flags(info.setup_flags).empty());
}

TEST_F(UringBackendTest, ShortSendsAreContinued) {
  StreamServer s(uring());
  ASSERT_TRUE(s.ok());
  constexpr size_t kTotal = 4 << 20;
  const std::string data = pattern(kTotal, 77);
  size_t queued = 0;
  s.lis->setup = [](TestConn& c) {
    c.echo = false;
    int sz = 4096;
    ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  };
  auto queue_more = [&](TestConn& c) {
    const size_t n = std::min<size_t>(512 * 1024, kTotal - queued);
    if (n == 0) return;
    c.queue(std::string_view(data).substr(queued, n));
    queued += n;
  };
  s.lis->after_attach = [&](TestConn& c) {
    queue_more(c);  // the first 512 KiB at once ...
    c.sent_hook = [&](TestConn& cc, size_t) {
      // ... the rest while sends are in flight (swap-again path).
      if (queued < kTotal && cc.output().readable() < 64 * 1024) queue_more(cc);
    };
  };
  std::string got;
  std::atomic<bool> done{false};
  TestThread client([&](std::stop_token st) {
    int fd = tcp_client(s.port, 4096);
    if (fd >= 0) {
      {
        UnblockOnStop unblock(st, fd);
        got = recv_n(fd, kTotal, 8192, 100us);  // slow reader
      }
      ::close(fd);
    }
    done = true;
  });
  EXPECT_TRUE(s.run_until([&] { return done.load(); }, 120s));
  client.join();
  ASSERT_EQ(got.size(), kTotal);
  EXPECT_TRUE(got == data);
  ASSERT_EQ(s.lis->conns.size(), 1u);
  EXPECT_EQ(s.lis->conns[0]->sent_bytes, kTotal);
  const UringStats& st = ur(*s.be).stats();
  EXPECT_GT(st.partial_sends, 0u);
  std::cout << "sends=" << st.sends << " partial=" << st.partial_sends << "\n";
}

TEST_F(UringBackendTest, RingExhaustionTakesEnobufsPath) {
  UringTuning t;
  t.buf_count = 4;  // a tiny provided-buffer ring
  t.buf_size = 4096;
  StreamServer s(uring(t));
  ASSERT_TRUE(s.ok());
  if (!ur(*s.be).info().multishot_recv) {
    GTEST_SKIP() << "no multishot recv here: " << ur(*s.be).info().describe();
  }
  const std::string data = pattern(4 << 20, 11);
  EXPECT_TRUE(s.echo_once(data) == data);
  const UringStats& st = ur(*s.be).stats();
  EXPECT_GT(st.enobufs, 0u);
  std::cout << "enobufs=" << st.enobufs << " recv_arms=" << st.recv_arms << "\n";

  // Many connections at once on the tiny ring.
  constexpr size_t kConns = 20;
  std::atomic<size_t> ok{0}, finished{0};
  {
    std::vector<TestThread> clients;
    for (size_t i = 0; i < kConns; ++i) {
      clients.emplace_back([&, i](std::stop_token st) {
        int fd = tcp_client(s.port);
        if (fd >= 0) {
          {
            UnblockOnStop unblock(st, fd);
            const std::string d = pattern(256 * 1024, 500 + i);
            TestThread w([&] { send_all(fd, d); });
            if (recv_n(fd, d.size()) == d) ++ok;
          }
          ::close(fd);
        }
        ++finished;
      });
    }
    EXPECT_TRUE(s.run_until([&] { return finished.load() == kConns; }, 60s));
  }
  EXPECT_EQ(ok.load(), kConns);
}

TEST_F(UringBackendTest, SingleShotFallbacks) {
  // The forced fallbacks are what they say (the scenarios run on them as
  // BackendScenarios.*/uring_single_shot); backpressure on single-shot recv.
  StreamServer s(uring(single_shot()));
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(ur(*s.be).info().multishot_recv);
  EXPECT_FALSE(ur(*s.be).info().multishot_accept);
  EXPECT_FALSE(ur(*s.be).info().multishot_recvmsg);
  for (size_t n : {size_t{1}, size_t{70000}, size_t{5 << 20}}) {
    const std::string data = pattern(n, n);
    EXPECT_TRUE(s.echo_once(data) == data) << n;
  }
  s.lis->setup = [](TestConn& c) { c.echo = false; };
  int fd = tcp_client(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "abc"));
  ASSERT_TRUE(s.run_until([&] { return s.lis->conns.size() == 4 && s.lis->conns[3]->in_bytes == 3; }));
  TestConn& c = *s.lis->conns[3];
  c.set_reading(false);
  s.run_for(50ms);
  const size_t inputs = c.inputs;
  ASSERT_TRUE(send_all(fd, "defg"));
  s.run_for(100ms);
  EXPECT_EQ(c.inputs, inputs);
  c.set_reading(true);
  EXPECT_TRUE(s.run_until([&] { return c.in_bytes == 7; }));
  EXPECT_EQ(c.got, "abcdefg");
  ::close(fd);
  EXPECT_TRUE(s.run_until([&] { return c.eofs == 1; }));
}

// Every setup-flag tier (as a kernel that rejects the newer flags would
// get): echo, concurrency, UDP echo and detach with ops in flight all
// still work.
TEST_F(UringBackendTest, EverySetupTierWorks) {
  for (unsigned tier = 0; tier < 5; ++tier) {
    SCOPED_TRACE("tier " + std::to_string(tier));
    UringTuning t;
    t.first_setup_tier = tier;
    StreamServer s(uring(t));
    ASSERT_TRUE(s.ok());
    std::cout << "tier " << tier << ": " << ur(*s.be).info().describe() << "\n";
    for (size_t n : {size_t{1}, size_t{(1 << 20) + 3}}) {
      const std::string data = pattern(n, tier * 100 + n);
      EXPECT_TRUE(s.echo_once(data) == data) << n;
    }
    std::atomic<bool> done{false};
    std::atomic<size_t> ok{0};
    TestThread client([&] {
      std::vector<int> fds;
      for (size_t i = 0; i < 50; ++i) fds.push_back(tcp_client(s.port));
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i] >= 0) send_all(fds[i], pattern(8192, i));
      }
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i] >= 0 && recv_n(fds[i], 8192) == pattern(8192, i)) ++ok;
      }
      for (int fd : fds) {
        if (fd >= 0) ::close(fd);
      }
      done = true;
    });
    EXPECT_TRUE(s.run_until([&] { return done.load(); }));
    client.join();
    EXPECT_EQ(ok.load(), 50u);
    // A UDP echo on the same ring.
    {
      uint16_t uport = 0;
      int ufd = udp_local(&uport);
      ASSERT_GE(ufd, 0);
      TestDatagram u(*s.be, ufd);
      ASSERT_EQ(s.be->attach(u), 0);
      std::vector<uint16_t> client_ports(2);
      std::atomic<int> bad{-1};
      TestThread uclient([&] { bad = udp_round_robin_echo(uport, {1, 1400, 65000}, &client_ports, pattern); });
      EXPECT_TRUE(s.run_until([&] { return bad.load() >= 0; }, 60s));
      uclient.join();
      EXPECT_EQ(bad.load(), 0);
      u.do_detach();
      EXPECT_TRUE(s.run_until([&] { return u.detached == 1; }));
      ::close(ufd);
    }
    // A stalled send and a recv in flight, then detach everything.
    s.lis->setup = [](TestConn& c) { c.echo = false; };
    s.lis->after_attach = [](TestConn& c) { c.queue(pattern(16 << 20, 1)); };
    int fd = tcp_client(s.port);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(s.run_until([&] { return s.lis->last()->sent_bytes > 0; }));
    s.shutdown();
    ::close(fd);
  }
}

TEST_F(UringBackendTest, AcceptErrorsBackOffAndRecover) {
  StreamServer s(uring());
  ASSERT_TRUE(s.ok());
  s.run_for(20ms);
  // The kernel takes RLIMIT_NOFILE when an accept SQE is prepared, so
  // pause accepting, lower the limit, then let the back end re-arm.
  s.lis->set_want_read(false);
  s.be->update(*s.lis);
  s.run_for(50ms);
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  int probe = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // lowest free fd
  ASSERT_GE(probe, 0);
  ::close(probe);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(probe);  // no free descriptor left
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  s.lis->set_want_read(true);
  s.be->update(*s.lis);
  const int rc = tcp_connect_fd(client, s.port);  // needs no new descriptor
  const bool got_error = s.run_until([&] { return !s.lis->accept_errors.empty(); }, 5s);
  const size_t errors_before = s.lis->accept_errors.size();
  s.run_for(300ms);
  const size_t errors_in_300ms = s.lis->accept_errors.size() - errors_before;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);  // restored before any ASSERT
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(got_error);
  EXPECT_EQ(s.lis->accept_errors.back(), -EMFILE);
  EXPECT_LE(errors_in_300ms, 12u) << "accept error hot loop";
  EXPECT_GT(ur(*s.be).stats().accept_backoffs, 0u);
  EXPECT_EQ(s.lis->accepts.load(), 0);
  EXPECT_TRUE(s.run_until([&] { return s.lis->accepts.load() == 1; }));
  std::cout << "accept errors=" << s.lis->accept_errors.size()
            << " backoffs=" << ur(*s.be).stats().accept_backoffs << "\n";
  ::close(client);
}

TEST_F(UringBackendTest, ListenerPauseViaWantRead) {
  StreamServer s(uring());
  ASSERT_TRUE(s.ok());
  s.run_for(20ms);
  s.lis->set_want_read(false);
  s.be->update(*s.lis);
  s.run_for(50ms);
  int fd = tcp_client(s.port);
  ASSERT_GE(fd, 0);
  s.run_for(100ms);
  EXPECT_EQ(s.lis->accepts.load(), 0);
  s.lis->set_want_read(true);
  s.be->update(*s.lis);
  EXPECT_TRUE(s.run_until([&] { return s.lis->accepts.load() == 1; }));
  ::close(fd);
}

TEST_F(UringBackendTest, CreatedOnOneThreadDrivenByAnother) {
  std::unique_ptr<UringBackend> be = uring();
  ASSERT_NE(be, nullptr);
  uint16_t port = 0;
  int lfd = tcp_listen_local(&port);
  ASSERT_GE(lfd, 0);
  TestListener lis(*be, lfd);
  std::atomic<bool> attached{false};
  // Like core::Server: attach on this thread, then run the loop elsewhere.
  ASSERT_EQ(be->attach(lis), 0);
  TestThread loop([&](std::stop_token st) {
    // A stop request (also the destructor's, after a failed ASSERT) must
    // wake the unbounded wait. wakeup() is callable from any thread.
    std::stop_callback wake(st, [&] { be->wakeup(); });
    attached = true;
    while (!st.stop_requested()) EXPECT_GE(be->wait(-1ms), 0);
    for (auto& c : lis.conns) c->do_detach();
    be->detach(lis);
    pump(*be, [&] { return lis.detached == 1 && lis.live() == 0; });
  });
  while (!attached.load()) std::this_thread::sleep_for(1ms);
  const std::string data = pattern(1 << 20, 21);
  int fd = tcp_client(port);
  ASSERT_GE(fd, 0);
  {
    TestThread w([&] { send_all(fd, data); });
    EXPECT_TRUE(recv_n(fd, data.size()) == data);
  }
  ::close(fd);
  loop.request_stop();
  loop.join();
  EXPECT_EQ(lis.detached, 1);
  be.reset();  // destroyed off the loop thread
}

TEST_F(UringBackendTest, DestroyWithDetachedChannelsStillDraining) {
  auto s = std::make_unique<StreamServer>(uring());
  ASSERT_TRUE(s->ok());
  s->lis->setup = [](TestConn& c) { c.echo = false; };
  s->lis->after_attach = [](TestConn& c) { c.queue(pattern(16 << 20, 4)); };
  int fd = tcp_client(s->port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(s->run_until([&] { return s->lis->last() && s->lis->last()->sent_bytes > 0; }));
  s->lis->last()->do_detach();
  s->be->detach(*s->lis);
  // No wait(): the destructor cancels and drains, and calls nobody.
  s->be.reset();
  EXPECT_EQ(s->lis->conns[0]->detached, 0);
  EXPECT_EQ(s->lis->detached, 0);
  EXPECT_EQ(s->lis->late_total(), 0);
  ::close(fd);
}

}  // namespace
}  // namespace sluice::io
