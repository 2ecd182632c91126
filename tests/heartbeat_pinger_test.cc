// The Pinger's (heartbeat_client's engine) reconnect policy and stop
// handling, on the default back end, over 127.0.0.1:
//  * against servers that accept and then fail every connection (close at
//    once, reset with SO_LINGER 0, answer garbage) and a UDP server that
//    answers garbage, the reconnect delays grow to the cap: checked on the
//    delays the sessions report and on what the fake server sees;
//  * a connection that proved healthy still resets the backoff, so the
//    reconnect after a real server restart starts from the minimum;
//  * when the end's wait for the back end to release the sockets gives up,
//    run() leaks what is still held instead of freeing it under the back
//    end;
//  * stop() sticks whenever it comes: before run(), during its setup
//    (which it cuts short), during the run.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "codec/heartbeat.h"
#include "core/net.h"
#include "core/server.h"
#include "servers/heartbeat_pinger.h"
#include "servers/heartbeat_service.h"
#include "tests/test_thread.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
namespace hb = codec::heartbeat;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

// Per-connection log lines would drown the test output.
const bool kQuiet = (spdlog::set_level(spdlog::level::err), true);

constexpr auto kBackoffMin = 10ms;
constexpr auto kBackoffMax = 160ms;

// A raw-socket TCP server on its own thread that fails every connection
// it accepts in one way, and records when it accepted each.
class FakeTcpServer {
 public:
  enum class Mode { kClose, kReset, kGarbage };

  explicit FakeTcpServer(Mode mode, uint16_t port = 0) : mode_(mode) {
    ListenOptions lo;
    lo.reuse_addr = true;
    fd_ = listen_tcp("127.0.0.1", port, lo);
    if (fd_ >= 0) port_ = local_port(fd_);
    thread_ = testing::TestThread([this] { serve(); });
  }
  ~FakeTcpServer() { stop(); }

  void stop() {
    if (!thread_.joinable()) return;
    done_ = true;
    thread_.join();
    for (int fd : open_) ::close(fd);
    open_.clear();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  uint16_t port() const { return port_; }
  std::vector<Clock::time_point> accepts() {
    std::lock_guard<std::mutex> lock(mu_);
    return accepts_;
  }

 private:
  void serve() {
    while (!done_ && fd_ >= 0) {
      std::vector<pollfd> fds{{fd_, POLLIN, 0}};
      for (int fd : open_) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 10) <= 0) continue;
      // Garbage connections stay open until the client gives them up.
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        char buf[256];
        if (::recv(fds[i].fd, buf, sizeof buf, MSG_DONTWAIT) > 0) continue;
        ::close(fds[i].fd);
        std::erase(open_, fds[i].fd);
      }
      if (fds[0].revents == 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      {
        std::lock_guard<std::mutex> lock(mu_);
        accepts_.push_back(Clock::now());
      }
      if (mode_ == Mode::kReset) {
        const linger l{1, 0};
        ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      if (mode_ == Mode::kGarbage) {
        // A well-framed message of an unknown type: a protocol error.
        const std::string junk = hb::frame(std::string("\x07garbage", 8));
        if (::send(c, junk.data(), junk.size(), MSG_NOSIGNAL) > 0) {
          open_.push_back(c);
          continue;
        }
      }
      ::close(c);
    }
  }

  const Mode mode_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> done_{false};
  testing::TestThread thread_;  // joined by stop(), which the destructor calls
  std::vector<int> open_;  // serve() thread only
  std::mutex mu_;
  std::vector<Clock::time_point> accepts_;
};

// Reconnect delays reported by the sessions (on_retry), thread-safe.
class Delays {
 public:
  void hook(servers::PingerOptions& o) {
    o.on_retry = [this](size_t, std::chrono::nanoseconds d) {
      std::lock_guard<std::mutex> lock(mu_);
      delays_.push_back(duration_cast<milliseconds>(d));
    };
  }
  std::vector<milliseconds> get() {
    std::lock_guard<std::mutex> lock(mu_);
    return delays_;
  }

