// rudp over real UDP sockets on every back end: a Server with the rudp
// transport and an unchanged echo Handler, driven by rudp::Client on a
// loop of the same back end. Messages of every size (fragmented up to
// 1 MiB) come back whole and in order; closes are orderly both ways;
// unreliable messages arrive once at most; the stats add up.
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/event_loop.h"
#include "core/server.h"
#include "io/registry.h"
#include "rudp/rudp.h"
#include "tests/backend_params.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

class Echo final : public Handler {
 public:
  void on_message(Connection& conn, std::string_view data) override { conn.send(data); }
  void on_close(Connection&, CloseReason reason, int err) override {
    std::lock_guard<std::mutex> lock(mu);
    closes.emplace_back(reason, err);
  }
  std::mutex mu;
  std::vector<std::pair<CloseReason, int>> closes;
};

// Client side: sends `messages` one after another (each on the echo of the
// previous, plus a pipelined burst at the start), checks every echo.
class Pinger final : public Handler {
 public:
  explicit Pinger(std::vector<std::string> msgs) : messages(std::move(msgs)) {}
  void on_open(Connection& conn) override {
    for (size_t i = 0; i < std::min<size_t>(4, messages.size()); ++i) send_next(conn);
  }
  void on_message(Connection& conn, std::string_view data) override {
    if (received >= messages.size() || data != messages[received]) {
      mismatch = true;
      conn.abort();
      return;
    }
    ++received;
    if (sent < messages.size()) send_next(conn);
    if (received == messages.size()) {
      stats = rudp::stats(conn);
      conn.close();
    }
  }
  void on_close(Connection&, CloseReason r, int e) override {
    reason = r;
    err = e;
    done.set_value();
  }
  void send_next(Connection& conn) {
    if (!conn.send(messages[sent])) mismatch = true;
    ++sent;
  }
  std::vector<std::string> messages;
  size_t sent = 0;
  size_t received = 0;
  bool mismatch = false;
  CloseReason reason{};
  int err = 0;
  std::optional<rudp::Stats> stats;
  std::promise<void> done;
};

class RudpBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable: " << info.reason;
  }
};

// Runs a client loop of the test's back end with `handler` until done.
void run_client(const std::string& io, uint16_t port, Handler& handler, std::future<void> done,
                int* connect_rc) {
  std::string error;
  auto loop = EventLoop::create(io, {}, &error);
  ASSERT_TRUE(loop) << error;
  rudp::ClientOptions co;
  co.port = port;
  auto client = std::make_unique<rudp::Client>(*loop, handler, co);
  std::thread t([&] {
    loop->run([&] {
      client->connect([&](int rc) {
        *connect_rc = rc;
        if (rc < 0) loop->quit();
      });
    });
  });
  if (done.wait_for(60s) != std::future_status::ready) ADD_FAILURE() << "client timed out";
  // Let the close finish (FIN both ways, CLOSE), then stop.
  std::this_thread::sleep_for(100ms);
  // The client lets go of its socket through the back end (a proactor
  // releases it from a later wait), then goes.
  loop->post([&] {
    client->abort();
    client->release_socket([&] {
      client.reset();
      loop->quit();
    });
  });
  t.join();
}

TEST_P(RudpBackendTest, EchoesMessagesOfEverySizeInOrder) {
  Echo echo;
  ServerOptions so;
  so.io = GetParam();
  so.transport = rudp::transport();
  Server server(so, echo);
  std::string error;
  ASSERT_EQ(server.start(&error), 0) << error;

  std::vector<std::string> msgs;
  const size_t sizes[] = {0, 1, 7, 1000, 1400, 4000, 65536, 300000, 1 << 20};
  uint64_t seed = 1;
  for (size_t s : sizes) msgs.push_back(testing::random_bytes(s, seed++));
  for (int i = 0; i < 200; ++i) msgs.push_back(testing::random_bytes(1 + i * 13 % 3000, seed++));
  Pinger pinger(msgs);
  int rc = 1;
  run_client(GetParam(), server.port(), pinger, pinger.done.get_future(), &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_FALSE(pinger.mismatch);
  EXPECT_EQ(pinger.received, msgs.size());
  EXPECT_EQ(pinger.reason, CloseReason::kLocal);
  EXPECT_EQ(pinger.err, 0);
  ASSERT_TRUE(pinger.stats.has_value());
  EXPECT_GT(pinger.stats->packets_sent, msgs.size() / 2);
  EXPECT_GT(pinger.stats->srtt.count(), 0);
  // Every back end reports the codepoints: the server's ACK_ECN counts
  // match the ECT(0) packets it got, so validation holds (loopback marks
  // nothing CE).
  EXPECT_FALSE(pinger.stats->ecn_failed) << pinger.stats->str();
  EXPECT_EQ(pinger.stats->ecn_ce, 0u);
  server.stop();
  std::lock_guard<std::mutex> lock(echo.mu);
  ASSERT_EQ(echo.closes.size(), 1u);
  EXPECT_EQ(echo.closes[0].first, CloseReason::kPeerClosed);
  EXPECT_EQ(echo.closes[0].second, 0);
}

TEST_P(RudpBackendTest, ConnectToNobodyTimesOut) {
  // A bound UDP port that never answers.
  const int fd = bind_udp("127.0.0.1", 0, {});
  ASSERT_GE(fd, 0);
  std::string error;
  auto loop = EventLoop::create(GetParam(), {}, &error);
  ASSERT_TRUE(loop) << error;
  Echo h;
  rudp::ClientOptions co;
  co.port = local_port(fd);
  co.rudp.connect_timeout = 600ms;
  auto client = std::make_unique<rudp::Client>(*loop, h, co);
  int rc = 1;
  const auto t0 = std::chrono::steady_clock::now();
  loop->run([&] {
    client->connect([&](int r) {
      rc = r;
      loop->quit();
    });
  });
  const auto took = std::chrono::steady_clock::now() - t0;
  client.reset();
  EXPECT_EQ(rc, -ETIMEDOUT);
  EXPECT_GE(took, 550ms);
  EXPECT_LT(took, 3s);
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, RudpBackendTest,
                         ::testing::ValuesIn(testing::all_backends()), testing::BackendName());

}  // namespace
}  // namespace sluice
