// Outbound TCP (Connector + Client) and TCP options, on every registered
// back end: the connect never blocks the loop, the connected socket is
// adopted as a Connection served by the loop's back end, failures and
// timeouts come back as -errno, and TcpOptions reach both ends.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "tests/backend_params.h"
#include "core/client.h"
#include "core/connector.h"
#include "core/event_loop.h"
#include "core/server.h"
#include "io/registry.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

int get_int(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, level, name, &v, &len) < 0) return -1;
  return v;
}

struct SockOpts {
  int nodelay, keepalive, keepidle, keepintvl, keepcnt, user_timeout;
};

SockOpts read_opts(int fd) {
  return {get_int(fd, IPPROTO_TCP, TCP_NODELAY),  get_int(fd, SOL_SOCKET, SO_KEEPALIVE),
          get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), get_int(fd, IPPROTO_TCP, TCP_KEEPINTVL),
          get_int(fd, IPPROTO_TCP, TCP_KEEPCNT),  get_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT)};
}

TcpOptions custom_tcp() {
  TcpOptions o;
  o.no_delay = true;
  o.keep_alive = true;
  o.keep_idle_s = 7;
  o.keep_interval_s = 3;
  o.keep_count = 4;
  o.user_timeout = 1234ms;
  return o;
}

void expect_custom(const SockOpts& s) {
  EXPECT_NE(s.nodelay, 0);
  EXPECT_NE(s.keepalive, 0);
  EXPECT_EQ(s.keepidle, 7);
  EXPECT_EQ(s.keepintvl, 3);
  EXPECT_EQ(s.keepcnt, 4);
  EXPECT_EQ(s.user_timeout, 1234);
}

// Server side: echoes and records the accepted socket's options.
class EchoRecorder final : public Handler {
 public:
  void on_open(Connection& conn) override {
    std::lock_guard<std::mutex> lock(mu);
    accepted = read_opts(conn.fd());
  }
  void on_message(Connection& conn, std::string_view data) override { conn.send(data); }
  std::mutex mu;
  SockOpts accepted{};
};

// Client side: sends a greeting on open, collects the echo.
class Greeter final : public Handler {
 public:
  void on_open(Connection& conn) override {
    opts = read_opts(conn.fd());
    conn.send("hello through the loop");
  }
  void on_message(Connection& conn, std::string_view data) override {
    got.append(data);
    if (got.size() >= 22) conn.close();
  }
  void on_close(Connection&, CloseReason, int) override { closed = true; }
  std::string got;
  SockOpts opts{};
  bool closed = false;
};

class ClientTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
    std::string err;
    loop_ = EventLoop::create(GetParam(), {}, &err);
    ASSERT_TRUE(loop_) << err;
  }
  void TearDown() override {
    clients_.clear();
    loop_.reset();
  }

  // Runs the loop on this thread until done() or the limit.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    bool ok = false;
    const auto end = Clock::now() + limit;
    TimerId t = loop_->run_every(1ms, [&] {
      if (done()) {
        ok = true;
        loop_->quit();
      } else if (Clock::now() > end) {
        loop_->quit();
      }
    });
    loop_->run();
    loop_->cancel(t);
    return ok;
  }

  Connector connector_;
  std::unique_ptr<EventLoop> loop_;
  std::vector<std::unique_ptr<Client>> clients_;
};

TEST_P(ClientTest, ConnectsEchoesAndAppliesTcpOptionsOnBothEnds) {
  EchoRecorder server_handler;
  ServerOptions so;
  so.io = GetParam();
  so.tcp = custom_tcp();
  Server server(so, server_handler);
  std::string err;
  ASSERT_EQ(server.start(&err), 0) << err;

  Greeter greeter;
  ClientOptions co;
  co.port = server.port();
  co.tcp = custom_tcp();
  auto& client = *clients_.emplace_back(
      std::make_unique<Client>(*loop_, connector_, greeter, nullptr, co));
  int result = 1;
  ASSERT_TRUE(client.connect([&](int rc) { result = rc; }));
  EXPECT_FALSE(client.connect([](int) {}));  // one attempt at a time
  ASSERT_TRUE(run_until([&] { return greeter.closed && client.live() == 0; }));
  EXPECT_EQ(result, 0);
  EXPECT_EQ(greeter.got, "hello through the loop");
  expect_custom(greeter.opts);
  std::lock_guard<std::mutex> lock(server_handler.mu);
  expect_custom(server_handler.accepted);
}