 private:
  std::mutex mu_;
  std::vector<milliseconds> delays_;
};

servers::PingerOptions options(const std::string& proto, uint16_t port) {
  servers::PingerOptions o;
  o.proto = proto;
  o.port = port;
  o.conns = 1;
  o.interval = 50ms;
  o.misses = 3;
  o.duration = 1500ms;
  o.backoff_initial = kBackoffMin;
  o.backoff_max = kBackoffMax;
  o.connect_timeout = 500ms;
  return o;
}

std::string show(const std::vector<milliseconds>& v) {
  std::string s;
  for (auto d : v) s += std::to_string(d.count()) + " ";
  return s;
}

// Delay n (0-based) of an uninterrupted failure streak lies in
// [c/2, c], c = min(max, min x 2^n); the cap is reached at n = 4 here.
void expect_grows_to_cap(const std::vector<milliseconds>& d, const std::string& what) {
  SCOPED_TRACE(what + " delays (ms): " + show(d));
  ASSERT_GE(d.size(), 6u) << "the session stopped retrying";
  // 1.5 s hold at most 5 ramp delays (>= 155 ms together) and ~17 at the cap.
  EXPECT_LE(d.size(), 25u) << "reconnecting far faster than the backoff allows";
  for (size_t i = 0; i < d.size(); ++i) {
    const auto ceiling = std::min(kBackoffMax, kBackoffMin * (1 << std::min<size_t>(i, 8)));
    if (d[i] < ceiling / 2 - 1ms || d[i] > ceiling + 1ms) {
      ADD_FAILURE() << "delay " << i << " is " << d[i].count() << " ms, want ["
                    << (ceiling / 2).count() << ", " << ceiling.count() << "] ms";
      return;  // one report is enough
    }
  }
}

class FailingServer : public ::testing::TestWithParam<FakeTcpServer::Mode> {};

TEST_P(FailingServer, TcpReconnectDelaysGrowToTheCap) {
  FakeTcpServer server(GetParam());
  ASSERT_NE(server.port(), 0);
  servers::PingerOptions o = options("tcp", server.port());
  Delays delays;
  delays.hook(o);
  servers::Pinger pinger(o);
  servers::PingerReport r;
  std::string err;
  ASSERT_EQ(pinger.run(&r, &err), 0) << err;
  server.stop();
  expect_grows_to_cap(delays.get(), "tcp");
  // What the server saw: few connections, the last ones spaced by the
  // capped delay (>= max/2 each; the slack covers a late poll wake-up).
  const auto t = server.accepts();
  std::printf("[fake tcp server] %zu accepts in 1.5 s, %s\n", t.size(), r.json().c_str());
  ASSERT_GE(t.size(), 5u);
  EXPECT_LE(t.size(), 26u);
  EXPECT_GE(t.back() - t[t.size() - 5], 4 * (kBackoffMax / 2) - 40ms);
  EXPECT_EQ(r.pongs_received, 0u);
}

INSTANTIATE_TEST_SUITE_P(Modes, FailingServer,
                         ::testing::Values(FakeTcpServer::Mode::kClose,
                                           FakeTcpServer::Mode::kReset,
                                           FakeTcpServer::Mode::kGarbage),
                         [](const auto& info) {
                           switch (info.param) {
                             case FakeTcpServer::Mode::kClose: return std::string("AcceptThenClose");
                             case FakeTcpServer::Mode::kReset: return std::string("Reset");
                             case FakeTcpServer::Mode::kGarbage: return std::string("Garbage");
                           }
                           return std::string("?");
                         });

