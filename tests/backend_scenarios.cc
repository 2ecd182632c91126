// The TCP scenarios of tests/backend_scenarios.h (and the suite's set-up).
// Each was written once per back end before (blocking_backend_test,
// uring_backend_test); the checks here are the union of both versions.
#include "tests/backend_scenarios.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/backend_harness.h"
#include "tests/backend_harness_channels.h"
#include "tests/backend_harness_net.h"
#include "tests/test_thread.h"

namespace sluice::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

}  // namespace

void BackendScenarios::SetUp() {
  if (GetParam().unavailable) {
    const std::string why = GetParam().unavailable();
    if (!why.empty()) GTEST_SKIP() << GetParam().name << " unavailable here: " << why;
  }
  ::signal(SIGPIPE, SIG_IGN);
}

std::unique_ptr<io::Backend> BackendScenarios::make() const {
  auto be = GetParam().make();
  EXPECT_NE(be, nullptr) << GetParam().name << " failed to set up";
  return be;
}

namespace {

// ------------------------------------------------------------ TCP

TEST_P(BackendScenarios, EchoIntegrity1BTo16MiB) {
  StreamServer s(make());
  ASSERT_TRUE(s.ok());
  const std::vector<size_t> sizes = {1,     2,         7,       100,     1000,          4095,
                                     65535, 65536,     65537,   1 << 20, (1 << 20) + 3,
                                     (3 << 20) + 7, 16 << 20};
  size_t expect_total = 0;
  for (size_t n : sizes) expect_total += n;
  std::atomic<bool> done{false};
  TestThread client([&](std::stop_token st) {
    uint64_t seed = 1;
    for (size_t n : sizes) {
      if (st.stop_requested()) break;
      const std::string want = pattern(n, seed++);
      int fd = tcp_client(s.port);
      if (fd < 0) {
        ADD_FAILURE() << "connect: " << fd;
        continue;
      }
      std::string got;
      {
        UnblockOnStop unblock(st, fd);
        TestThread w([&] {
          send_all(fd, want);
          ::shutdown(fd, SHUT_WR);
        });
        // The server echoes, sees EOF once its echo went, and closes.
        got = read_to_eof(fd);
      }
      ::close(fd);
      if (got != want) {
        ADD_FAILURE() << "size " << n << ": got " << got.size() << " bytes back, content "
                      << (got.size() == n ? "differs" : "short");
      }
    }
    done = true;
  });
  EXPECT_TRUE(s.run_until([&] { return done && s.lis->live() == 0; }, 240s));
  client.join();
  EXPECT_EQ(s.lis->accepts.load(), static_cast<int>(sizes.size()));
  size_t in = 0, sent = 0;
  for (const auto& c : s.lis->conns) {
    EXPECT_EQ(c->in_bytes, c->sent_bytes);  // every echoed byte reported once
    EXPECT_EQ(c->eofs, 1);
    EXPECT_EQ(c->errors, 0);
    EXPECT_EQ(c->eof_at_bytes, c->in_bytes);  // on_eof after every on_input
    in += c->in_bytes;
    sent += c->sent_bytes;
  }
  EXPECT_EQ(in, expect_total);
  EXPECT_EQ(sent, expect_total);
}

TEST_P(BackendScenarios, TwoHundredConcurrentConnections) {
  StreamServer s(make());
  ASSERT_TRUE(s.ok());
  constexpr int kThreads = 8, kPer = 25, kConns = kThreads * kPer;
  std::atomic<int> connected{0}, echoed{0}, finished{0}, bad{0};
  std::vector<TestThread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t](std::stop_token st) {
      std::vector<int> fds;
      for (int i = 0; i < kPer; ++i) {
        int fd = tcp_client(s.port);
        if (fd < 0) ++bad;
        fds.push_back(fd);
        ++connected;
      }
      if (!wait_until(st, [&] { return connected.load() >= kConns; }, 60s)) ++bad;
      for (int i = 0; i < kPer; ++i) {
        if (fds[i] >= 0 && !send_all(fds[i], pattern(4096 + i, 1000 + t * kPer + i))) ++bad;
      }
      for (int i = 0; i < kPer; ++i) {
        if (fds[i] < 0) continue;
        const std::string msg = pattern(4096 + i, 1000 + t * kPer + i);
        if (recv_n(fds[i], msg.size()) != msg) ++bad;
        ++echoed;
      }
      // Everyone holds their connections until all 200 have echoed.
      if (!wait_until(st, [&] { return echoed.load() >= kConns; }, 60s)) ++bad;
      for (int fd : fds) {
        if (fd >= 0) ::close(fd);
      }
      ++finished;
    });
  }
  EXPECT_TRUE(s.run_until(
      [&] { return finished.load() == kThreads && s.lis->accepts.load() == kConns &&
                   s.lis->live() == 0; },
      120s));
  stop_and_join(clients);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(s.lis->accepts.load(), kConns);
  EXPECT_EQ(s.lis->max_live, static_cast<size_t>(kConns));  // all open at once
}

