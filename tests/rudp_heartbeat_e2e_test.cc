// heartbeat_server --proto rudp with heartbeat_client --proto rudp, as
// shipped (subprocesses): a peer that goes silent is dropped once its idle
// window (interval x misses = 400 ms here: wide enough for a loaded
// 2-core CI machine, where 150 ms dropped live peers) has passed, with the timeout
// reason, while the active ones stay; both as a client session that stops
// pinging (its rudp connection stays up: only messages count, not rudp's
// own keepalives and ACKs) and as a whole client process frozen with
// SIGSTOP (nothing at all arrives). And the client reconnects to a
// restarted server.
#include <signal.h>

#include <chrono>
#include <ctime>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/subprocess.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

using testing::count_lines;
using testing::Proc;

std::string binary(const std::string& name) { return testing::server_binary(name); }

// heartbeat_client's JSON report: its counters.
std::map<std::string, uint64_t> parse_report(const std::string& out) {
  std::map<std::string, uint64_t> r;
  for (const auto& [k, v] : testing::last_json_numbers(out)) r[k] = static_cast<uint64_t>(v);
  return r;
}

// Milliseconds since midnight of the first log line containing `needle`
// ("[2026-11-30 09:36:21.964] ..."); -1 if none.
int64_t log_ms(const std::string& log, const std::string& needle) {
  static const std::regex stamp("^\\[[0-9-]+ ([0-9]+):([0-9]+):([0-9]+)\\.([0-9]+)\\]");
  std::istringstream in(log);
  for (std::string l; std::getline(in, l);) {
    if (l.find(needle) == std::string::npos) continue;
    std::smatch m;
    if (!std::regex_search(l, m, stamp)) return -1;
    return ((std::stoll(m[1]) * 60 + std::stoll(m[2])) * 60 + std::stoll(m[3])) * 1000 +
           std::stoll(m[4]);
  }
  return -1;
}

Proc start_server(const std::string& tag) {
  return Proc({binary("heartbeat_server"), "--proto", "rudp", "--port", "0", "--interval-ms",
               "100", "--misses", "4", "--log-level", "debug"},
              tag);
}

TEST(HeartbeatRudpE2E, SessionThatStopsPingingIsDroppedWithinItsWindow) {
  Proc server = start_server("server");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();
  EXPECT_NE(server.out().find(" proto=rudp"), std::string::npos) << server.out();
  Proc client({binary("heartbeat_client"), "--proto", "rudp", "--port", std::to_string(port),
               "--conns", "3", "--interval-ms", "100", "--duration-s", "2.4",
               "--stop-pings-after-s", "0.6"},
              "client");
  ASSERT_EQ(client.wait(15s), 0) << client.err();
  // Read now: after the client ended, the others close (orderly) too.
  const std::string log = server.err();
  const std::string clog = client.err();
  EXPECT_EQ(count_lines(log, "join 127.0.0.1:"), 3u) << log;
  ASSERT_EQ(count_lines(log, "reason=timeout missed=4"), 1u) << log;
  EXPECT_EQ(count_lines(clog, "after going silent"), 1u) << clog;
  // Dropped once the window passed: not before 400 ms of silence (less
  // one interval: the last PING went out up to 100 ms before the stop),
  // and not much later.
  const int64_t stopped = log_ms(clog, "stops sending pings");
  const int64_t dropped = log_ms(log, "reason=timeout missed=4");
  ASSERT_GE(stopped, 0) << clog;
  ASSERT_GE(dropped, 0) << log;
  EXPECT_GE(dropped - stopped, 300) << log << clog;
  EXPECT_LE(dropped - stopped, 2000) << log << clog;
  // The two active sessions stayed up to the end, every PING answered.
  auto r = parse_report(client.out());
  ASSERT_TRUE(r.count("pings_sent")) << client.out();
  EXPECT_EQ(r["pings_sent"], r["pongs_received"] + r["lost"] + r["in_flight"]) << client.out();
  EXPECT_EQ(r["lost"], 0u) << client.out();
  EXPECT_EQ(r["reconnects"], 0u) << client.out();
  EXPECT_GT(r["pongs_received"], 30u) << client.out();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(10s), 0) << server.err();
  const std::string all = server.err();
  EXPECT_EQ(count_lines(all, "reason=timeout"), 1u) << all;
  EXPECT_EQ(count_lines(all, "reason=closed by peer"), 2u) << all;
  EXPECT_EQ(count_lines(all, ": rudp srtt "), 3u) << all;  // figures per connection
}