// A UDP server that answers every datagram with garbage: not a PONG, so
// the session must still see a silent server and back off.
TEST(FailingUdpServer, GarbageAnswersDoNotKeepASessionAliveAndDelaysGrow) {
  const int fd = bind_udp("127.0.0.1", 0, {});
  ASSERT_GE(fd, 0);
  const uint16_t port = local_port(fd);
  std::atomic<bool> done{false};
  testing::TestThread server = testing::stoppable_thread([&] {
    while (!done) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      char buf[2048];
      sockaddr_storage from;
      socklen_t len = sizeof from;
      if (::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len) < 0) continue;
      ::sendto(fd, "\x07garbage", 8, 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }, [&] { done = true; });
  servers::PingerOptions o = options("udp", port);
  o.interval = 20ms;
  o.misses = 2;  // 40 ms of silence, then a fresh socket after the delay
  Delays delays;
  delays.hook(o);
  servers::Pinger pinger(o);
  servers::PingerReport r;
  std::string err;
  const int rc = pinger.run(&r, &err);
  done = true;
  server.join();
  ::close(fd);
  ASSERT_EQ(rc, 0) << err;
  const auto d = delays.get();
  SCOPED_TRACE("udp delays (ms): " + show(d));
  // 1.5 s / (40 ms silence + delay): at least 6 retries even when loaded.
  ASSERT_GE(d.size(), 6u) << "garbage kept the session from giving the server up";
  EXPECT_GE(d.back(), kBackoffMax / 2 - 1ms);
  EXPECT_EQ(r.reconnects, 0u);
  EXPECT_EQ(r.pongs_received, 0u);
}

// A real heartbeat server in process (the default back end).
class RealServer {
 public:
  explicit RealServer(uint16_t port) : handler_(hopts()) {
    ServerOptions o;
    o.port = port;
    o.idle = hopts().idle();
    o.stop_deadline = 200ms;
    server_ = std::make_unique<Server>(o, handler_, hb::make_tcp_codec());
    std::string err;
    rc_ = server_->start(&err);
    if (rc_ < 0) std::fprintf(stderr, "server: %s\n", err.c_str());
  }
  int rc() const { return rc_; }
  uint16_t port() const { return server_->port(); }
  void stop() { server_->stop(); }
  uint64_t joins() { return handler_.counters().joins.load(); }

 private:
  static servers::HeartbeatOptions hopts() {
    servers::HeartbeatOptions h;
    h.interval = 50ms;
    h.misses = 3;
    return h;
  }
  servers::HeartbeatTcpHandler handler_;
  std::unique_ptr<Server> server_;
  int rc_ = -1;
};