TEST_P(BackendScenarios, BackpressureStopsAndResumesInput) {
  // Small socket buffers on both ends, so a paused stream stalls its
  // client quickly.
  StreamServer s(make(), 64 * 1024);
  ASSERT_TRUE(s.ok());
  s.lis->setup = [](TestConn& c) { c.echo = false; };
  const std::string first = pattern(1000, 5);
  const std::string second = pattern(16 << 20, 6);
  int fd = tcp_client(s.port, 0, 64 * 1024);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, first));
  ASSERT_TRUE(s.run_until([&] { return s.lis->last() && s.lis->last()->in_bytes == first.size(); }));
  TestConn& c = *s.lis->last();
  c.set_reading(false);
  s.run_for(100ms);  // a cancel (io_uring) takes effect
  const size_t inputs = c.inputs;

  std::atomic<size_t> client_sent{0};
  TestThread writer([&](std::stop_token st) {
    UnblockOnStop unblock(st, fd);
    send_all(fd, second, &client_sent);
  });
  // Let the client fill every buffer, then check it is stuck.
  s.run_for(700ms);
  const size_t sent1 = client_sent.load();
  s.run_for(500ms);
  const size_t sent2 = client_sent.load();
  EXPECT_EQ(c.inputs, inputs) << "on_input while want_read() is false";
  EXPECT_EQ(sent1, sent2) << "the client kept sending: reading did not stop";
  EXPECT_LT(sent2, 4u << 20) << "too much buffered for a paused stream";

  // Resume: everything arrives, in order.
  c.set_reading(true);
  EXPECT_TRUE(s.run_until([&] { return c.in_bytes == first.size() + second.size(); }, 120s));
  writer.join();
  EXPECT_GT(c.inputs, inputs);
  EXPECT_TRUE(c.got == first + second) << "lost or reordered";

  // Toggle repeatedly while data streams: nothing delivered while off,
  // nothing lost or reordered.
  c.got.clear();
  const std::string third = pattern(2 << 20, 7);
  TestThread writer2([&](std::stop_token st) {
    UnblockOnStop unblock(st, fd);
    send_all(fd, third);
  });
  for (int i = 0; i < 40 && c.got.size() < third.size(); ++i) {
    c.set_reading(i % 2 == 1);
    const size_t before = c.inputs;
    s.run_for(5ms);
    if (!c.want_read()) {
      EXPECT_EQ(c.inputs, before) << "input while paused";
    }
  }
  c.set_reading(true);
  EXPECT_TRUE(s.run_until([&] { return c.got.size() == third.size(); }));
  writer2.join();
  EXPECT_TRUE(c.got == third);
  ::close(fd);
  EXPECT_TRUE(s.run_until([&] { return c.detached == 1; }));
  EXPECT_EQ(c.eofs, 1);
}

TEST_P(BackendScenarios, PeerResetWhileReadingIsAnError) {
  StreamServer s(make());
  ASSERT_TRUE(s.ok());
  s.lis->setup = [](TestConn& c) { c.echo = false; };
  int fd = tcp_client(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "partial request"));
  ASSERT_TRUE(s.run_until([&] { return s.lis->last() && s.lis->last()->in_bytes == 15; }));
  hard_close(fd);
  TestConn& c = *s.lis->last();
  EXPECT_TRUE(s.run_until([&] { return c.detached == 1; }));
  EXPECT_EQ(c.errors, 1);
  EXPECT_EQ(c.last_error, -ECONNRESET);
  EXPECT_EQ(c.eofs, 0);
  EXPECT_EQ(c.got, "partial request");
}

