// Worker processes end to end (issue 14): echo_server --workers N as a
// subprocess, checked from outside: connections spread over the workers
// (the supervisor's counters, cross-checked against each worker's open
// sockets in /proc), a killed worker is restarted while the others keep
// their connections, SIGTERM drains every worker, UDP senders spread too,
// and a port that cannot be shared fails start-up cleanly.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/net.h"
#include "tests/subprocess.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::Proc;

struct WorkerLine {
  pid_t pid = 0;
  uint64_t starts = 0, connections = 0, accepted = 0, messages = 0;
};
struct Summary {
  std::map<size_t, WorkerLine> workers;  // by index
  uint64_t connections = 0, accepted = 0, messages = 0, restarts = 0;
};

// The supervisor's answer to the latest SIGUSR1: its per-worker lines
// and the summary line after them. (sscanf, not std::regex: GCC 12 warns
// inside <regex> under the sanitizer configs' -O1.)
bool parse_summary(const std::string& line, size_t* n, Summary* s) {
  const size_t at = line.find(" workers: connections ");
  if (at == std::string::npos || line.find("stopping") != std::string::npos) return false;
  size_t begin = at;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(line[begin - 1]))) --begin;
  unsigned long long conns, accepted, messages, restarts;
  const char* eq = std::strchr(line.c_str() + at, '=');
  if (begin == at || eq == nullptr ||
      std::sscanf(eq, "=%llu, accepted %llu, messages %llu, restarts %llu", &conns, &accepted,
                  &messages, &restarts) != 4) {
    return false;
  }
  *n = std::stoul(line.substr(begin, at - begin));
  s->connections = conns;
  s->accepted = accepted;
  s->messages = messages;
  s->restarts = restarts;
  return true;
}

bool parse_worker(const std::string& line, size_t* index, WorkerLine* w) {
  const size_t at = line.find("] worker ");
  if (at == std::string::npos) return false;
  unsigned long long starts, conns, accepted, messages;
  int pid;
  if (std::sscanf(line.c_str() + at, "] worker %zu pid %d starts %llu connections %llu "
                  "accepted %llu messages %llu", index, &pid, &starts, &conns, &accepted,
                  &messages) != 6) {
    return false;
  }
  *w = WorkerLine{pid, starts, conns, accepted, messages};
  return true;
}

std::optional<Summary> parse_last(const std::string& err) {
  std::istringstream in(err);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  for (size_t i = lines.size(); i-- > 0;) {
    Summary s;
    size_t n = 0;
    if (!parse_summary(lines[i], &n, &s)) continue;
    for (size_t j = i; j-- > 0 && s.workers.size() < n;) {
      size_t index = 0;
      WorkerLine wl;
      if (!parse_worker(lines[j], &index, &wl)) break;
      s.workers[index] = wl;
    }
    if (s.workers.size() != n) return std::nullopt;
    return s;
  }
  return std::nullopt;
}

// Asks for statistics (SIGUSR1) until `ok` holds or 10 s pass (workers
// publish every 200 ms); returns the last answer.
template <class Pred>
std::optional<Summary> summary_until(Proc& p, Pred ok) {
  std::optional<Summary> s;
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < end) {
    p.signal(SIGUSR1);
    std::this_thread::sleep_for(150ms);
    s = parse_last(p.err());
    if (s && ok(*s)) break;
  }
  return s;
}

// Open sockets of a process, from /proc (independent of its counters).
size_t sockets_of(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code ec2;
    const auto target = std::filesystem::read_symlink(e.path(), ec2);
    if (!ec2 && target.string().rfind("socket:", 0) == 0) ++n;
  }
  return n;
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// One short echo on a blocking socket: true if it came back whole.
bool echo_once(int fd, const std::string& msg) {
  if (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(msg.size())) {
    return false;
  }
  return testing::read_n(fd, msg.size()) == msg;
}

std::vector<int> open_echoed(uint16_t port, size_t n) {
  std::vector<int> fds;
  for (size_t i = 0; i < n; ++i) {
    const int fd = testing::connect_local(port);
    if (fd < 0) break;
    testing::set_recv_timeout(fd, 3000);
    fds.push_back(fd);
    const std::string msg = "m" + std::to_string(i) + ";";
    if (::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) < 0) break;
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    const std::string msg = "m" + std::to_string(i) + ";";
    if (testing::read_n(fds[i], msg.size()) != msg) {
      ADD_FAILURE() << "connection " << i << " did not echo";
      break;
    }
  }
  return fds;
}

void close_all(std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
  fds.clear();
}

std::vector<std::string> echo_args(const std::string& workers, const std::string& io = "epoll") {
  return {testing::server_binary("echo_server"), "--workers", workers, "--io", io,
          "--max-conns", "0", "--drain-ms", "1000"};
}

