// The shipped binaries end to end, as subprocesses (Bazel `data` deps):
// heartbeat_client reconnects after heartbeat_server restarts and its JSON
// counts add up; a session that stops pinging is dropped with exactly one
// "timeout missed=3" log line (TCP and UDP); both servers exit 0 on
// SIGTERM; echo_server --proto udp echoes datagrams.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/net.h"

extern char** environ;

namespace sluice {
namespace {

using namespace std::chrono_literals;

std::string binary(const std::string& name) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir && ws) return std::string(srcdir) + "/" + ws + "/servers/" + name;
  return "bazel-bin/servers/" + name;  // run by hand from the repository root
}

std::string tmpdir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t ? t : "/tmp";
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A child process with stdout and stderr in files.
class Proc {
 public:
  Proc(std::vector<std::string> args, const std::string& tag) {
    static int seq = 0;
    const std::string base = tmpdir() + "/" + tag + "." + std::to_string(::getpid()) + "." +
                             std::to_string(seq++);
    out_ = base + ".out";
    err_ = base + ".err";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Proc() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  void signal(int sig) { ::kill(pid_, sig); }
  // Exit status, or -1 if still running after `limit` (then killed).
  int wait(std::chrono::milliseconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }
  // The port from "listening on HOST:PORT ...", waiting up to 5 s.
  uint16_t port() {
    static const std::regex re("listening on [^ ]*:([0-9]+) ");
    for (int i = 0; i < 500; ++i) {
      std::smatch m;
      std::string o = out();
      if (std::regex_search(o, m, re)) return static_cast<uint16_t>(std::stoi(m[1]));
      std::this_thread::sleep_for(10ms);
    }
    return 0;
  }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string out_, err_;
};

size_t count_lines(const std::string& text, const std::string& needle) {
  size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

// The client's one JSON line, as numbers.
std::map<std::string, uint64_t> parse_report(const std::string& out) {
  std::map<std::string, uint64_t> r;
  static const std::regex field("\"([a-z0-9_]+)\":([0-9]+)");
  std::string line;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.front() == '{') line = l;
  }
  for (auto it = std::sregex_iterator(line.begin(), line.end(), field); it != std::sregex_iterator();
       ++it) {
    r[(*it)[1]] = std::stoull((*it)[2]);
  }
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