TEST_P(BackendScenarios, PeerResetMidTransferIsAnError) {
  StreamServer s(make());
  ASSERT_TRUE(s.ok());
  s.lis->setup = [](TestConn& c) { c.echo = false; };
  s.lis->after_attach = [](TestConn& c) { c.queue(pattern(32 << 20, 9)); };
  int fd = tcp_client(s.port);
  ASSERT_GE(fd, 0);
  // (Not "until on_sent": the blocking model reports a send() call's worth
  // at once, and a 32 MiB send does not end while nobody reads.)
  ASSERT_TRUE(s.run_until([&] { return s.lis->last() != nullptr; }));
  std::string head;  // the reader's until it sets `read` (TSan found a poll of head.size())
  std::atomic<bool> read{false};
  {
    TestThread reader([&](std::stop_token st) {
      UnblockOnStop unblock(st, fd);
      head = recv_n(fd, 64 * 1024);
      read = true;
    });
    EXPECT_TRUE(s.run_until([&] { return read.load(); }, 30s));
  }
  EXPECT_EQ(head, pattern(32 << 20, 9).substr(0, 64 * 1024));
  hard_close(fd);
  TestConn& c = *s.lis->last();
  EXPECT_TRUE(s.run_until([&] { return c.detached == 1; }));
  EXPECT_EQ(c.errors, 1);
  EXPECT_TRUE(c.last_error == -ECONNRESET || c.last_error == -EPIPE) << c.last_error;
  // The kernel reports a reset once, to whichever call meets it first: when
  // that is a send (the blocking model's writer thread), a recv on another
  // thread then reads 0, so an on_eof may come before the error.
  EXPECT_LE(c.eofs, 1);
  s.run_for(50ms);
  EXPECT_EQ(c.late, 0);
  EXPECT_EQ(c.detached, 1);
}

TEST_P(BackendScenarios, EofAfterAllInput) {
  StreamServer s(make());
  ASSERT_TRUE(s.ok());
  s.lis->setup = [](TestConn& c) { c.auto_detach = false; };
  int fd = tcp_client(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "hello, world"));
  ::shutdown(fd, SHUT_WR);
  ASSERT_TRUE(s.run_until([&] {
    return s.lis->last() && s.lis->last()->eofs == 1 && s.lis->last()->sent_bytes == 12;
  }));
  TestConn& c = *s.lis->last();
  EXPECT_EQ(c.eof_at_bytes, 12u);  // on_eof after every on_input
  EXPECT_EQ(c.errors, 0);
  // Half-close: the echo still went out.
  EXPECT_EQ(recv_n(fd, 12), "hello, world");
  s.run_for(50ms);
  EXPECT_EQ(c.eofs, 1);
  c.do_detach();
  EXPECT_TRUE(s.run_until([&] { return c.detached == 1; }));
  // The server closed: the client sees EOF.
  char b;
  EXPECT_EQ(::recv(fd, &b, 1, 0), 0);
  ::close(fd);
}

TEST_P(BackendScenarios, DetachWithOpsInFlight) {
  // The client sends and never reads: the echo's send stalls on a full
  // socket and reading pauses for backpressure (a blocking writer thread
  // parked in send(), its reader on its condvar; io_uring's send SQE in
  // the kernel). Detach must end both, with exactly one on_detached.
  StreamServer s(make());
  ASSERT_TRUE(s.ok());
  std::atomic<bool> client_done{false};
  TestThread client([&](std::stop_token st) {
    int fd = tcp_client(s.port);
    if (fd >= 0) {
      {
        UnblockOnStop unblock(st, fd);
        const std::string chunk = pattern(1 << 20, 3);
        for (int i = 0; i < 256 && !st.stop_requested(); ++i) {
          if (!send_all(fd, chunk)) break;  // fails once the server is gone
        }
      }
      ::close(fd);
    }
    client_done = true;
  });
  ASSERT_TRUE(s.run_until([&] { return s.lis->last() && s.lis->last()->bp_paused; }));
  s.run_for(200ms);  // the send blocks: the kernel's buffers are full
  TestConn& c = *s.lis->last();
  ASSERT_GT(c.sent_bytes, 0u);
  const size_t inputs = c.inputs;
  c.do_detach();
  s.be->detach(c);  // idempotent
  EXPECT_TRUE(s.run_until([&] { return c.detached == 1; }, 30s));
  s.run_for(300ms);
  EXPECT_EQ(c.detached, 1);
  EXPECT_EQ(c.inputs, inputs);
  EXPECT_TRUE(s.run_until([&] { return client_done.load(); }, 30s)) << "the client still sends";

  // A listener with its accept in flight detaches the same way.
  s.be->detach(*s.lis);
  s.be->detach(*s.lis);
  EXPECT_TRUE(s.run_until([&] { return s.lis->detached == 1; }, 10s));
  // Whatever peers do now, no more callbacks.
  int fd2 = tcp_client(s.port);  // lands in the backlog, never accepted
  if (fd2 >= 0) send_all(fd2, "more");
  s.run_for(200ms);
  if (fd2 >= 0) ::close(fd2);
  s.run_for(100ms);
  EXPECT_EQ(s.lis->detached, 1);
  EXPECT_EQ(s.lis->accepts.load(), 1);
  EXPECT_EQ(s.lis->late_total(), 0);
}