TEST(Workers, ConnectionsSpreadOverWorkers) {
  Proc p(echo_args("3"), "spread");
  const uint16_t port = p.port();
  ASSERT_NE(port, 0) << p.err();
  EXPECT_NE(p.out().find("workers=3"), std::string::npos) << p.out();
  const size_t kConns = 6000;  // 3 workers x 2,000; this process holds the client ends
  std::vector<int> fds = open_echoed(port, kConns);
  ASSERT_EQ(fds.size(), kConns);
  const auto s = summary_until(p, [&](const Summary& s) { return s.connections == kConns; });
  ASSERT_TRUE(s.has_value()) << p.err();
  EXPECT_EQ(s->connections, kConns);
  EXPECT_EQ(s->accepted, kConns);
  ASSERT_EQ(s->workers.size(), 3u);
  for (const auto& [index, w] : s->workers) {
    // The kernel hashes the 4-tuple: ~2,000 each (sd ~37), never lopsided.
    EXPECT_GT(w.connections, kConns / 3 * 8 / 10) << "worker " << index;
    EXPECT_LT(w.connections, kConns / 3 * 12 / 10) << "worker " << index;
    // Each worker holds its listener and exactly its own connections.
    EXPECT_EQ(sockets_of(w.pid), w.connections + 1) << "worker " << index;
  }
  close_all(fds);
  const auto after = summary_until(p, [](const Summary& s) { return s.connections == 0; });
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->connections, 0u);
}

TEST(Workers, KilledWorkerRestartsWhileOthersKeepTheirConnections) {
  Proc p(echo_args("3"), "crash");
  const uint16_t port = p.port();
  ASSERT_NE(port, 0) << p.err();
  const size_t kConns = 600;
  std::vector<int> fds = open_echoed(port, kConns);
  ASSERT_EQ(fds.size(), kConns);
  const auto before = summary_until(p, [&](const Summary& s) { return s.connections == kConns; });
  ASSERT_TRUE(before.has_value() && before->connections == kConns) << p.err();
  const WorkerLine victim = before->workers.at(1);
  ASSERT_GT(victim.connections, 0u);
  ASSERT_EQ(::kill(victim.pid, SIGKILL), 0);

  // Exactly the victim's connections are gone; every other one echoes.
  size_t ok = 0, lost = 0;
  for (int fd : fds) (echo_once(fd, "after;") ? ok : lost)++;
  EXPECT_EQ(lost, victim.connections);
  EXPECT_EQ(ok, kConns - victim.connections);

  const auto restarted = summary_until(p, [&](const Summary& s) {
    const WorkerLine& w = s.workers.at(1);
    return s.restarts == 1 && w.pid != 0 && w.pid != victim.pid;
  });
  ASSERT_TRUE(restarted.has_value()) << p.err();
  EXPECT_EQ(restarted->restarts, 1u);
  EXPECT_EQ(restarted->workers.at(1).starts, 2u);
  EXPECT_NE(p.err().find("worker 1 killed by signal 9"), std::string::npos) << p.err();
  // The others were not restarted; the new worker takes new connections.
  EXPECT_EQ(restarted->workers.at(0).pid, before->workers.at(0).pid);
  EXPECT_EQ(restarted->workers.at(2).pid, before->workers.at(2).pid);
  std::vector<int> more = open_echoed(port, 300);
  EXPECT_EQ(more.size(), 300u);
  const auto spread = summary_until(p, [&](const Summary& s) {
    return s.connections == kConns - victim.connections + 300;
  });
  ASSERT_TRUE(spread.has_value());
  EXPECT_GT(spread->workers.at(1).connections, 0u) << "the restarted worker got none";
  close_all(more);
  close_all(fds);
}

TEST(Workers, SigtermDrainsEveryWorker) {
  Proc p(echo_args("3"), "drain");
  const uint16_t port = p.port();
  ASSERT_NE(port, 0) << p.err();
  std::vector<int> fds = open_echoed(port, 300);
  ASSERT_EQ(fds.size(), 300u);
  const auto s = summary_until(p, [](const Summary& s) { return s.connections == 300; });
  ASSERT_TRUE(s.has_value()) << p.err();
  const auto t0 = std::chrono::steady_clock::now();
  p.signal(SIGTERM);
  // Each connection ends in an orderly close (EOF, not a reset).
  size_t eof = 0;
  for (int fd : fds) {
    char c;
    if (::recv(fd, &c, 1, 0) == 0) ++eof;
  }
  EXPECT_EQ(eof, fds.size());
  EXPECT_EQ(p.wait(5s), 0) << p.err();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  for (const auto& [index, w] : s->workers) {
    EXPECT_FALSE(alive(w.pid)) << "worker " << index << " outlived the supervisor";
  }
  const std::string err = p.err();
  EXPECT_EQ(testing::count_lines(err, ") exited 0"), 3u) << err;
  close_all(fds);
}