TEST_P(ClientTest, RefusedConnectIsReported) {
  // A port nobody listens on: bind one, close it.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const uint16_t port = local_port(fd);
  ::close(fd);
  Greeter greeter;
  ClientOptions co;
  co.port = port;
  auto& client = *clients_.emplace_back(
      std::make_unique<Client>(*loop_, connector_, greeter, nullptr, co));
  int result = 1;
  client.connect([&](int rc) { result = rc; });
  ASSERT_TRUE(run_until([&] { return result != 1; }));
  EXPECT_EQ(result, -ECONNREFUSED);
  EXPECT_EQ(client.live(), 0u);
}

// A listener whose accept queue is full drops further SYNs, so a connect
// to it hangs: the Client must time out while the loop keeps running.
TEST_P(ClientTest, ConnectTimeoutIsBoundedAndNeverBlocksTheLoop) {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lfd, 0), 0);
  const uint16_t port = local_port(lfd);
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    int f = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in to = a;
    to.sin_port = htons(port);
    ::connect(f, reinterpret_cast<sockaddr*>(&to), sizeof to);
    fillers.push_back(f);
  }
  std::this_thread::sleep_for(50ms);

  Greeter greeter;
  ClientOptions co;
  co.port = port;
  co.connect_timeout = 200ms;
  auto& client = *clients_.emplace_back(
      std::make_unique<Client>(*loop_, connector_, greeter, nullptr, co));
  int result = 1;
  int ticks = 0;
  loop_->run_every(10ms, [&] { ++ticks; });
  const auto t0 = Clock::now();
  Clock::duration took{};
  client.connect([&](int rc) {
    result = rc;
    took = Clock::now() - t0;
  });
  ASSERT_TRUE(run_until([&] { return result != 1; }, 3s));
  EXPECT_EQ(result, -ETIMEDOUT);
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 1000ms);
  EXPECT_GE(ticks, 10) << "the loop did not run its timers while connecting";
  for (int f : fillers) ::close(f);
  ::close(lfd);
}

TEST_P(ClientTest, CancelledAttemptNeverCallsBack) {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lfd, 16), 0);
  Greeter greeter;
  ClientOptions co;
  co.port = local_port(lfd);
  bool called = false;
  {
    Client client(*loop_, connector_, greeter, nullptr, co);
    client.connect([&](int) { called = true; });
    client.abort();  // cancels the pending attempt
    EXPECT_FALSE(client.connecting());
  }
  // Whatever the connector had in flight must not reach the dead client.
  run_until([] { return false; }, 100ms);
  EXPECT_FALSE(called);
  EXPECT_EQ(connector_.pending(), 0u);
  ::close(lfd);
}

TEST(TcpOptions, ApplyReportsAndSetsEveryOption) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(apply_tcp_options(fd, custom_tcp()), 0);
  expect_custom(read_opts(fd));
  TcpOptions off;
  off.no_delay = false;
  ASSERT_EQ(apply_tcp_options(fd, off), 0);
  EXPECT_EQ(get_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
  ::close(fd);
  int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
  EXPECT_LT(apply_tcp_options(udp, custom_tcp()), 0);  // not TCP: -errno, no crash
  ::close(udp);
}

TEST(ListenOptions, ReusePortLetsTwoListenersShareAPort) {
  ListenOptions lo;
  lo.reuse_port = true;
  lo.backlog = 8;
  int a = listen_tcp("127.0.0.1", 0, lo);
  ASSERT_GE(a, 0);
  int b = listen_tcp("127.0.0.1", local_port(a), lo);
  EXPECT_GE(b, 0);
  ListenOptions no;
  int c = listen_tcp("127.0.0.1", local_port(a), no);
  EXPECT_EQ(c, -EADDRINUSE);
  ::close(a);
  if (b >= 0) ::close(b);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, ClientTest, ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

}  // namespace
}  // namespace sluice
