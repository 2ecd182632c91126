// The shipped binaries end to end, as subprocesses (Bazel `data` deps):
// heartbeat_client reconnects after heartbeat_server restarts and its JSON
// counts add up; a session that stops pinging is dropped with exactly one
// "timeout missed=3" log line (TCP and UDP); both servers exit 0 on
// SIGTERM; echo_server --proto udp echoes datagrams.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/net.h"
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

void expect_report_adds_up(const std::map<std::string, uint64_t>& r, const std::string& raw) {
  for (const char* k : {"pings_sent", "pongs_received", "lost", "in_flight", "reconnects",
                        "rtt_p50_us", "rtt_p99_us", "rtt_max_us"}) {
    ASSERT_TRUE(r.count(k)) << "missing " << k << " in: " << raw;
  }
  EXPECT_EQ(r.at("pings_sent"), r.at("pongs_received") + r.at("lost") + r.at("in_flight")) << raw;
  EXPECT_GT(r.at("pongs_received"), 0u) << raw;
  EXPECT_LE(r.at("rtt_p50_us"), r.at("rtt_p99_us"));
  EXPECT_LE(r.at("rtt_p99_us"), r.at("rtt_max_us"));
}

std::vector<std::string> server_args(const std::string& proto, uint16_t port) {
  return {binary("heartbeat_server"), "--proto", proto,  "--port", std::to_string(port),
          "--interval-ms",            "50",    "--misses", "3"};
}

TEST(HeartbeatE2E, TcpClientReconnectsAfterServerRestartAndCountsAddUp) {
  Proc server1(server_args("tcp", 0), "server1");
  ASSERT_TRUE(server1.started()) << binary("heartbeat_server");
  const uint16_t port = server1.port();
  ASSERT_NE(port, 0) << server1.err();
  Proc client({binary("heartbeat_client"), "--port", std::to_string(port), "--conns", "3",
               "--interval-ms", "50", "--duration-s", "2", "--backoff-min-ms", "50",
               "--backoff-max-ms", "200"},
              "client");
  ASSERT_TRUE(client.started());
  std::this_thread::sleep_for(600ms);
  server1.signal(SIGTERM);
  EXPECT_EQ(server1.wait(5s), 0) << server1.err();
  std::this_thread::sleep_for(200ms);
  Proc server2(server_args("tcp", port), "server2");
  ASSERT_EQ(server2.port(), port) << server2.err();
  ASSERT_EQ(client.wait(10s), 0) << client.err();
  const std::string out = client.out();
  auto r = parse_report(out);
  expect_report_adds_up(r, out);
  EXPECT_GE(r["reconnects"], 3u) << out << client.err();
  server2.signal(SIGTERM);
  EXPECT_EQ(server2.wait(5s), 0) << server2.err();
  // One line per join and per drop, naming the peer and the reason.
  const std::string log1 = server1.err();
  EXPECT_EQ(count_lines(log1, "join 127.0.0.1:"), 3u) << log1;
  EXPECT_EQ(count_lines(log1, "reason=server stopping"), 3u) << log1;
  const std::string log2 = server2.err();
  EXPECT_EQ(count_lines(log2, "join 127.0.0.1:"), 3u) << log2;
  EXPECT_EQ(count_lines(log2, "reason=closed by peer"), 3u) << log2;
}

// --host takes names: "localhost" is looked up (up front, then by each
// TCP connect), an unknown name ends the run at once with exit 1 and
// getaddrinfo's reason.
TEST(HeartbeatE2E, HostNamesResolveAndUnknownOnesFail) {
  Proc server(server_args("tcp", 0), "server");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();
  Proc client({binary("heartbeat_client"), "--host", "localhost", "--port", std::to_string(port),
               "--conns", "2", "--interval-ms", "50", "--duration-s", "0.5"},
              "client");
  ASSERT_EQ(client.wait(10s), 0) << client.err();
  const std::string out = client.out();
  auto r = parse_report(out);
  expect_report_adds_up(r, out);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(5s), 0) << server.err();

  for (const char* proto : {"tcp", "udp"}) {
    Proc bad({binary("heartbeat_client"), "--proto", proto, "--host", "no-such-host.invalid",
              "--port", std::to_string(port), "--duration-s", "5"},
             "bad");
    // Well before --duration-s: the lookup fails, nothing runs.
    EXPECT_EQ(bad.wait(4s), 1) << proto << ": " << bad.err();
    EXPECT_NE(bad.err().find("cannot resolve no-such-host.invalid: "), std::string::npos)
        << proto << ": " << bad.err();
    EXPECT_EQ(bad.out(), "") << proto;
  }
}

class SilentSession : public ::testing::TestWithParam<std::string> {};

TEST_P(SilentSession, IsDroppedOnceWithTheTimeoutReason) {
  const std::string proto = GetParam();
  Proc server(server_args(proto, 0), "server");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();
  Proc client({binary("heartbeat_client"), "--proto", proto, "--port", std::to_string(port),
               "--conns", "2", "--interval-ms", "50", "--duration-s", "1",
               "--stop-pings-after-s", "0.3"},
              "client");
  ASSERT_EQ(client.wait(10s), 0) << client.err();
  // Read the log now: the pinging session's own timeout (UDP has no close)
  // can only come interval x misses after the client ended.
  const std::string log = server.err();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(5s), 0) << server.err();
  EXPECT_EQ(count_lines(log, "join 127.0.0.1:"), 2u) << log;
  ASSERT_EQ(count_lines(log, "reason=timeout missed=3"), 1u) << log;
  std::smatch m;
  EXPECT_TRUE(std::regex_search(log, m, std::regex("drop 127\\.0\\.0\\.1:[0-9]+ proto=" + proto +
                                                   ".* reason=timeout missed=3")))
      << log;
  const std::string out = client.out();
  auto r = parse_report(out);
  expect_report_adds_up(r, out);
  EXPECT_EQ(r["reconnects"], 0u) << out;
}

INSTANTIATE_TEST_SUITE_P(Protos, SilentSession, ::testing::Values("tcp", "udp"));

TEST(EchoServerUdp, EchoesDatagramsAndRejectsCodecs) {
  Proc server({binary("echo_server"), "--proto", "udp", "--port", "0"}, "echo");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();
  EXPECT_NE(server.out().find(" proto=udp codec=raw"), std::string::npos) << server.out();
  int fd = bind_udp("127.0.0.1", 0, {});
  sockaddr_storage to;
  socklen_t len;
  make_address("127.0.0.1", port, &to, &len);
  const std::string msg = "a datagram for the echo";
  ASSERT_EQ(::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&to), len),
            static_cast<ssize_t>(msg.size()));
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1);
  char buf[256];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), msg);
  ::close(fd);
  server.signal(SIGINT);
  EXPECT_EQ(server.wait(5s), 0) << server.err();

  Proc bad({binary("echo_server"), "--proto", "udp", "--codec", "length"}, "echo_bad");
  EXPECT_EQ(bad.wait(5s), 2);
}

}  // namespace
}  // namespace sluice
