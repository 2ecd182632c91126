// echo_server --proto rudp driven by loadgen --proto rudp, both as shipped
// (subprocesses, Bazel `data` deps): a couple of seconds of load on a few
// back ends with no error of any kind; both reject a codec with rudp. And
// the instrument itself: against rudp echoes that corrupt, reorder or drop
// one message (an in-process Server with the rudp transport), loadgen
// reports the error and exits 1.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/connection.h"
#include "core/server.h"
#include "io/registry.h"
#include "rudp/rudp.h"
#include "tests/subprocess.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

using testing::Proc;

// loadgen's JSON line (numbers only).
std::map<std::string, double> parse_json(const std::string& out) { return testing::last_json_numbers(out); }

std::vector<std::string> loadgen_args(uint16_t port, const std::string& io, double seconds) {
  return {testing::server_binary("loadgen", "perf"), "--proto", "rudp", "--port",
          std::to_string(port), "--io", io, "--conns", "8", "--size", "300", "--pipeline", "2",
          "--duration-s", std::to_string(seconds), "--warmup-s", "0.2", "--drain-s", "1",
          "--quiet"};
}

class EchoRudpE2E : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable: " << info.reason;
  }
};

TEST_P(EchoRudpE2E, LoadgenRunsWithoutErrors) {
  Proc server({testing::server_binary("echo_server"), "--proto", "rudp", "--io", GetParam(),
               "--port", "0", "--threads", "2", "--log-level", "debug"},
              "echo");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();
  EXPECT_NE(server.out().find(" proto=rudp codec=raw"), std::string::npos) << server.out();
  Proc load(loadgen_args(port, GetParam(), 1.5), "loadgen");
  ASSERT_EQ(load.wait(30s), 0) << load.out() << load.err();
  auto j = parse_json(load.out());
  ASSERT_TRUE(j.count("errors")) << load.out();
  EXPECT_EQ(j["errors"], 0) << load.out();
  EXPECT_EQ(j["stalled"], 0) << load.out();
  EXPECT_GT(j["msgs"], 100) << load.out();
  EXPECT_LE(j["p50_us"], j["p99_us"]) << load.out();
  EXPECT_EQ(j["rudp_conns"], 8) << load.out();
  EXPECT_GT(j["rudp_packets_sent"], j["msgs"] / 2) << load.out();
  EXPECT_GT(j["rudp_srtt_us"], 0) << load.out();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(10s), 0) << server.err();
  // Each connection's figures at close (debug), the sum at stop (info).
  const std::string log = server.err();
  EXPECT_EQ(testing::count_lines(log, "closed (closed by peer): rudp srtt"), 8u) << log;
  EXPECT_EQ(testing::count_lines(log, "rudp: 8 connections closed (8 with figures)"), 1u) << log;
}

INSTANTIATE_TEST_SUITE_P(Backends, EchoRudpE2E, ::testing::Values("epoll", "poll", "uring", "blocking"));

TEST(EchoRudpFlags, CodecsAndBadOptionsAreRefused) {
  Proc codec({testing::server_binary("echo_server"), "--proto", "rudp", "--codec", "length"},
             "echo_codec");
  EXPECT_EQ(codec.wait(5s), 2);
  EXPECT_NE(codec.err().find("--proto rudp takes no --codec"), std::string::npos) << codec.err();
  Proc cc({testing::server_binary("echo_server"), "--proto", "rudp", "--rudp-cc", "nope"},
          "echo_cc");
  EXPECT_EQ(cc.wait(5s), 2);
  EXPECT_NE(cc.err().find("unknown congestion controller 'nope'"), std::string::npos) << cc.err();
  Proc ka({testing::server_binary("echo_server"), "--proto", "rudp", "--rudp-keepalive-ms",
           "5000", "--rudp-idle-timeout-ms", "5000"},
          "echo_keepalive");
  EXPECT_EQ(ka.wait(5s), 2);
  Proc load({testing::server_binary("loadgen", "perf"), "--proto", "rudp", "--port", "9",
             "--codec", "length"},
            "loadgen_codec");
  EXPECT_EQ(load.wait(5s), 2);
  EXPECT_NE(load.err().find("--proto rudp takes no --codec"), std::string::npos) << load.err();
}

// An rudp echo that gets message number `at` (counted over the server)
// wrong: corrupts one byte, swaps it with the next, or drops it.
class BadEcho final : public Handler {
 public:
  enum class Fault { kCorrupt, kReorder, kDrop };
  BadEcho(Fault f, uint64_t at) : fault_(f), at_(at) {}
  void on_message(Connection& conn, std::string_view data) override {
    const uint64_t n = ++count_;
    if (n == at_) {
      switch (fault_) {
        case Fault::kCorrupt: {
          std::string bad(data);
          bad[bad.size() / 2] ^= 1;
          conn.send(bad);
          return;
        }
        case Fault::kReorder:
          held_ = std::string(data);  // sent after the next one
          held_conn_ = conn.id();
          return;
        case Fault::kDrop:
          return;
      }
    }
    conn.send(data);
    if (!held_.empty() && held_conn_ == conn.id()) {
      conn.send(held_);
      held_.clear();
    }
  }

 private:
  const Fault fault_;
  const uint64_t at_;
  std::atomic<uint64_t> count_{0};
  std::string held_;  // one loop (threads = 1)
  uint64_t held_conn_ = 0;
};

class LoadgenCatches : public ::testing::TestWithParam<BadEcho::Fault> {};

TEST_P(LoadgenCatches, ABadEcho) {
  BadEcho echo(GetParam(), 200);
  ServerOptions so;
  so.transport = rudp::transport();
  Server server(so, echo);
  std::string error;
  ASSERT_EQ(server.start(&error), 0) << error;
  auto args = loadgen_args(server.port(), io::default_backend(), 0.6);
  args[8] = "1";  // --conns 1: the faulty message is this connection's
  Proc load(args, "loadgen_bad");
  EXPECT_EQ(load.wait(30s), 1) << load.out() << load.err();
  auto j = parse_json(load.out());
  EXPECT_GE(j["errors"], 1) << load.out();
  // A dropped echo shows as the next one arriving in its place (a verify
  // error), or, if it was the last one, as stalled.
  EXPECT_GE(j["verify_errors"] + j["stalled"], 1) << load.out();
  server.stop();
}

INSTANTIATE_TEST_SUITE_P(Faults, LoadgenCatches,
                         ::testing::Values(BadEcho::Fault::kCorrupt, BadEcho::Fault::kReorder,
                                           BadEcho::Fault::kDrop),
                         [](const auto& info) {
                           switch (info.param) {
                             case BadEcho::Fault::kCorrupt: return std::string("Corrupt");
                             case BadEcho::Fault::kReorder: return std::string("Reorder");
                             case BadEcho::Fault::kDrop: return std::string("Drop");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace sluice