TEST(Workers, UdpSendersSpreadOverWorkers) {
  Proc p({testing::server_binary("echo_server"), "--proto", "udp", "--workers", "3", "--io",
          "epoll"},
         "udp");
  const uint16_t port = p.port();
  ASSERT_NE(port, 0) << p.err();
  sockaddr_storage to;
  socklen_t to_len;
  ASSERT_EQ(make_address("127.0.0.1", port, &to, &to_len), 0);
  size_t echoed = 0, sent = 0;
  for (int i = 0; i < 300; ++i) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    testing::set_recv_timeout(fd, 500);
    const std::string msg = "d" + std::to_string(i);
    for (int attempt = 0; attempt < 3; ++attempt) {  // loopback may drop under load
      ++sent;
      ::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&to), to_len);
      char buf[64];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == static_cast<ssize_t>(msg.size()) && std::memcmp(buf, msg.data(), n) == 0) {
        ++echoed;
        break;
      }
    }
    ::close(fd);
  }
  EXPECT_EQ(echoed, 300u);
  const auto s = summary_until(p, [&](const Summary& s) { return s.messages >= echoed; });
  ASSERT_TRUE(s.has_value()) << p.err();
  EXPECT_GE(s->messages, 300u);
  EXPECT_LE(s->messages, sent);
  for (const auto& [index, w] : s->workers) {
    EXPECT_GT(w.messages, 300u / 3 / 2) << "worker " << index << " got too few senders";
  }
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(5s), 0) << p.err();
}

// A heartbeat PING (docs/PROTOCOL.md): type 1, sequence, timestamp.
std::string ping(uint64_t seq) {
  std::string p(17, '\0');
  p[0] = 0x01;
  for (int i = 0; i < 8; ++i) p[1 + i] = static_cast<char>(seq >> (56 - 8 * i));
  return p;
}

TEST(Workers, HeartbeatServerWorkersAnswerTcpAndUdp) {
  for (const std::string proto : {"tcp", "udp"}) {
    SCOPED_TRACE(proto);
    Proc p({testing::server_binary("heartbeat_server"), "--proto", proto, "--workers", "2",
            "--io", "epoll"},
           "hb-" + proto);
    const uint16_t port = p.port();
    ASSERT_NE(port, 0) << p.err();
    const size_t kPeers = 200;
    std::vector<int> fds;
    size_t answered = 0;
    for (size_t i = 0; i < kPeers; ++i) {
      std::string want = ping(i + 1);
      want[0] = 0x02;  // its PONG: the same bytes, type 2
      if (proto == "tcp") {
        const int fd = testing::connect_local(port);
        ASSERT_GE(fd, 0);
        testing::set_recv_timeout(fd, 3000);
        fds.push_back(fd);
        const std::string f = testing::frame(ping(i + 1));
        ASSERT_EQ(::send(fd, f.data(), f.size(), MSG_NOSIGNAL), static_cast<ssize_t>(f.size()));
        if (testing::read_n(fd, f.size()) == testing::frame(want)) ++answered;
      } else {
        const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ASSERT_GE(fd, 0);
        testing::set_recv_timeout(fd, 500);
        fds.push_back(fd);
        sockaddr_storage to;
        socklen_t len;
        ASSERT_EQ(make_address("127.0.0.1", port, &to, &len), 0);
        const std::string d = ping(i + 1);
        for (int attempt = 0; attempt < 3; ++attempt) {
          ::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), len);
          char buf[64];
          const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
          if (n == 17 && std::string(buf, 17) == want) {
            ++answered;
            break;
          }
        }
      }
    }
    EXPECT_EQ(answered, kPeers);
    // Joins are counted per worker; both took peers.
    const auto s = summary_until(p, [&](const Summary& s) { return s.accepted == kPeers; });
    ASSERT_TRUE(s.has_value()) << p.err();
    EXPECT_EQ(s->accepted, kPeers);
    for (const auto& [index, w] : s->workers) EXPECT_GT(w.accepted, 0u) << "worker " << index;
    close_all(fds);
    p.signal(SIGTERM);
    EXPECT_EQ(p.wait(10s), 0) << p.err();
  }
}

TEST(Workers, PortHeldWithoutReusePortFailsStartCleanly) {
  // A listener without SO_REUSEPORT owns the port: no worker can bind it.
  ListenOptions lo;
  lo.reuse_port = false;
  const int held = listen_tcp("127.0.0.1", 0, lo);
  ASSERT_GE(held, 0);
  const uint16_t port = local_port(held);
  Proc p({testing::server_binary("echo_server"), "--workers", "2", "--io", "epoll", "--port",
          std::to_string(port)},
         "busy");
  EXPECT_EQ(p.wait(10s), 1) << p.err();
  const std::string err = p.err();
  EXPECT_NE(err.find("Address already in use"), std::string::npos) << err;
  EXPECT_NE(err.find("before it was ready"), std::string::npos) << err;
  EXPECT_EQ(p.out().find("listening on"), std::string::npos) << p.out();
  ::close(held);
}

}  // namespace
}  // namespace sluice