TEST_P(BackendScenarios, DetachFromInsideCallbackAndBeforeFirstWait) {
  StreamServer s(make());
  ASSERT_TRUE(s.ok());
  // Detach from inside on_input, with an echo just queued.
  s.lis->setup = [](TestConn& c) {
    c.echo = false;
    c.input_hook = [](TestConn& cc, size_t) {
      cc.queue("bye");
      cc.do_detach();
    };
  };
  int fd = tcp_client(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "x"));
  ASSERT_TRUE(s.run_until([&] { return s.lis->last() && s.lis->last()->detached == 1; }));
  send_all(fd, "y");
  s.run_for(50ms);
  EXPECT_EQ(s.lis->last()->inputs, 1u);
  EXPECT_EQ(s.lis->late_total(), 0);
  ::close(fd);

  // Attach then detach with no wait() in between; a second attach of an
  // attached channel is refused.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  TestConn quick(*s.be, sv[0]);
  ASSERT_EQ(s.be->attach(quick), 0);
  if (GetParam().attach_twice != 0) {
    EXPECT_EQ(s.be->attach(quick), GetParam().attach_twice) << "attached twice";
  }
  quick.do_detach();
  EXPECT_TRUE(s.run_until([&] { return quick.detached == 1; }));
  s.run_for(20ms);
  EXPECT_EQ(quick.detached, 1);
  EXPECT_EQ(quick.late, 0);
  ::close(sv[1]);
}

TEST_P(BackendScenarios, WakeupFromAnotherThread) {
  StreamServer s(make());
  ASSERT_TRUE(s.ok());
  io::Backend& be = *s.be;
  s.run_for(20ms);  // settle: accept armed, wake read submitted
  const bool blocks = GetParam().waits_block;
  // Nothing to do: a timed wait times out.
  auto t0 = Clock::now();
  if (blocks) {
    EXPECT_EQ(be.wait(50ms), 0);
    EXPECT_GE(Clock::now() - t0, 45ms);
  }
  // A wakeup before wait() makes it return at once.
  be.wakeup();
  t0 = Clock::now();
  EXPECT_GE(be.wait(-1ms), 0);
  EXPECT_LT(Clock::now() - t0, 1s);
  // A wakeup from another thread ends an unbounded wait.
  for (int round = 0; round < 10; ++round) {
    TestThread waker([&] {
      std::this_thread::sleep_for(20ms);
      be.wakeup();
    });
    t0 = Clock::now();
    EXPECT_GE(be.wait(-1ms), 0);
    const auto dt = Clock::now() - t0;
    EXPECT_LT(dt, 5s);
    if (blocks) {
      EXPECT_GE(dt, 10ms) << "round " << round << ": returned before the wakeup";
    }
  }
  // A storm of wakeups from several threads is coalesced; later ones work.
  {
    std::vector<TestThread> storm;
    for (int i = 0; i < 4; ++i) {
      storm.emplace_back([&] {
        for (int j = 0; j < 1000; ++j) be.wakeup();
      });
    }
  }
  EXPECT_GE(be.wait(-1ms), 0);
  s.run_for(20ms);
  TestThread waker([&] {
    std::this_thread::sleep_for(30ms);
    be.wakeup();
  });
  t0 = Clock::now();
  EXPECT_GE(be.wait(-1ms), 0);
  EXPECT_LT(Clock::now() - t0, 5s);
}

}  // namespace
}  // namespace sluice::testing