// Failures grow the backoff; a connection that then proves healthy (PONGs
// for a while) resets it, so losing that connection reconnects after the
// minimum delay again.
TEST(HealthyConnection, ResetsTheBackoff) {
  auto fake = std::make_unique<FakeTcpServer>(FakeTcpServer::Mode::kClose);
  const uint16_t port = fake->port();
  ASSERT_NE(port, 0);
  servers::PingerOptions o = options("tcp", port);
  o.backoff_max = 320ms;
  o.duration = 3000ms;
  Delays delays;
  delays.hook(o);
  servers::Pinger pinger(o);
  servers::PingerReport r;
  std::string err;
  int rc = 1;
  // A failed ASSERT stops the pinger before the join.
  testing::TestThread runner =
      testing::stoppable_thread([&] { rc = pinger.run(&r, &err); }, [&] { pinger.stop(); });
  std::this_thread::sleep_for(500ms);  // 10+20+40+80+160: the streak nears the cap
  fake->stop();
  fake.reset();
  const size_t failures = delays.get().size();
  RealServer real(port);
  ASSERT_EQ(real.rc(), 0);
  // The pending delay (<= 320 ms), the connect, then PONGs for a while.
  for (int i = 0; i < 150 && real.joins() == 0; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(300ms);
  const size_t before_drop = delays.get().size();
  real.stop();  // closes the healthy connection
  for (int i = 0; i < 100 && delays.get().size() == before_drop; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  pinger.stop();
  runner.join();
  ASSERT_EQ(rc, 0) << err;
  const auto d = delays.get();
  SCOPED_TRACE("delays (ms): " + show(d));
  ASSERT_GE(failures, 4u);
  EXPECT_GE(*std::max_element(d.begin(), d.begin() + failures), 4 * kBackoffMin)
      << "the failures never grew the backoff";
  ASSERT_GT(d.size(), before_drop) << "no reconnect was scheduled after the drop";
  EXPECT_LE(d[before_drop], kBackoffMin + 1ms) << "a healthy connection must reset the backoff";
  EXPECT_GT(r.pongs_received, 3u) << r.json();
}

// stop() must stick whenever it comes; each run is told to last 5 s.
servers::PingerOptions stop_options() {
  servers::PingerOptions o = options("udp", 9);  // discard: nothing answers
  o.duration = 5000ms;
  return o;
}

TEST(Stop, BeforeRunIsNotLost) {
  servers::Pinger pinger(stop_options());
  pinger.stop();
  const auto t0 = Clock::now();
  servers::PingerReport r;
  std::string err;
  ASSERT_EQ(pinger.run(&r, &err), 0) << err;
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST(Stop, DuringSetupIsNotLost) {
  raise_fd_limit();
  servers::PingerOptions o = stop_options();
  o.conns = 2000;  // the setup (2000 sockets) takes longer than the 1 ms below
  servers::Pinger pinger(o);
  servers::PingerReport r;
  std::string err;
  int rc = 1;
  const auto t0 = Clock::now();
  testing::TestThread runner =
      testing::stoppable_thread([&] { rc = pinger.run(&r, &err); }, [&] { pinger.stop(); });
  std::this_thread::sleep_for(1ms);
  pinger.stop();
  runner.join();
  ASSERT_EQ(rc, 0) << err;
  EXPECT_LT(Clock::now() - t0, 2s);
}

TEST(Stop, DuringTheRunEndsIt) {
  servers::Pinger pinger(stop_options());
  servers::PingerReport r;
  std::string err;
  int rc = 1;
  const auto t0 = Clock::now();
  testing::TestThread runner =
      testing::stoppable_thread([&] { rc = pinger.run(&r, &err); }, [&] { pinger.stop(); });
  std::this_thread::sleep_for(200ms);
  pinger.stop();
  runner.join();
  ASSERT_EQ(rc, 0) << err;
  EXPECT_LT(Clock::now() - t0, 2s);
  EXPECT_GT(r.pings_sent, 0u);
}

// release_wait 0: the wait gives up at once, while the back end still
// holds the aborted connections (the blocking one releases them from its
// next wait(), after its helper threads end). Freeing them then broke the
// io/backend.h contract: it logged "channel destroyed while attached" and
// had to abandon them.
TEST(Finish, GivingUpTheReleaseWaitNeverFreesWhatTheBackEndHolds) {
  if (testing::kSanitized) GTEST_SKIP() << "leaks on purpose (LeakSanitizer)";
  const std::string io = "blocking";
  RealServer real(0);
  ASSERT_EQ(real.rc(), 0);
  servers::PingerOptions o = options("tcp", real.port());
  o.io = io;
  o.conns = 4;
  o.duration = 300ms;
  o.release_wait = 0ms;
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log));
  capture->set_level(spdlog::level::warn);
  spdlog::set_default_logger(capture);
  servers::PingerReport r;
  std::string err;
  int rc = 1;
  {
    servers::Pinger pinger(o);
    rc = pinger.run(&r, &err);
  }
  spdlog::set_default_logger(previous);
  real.stop();
  ASSERT_EQ(rc, 0) << err;
  SCOPED_TRACE(io + " log:\n" + log.str());
  EXPECT_GT(r.pongs_received, 0u) << r.json();
  EXPECT_GT(r.unreleased, 0u) << "released at once: the give-up path was not exercised";
  EXPECT_EQ(log.str().find("destroyed while attached"), std::string::npos);
  EXPECT_NE(log.str().find("leaking them"), std::string::npos);
}

}  // namespace
}  // namespace sluice