TEST(HeartbeatRudpE2E, FrozenClientIsDroppedWhileTheActiveOneStays) {
  Proc server = start_server("server_stop");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();
  auto client_args = [&](const char* seconds) {
    return std::vector<std::string>{binary("heartbeat_client"), "--proto", "rudp", "--port",
                                    std::to_string(port), "--conns", "1", "--interval-ms", "100",
                                    "--duration-s", seconds, "--backoff-min-ms", "50"};
  };
  Proc frozen(client_args("4"), "frozen");
  Proc active(client_args("3.5"), "active");
  for (int i = 0; i < 200 && count_lines(server.err(), "join 127.0.0.1:") < 2; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(count_lines(server.err(), "join 127.0.0.1:"), 2u) << server.err();
  std::this_thread::sleep_for(200ms);
  frozen.signal(SIGSTOP);
  // 400 ms window; allow for a loaded machine.
  std::this_thread::sleep_for(1400ms);
  const std::string log = server.err();
  EXPECT_EQ(count_lines(log, "reason=timeout missed=4"), 1u) << log;
  EXPECT_EQ(count_lines(log, "drop 127.0.0.1:"), 1u) << log;  // the active one is still there
  frozen.signal(SIGCONT);
  ASSERT_EQ(active.wait(10s), 0) << active.err();
  ASSERT_EQ(frozen.wait(10s), 0) << frozen.err();
  auto a = parse_report(active.out());
  ASSERT_TRUE(a.count("pings_sent")) << active.out();
  EXPECT_EQ(a["lost"], 0u) << active.out();
  EXPECT_EQ(a["reconnects"], 0u) << active.out();
  // Thawed, the frozen client finds its connection gone and reconnects.
  auto f = parse_report(frozen.out());
  EXPECT_GE(f["reconnects"], 1u) << frozen.out() << frozen.err();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(10s), 0) << server.err();
}

// The server is replaced (SIGTERM, then a new one on the same port) while
// the client runs: every session reconnects and the counts add up. (The
// draining server still handed out cookies the new one did not accept.)
TEST(HeartbeatRudpE2E, ClientReconnectsAfterServerRestart) {
  Proc server1 = start_server("restart1");
  const uint16_t port = server1.port();
  ASSERT_NE(port, 0) << server1.err();
  Proc client({binary("heartbeat_client"), "--proto", "rudp", "--port", std::to_string(port),
               "--conns", "3", "--interval-ms", "100", "--duration-s", "3", "--backoff-min-ms",
               "50", "--backoff-max-ms", "200"},
              "client_restart");
  std::this_thread::sleep_for(1000ms);
  server1.signal(SIGTERM);
  EXPECT_EQ(server1.wait(5s), 0) << server1.err();
  std::this_thread::sleep_for(200ms);
  Proc server2({binary("heartbeat_server"), "--proto", "rudp", "--port", std::to_string(port),
                "--interval-ms", "100", "--misses", "4"},
               "restart2");
  ASSERT_EQ(server2.port(), port) << server2.err();
  ASSERT_EQ(client.wait(15s), 0) << client.err();
  auto r = parse_report(client.out());
  ASSERT_TRUE(r.count("pings_sent")) << client.out();
  EXPECT_EQ(r["pings_sent"], r["pongs_received"] + r["lost"] + r["in_flight"]) << client.out();
  EXPECT_EQ(r["reconnects"], 3u) << client.out() << client.err();
  server2.signal(SIGTERM);
  EXPECT_EQ(server2.wait(5s), 0) << server2.err();
  EXPECT_EQ(count_lines(server1.err(), "join 127.0.0.1:"), 3u) << server1.err();
  EXPECT_EQ(count_lines(server2.err(), "join 127.0.0.1:"), 3u) << server2.err();
}

}  // namespace
}  // namespace sluice
