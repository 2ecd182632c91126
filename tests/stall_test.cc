// A stalled server must not drop peers that kept pinging (issue 10, bug 1).
//
// heartbeat_server runs as a subprocess on each back end, TCP and UDP, and
// is paused with SIGSTOP for longer than its idle window (interval x
// misses) while 16 heartbeat_client sessions keep pinging every 100 ms. Their PINGs
// wait in the kernel meanwhile; after SIGCONT the server must read them
// before it calls anyone idle, so no peer may be dropped with "timeout".
// The "load" variants add closed-loop DATA echo traffic (TCP: 4 streams with
// 256 KiB in flight each; UDP: 2 sockets with 32 datagrams in flight each),
// so the first iteration after the pause has a lot to do.
//
// The promise is about peers that kept pinging. The load sockets send no
// PINGs: each waits for the echo of its window before it sends more, so
// while the server is stopped they fall silent whenever that echo was not
// yet in the kernel when the server stopped (still queued in the server, or
// in an io_uring send that DEFER_TASKRUN runs only when the loop enters
// the ring again). 1.5 s of silence is then really there, and reader-idle
// rightly drops them after the pause. That was the "flaky" *_load cases
// (about 1 shard-run in 12: uring tcp_load, blocking udp_load, ...): every
// drop in their logs was a load socket, never a pinging peer; and as the
// load thread stopped at the first dead socket, the other load sockets fell
// silent and went 600 ms later. So drops of load sockets are printed, not
// failed, and the load keeps going on the sockets it still has.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "codec/heartbeat.h"
#include "core/net.h"
#include "tests/backend_params.h"
#include "tests/subprocess.h"
#include "tests/test_thread.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
namespace hb = codec::heartbeat;
using testing::count_lines;
using testing::Proc;
using testing::server_binary;

constexpr int kPeers = 16;
constexpr auto kPingEvery = 100ms;
constexpr auto kIdleWindow = 600ms;  // --interval-ms 200 --misses 3
constexpr auto kPause = 1500ms;      // well past the idle window

struct Param {
  std::string io;
  std::string proto;
  bool load;
};

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  std::string s = info.param.io + "_" + info.param.proto + (info.param.load ? "_load" : "");
  for (char& c : s) {
    if (c == '-') c = '_';
  }
  return s;
}

std::vector<Param> params() {
  std::vector<Param> out;
  for (const std::string& io : sluice::testing::all_backends()) {
    for (const char* proto : {"tcp", "udp"}) {
      for (bool load : {false, true}) out.push_back({io, proto, load});
    }
  }
  return out;
}

int open_peer(const std::string& proto, uint16_t port) {
  if (proto == "tcp") return connect_tcp("127.0.0.1", port);
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_storage to;
  socklen_t len;
  make_address("127.0.0.1", port, &to, &len);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), len) < 0) return -errno;
  return fd;
}

// Bytes readable now, without blocking (0 if none; -1 on EOF or error).
ssize_t drain(int fd) {
  char buf[65536];
  ssize_t total = 0;
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      total += n;
      continue;
    }
    if (n == 0) return -1;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? total : -1;
  }
}

// Closed-loop DATA echo traffic: each socket keeps `window` bytes (TCP) or
// datagrams (UDP) in flight and refills as echoes come back.
class EchoLoad {
 public:
  EchoLoad(const std::string& proto, uint16_t port) : proto_(proto) {
    const int socks = proto == "tcp" ? 4 : 2;
    for (int i = 0; i < socks; ++i) {
      const int fd = open_peer(proto, port);
      fds_.push_back(fd);
      sockaddr_in a{};
      socklen_t len = sizeof a;
      if (fd >= 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
        ports_.insert(ntohs(a.sin_port));
      }
    }
    thread_ = testing::TestThread([this](std::stop_token st) { run(st); });
  }
  ~EchoLoad() {
    thread_.request_stop();
    thread_.join();
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }
  uint64_t echoed() const { return echoed_; }
  // The load sockets' local ports (how the server's log names them).
  const std::set<uint16_t>& ports() const { return ports_; }

 private:
  void run(const std::stop_token& st) {
    const bool tcp = proto_ == "tcp";
    const std::string msg = hb::encode_data(std::string(tcp ? 16384 : 1024, 'x'));
    const std::string unit = tcp ? hb::frame(msg) : msg;
    const size_t window = tcp ? 256 * 1024 : 32;  // bytes or datagrams
    std::vector<size_t> in_flight(fds_.size(), 0);
    std::vector<size_t> received(fds_.size(), 0);
    std::vector<bool> dead(fds_.size(), false);
    while (!st.stop_requested()) {
      for (size_t i = 0; i < fds_.size(); ++i) {
        if (dead[i] || fds_[i] < 0) continue;
        const ssize_t n = drain(fds_[i]);
        if (n < 0) {
          dead[i] = true;  // dropped by the server: load on with the others
          continue;
        }
        if (tcp) {
          received[i] += static_cast<size_t>(n);
          const size_t done = std::min(received[i] / unit.size() * unit.size(), in_flight[i]);
          in_flight[i] -= done;
          received[i] -= done;
          echoed_ += done;
        } else if (n > 0) {
          const size_t dgrams = static_cast<size_t>(n) / unit.size();
          in_flight[i] -= std::min(in_flight[i], dgrams);
          echoed_ += static_cast<uint64_t>(n);
        }
        const size_t step = tcp ? unit.size() : 1;
        while (in_flight[i] + step <= window && ::send(fds_[i], unit.data(), unit.size(),
                                                       MSG_NOSIGNAL | MSG_DONTWAIT) ==
                                                    static_cast<ssize_t>(unit.size())) {
          in_flight[i] += step;
        }
      }
      std::this_thread::sleep_for(1ms);
    }
  }

  std::string proto_;
  std::vector<int> fds_;
  std::set<uint16_t> ports_;
  std::atomic<uint64_t> echoed_{0};
  testing::TestThread thread_;  // last: stopped and joined first
};

// The ports of the peers the log line says were dropped for "timeout"
// ("drop 127.0.0.1:PORT proto=... reason=timeout ...").
std::vector<uint16_t> timed_out_ports(const std::string& log) {
  std::vector<uint16_t> ports;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("reason=timeout") == std::string::npos) continue;
    const size_t at = line.find("drop ");
    const size_t colon = at == std::string::npos ? at : line.find(':', at);
    if (colon == std::string::npos) continue;
    ports.push_back(static_cast<uint16_t>(std::stoul(line.substr(colon + 1))));
  }
  return ports;
}

class Stall : public ::testing::TestWithParam<Param> {};

TEST_P(Stall, PausedServerKeepsEveryPeerThatKeptPinging) {
  const Param& p = GetParam();
  const io::BackendInfo info = io::probe(p.io);
  if (!info.available) GTEST_SKIP() << p.io << " unavailable here: " << info.reason;

  Proc server({server_binary("heartbeat_server"), "--io", p.io, "--proto", p.proto, "--port",
               "0", "--interval-ms", "200", "--misses", "3"},
              "stall_server");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();

  // The peers: heartbeat_client sessions that ping every 100 ms and, with
  // --misses 100, never give up on the server during the pause.
  Proc client({server_binary("heartbeat_client"), "--proto", p.proto, "--port",
               std::to_string(port), "--conns", std::to_string(kPeers), "--interval-ms",
               std::to_string(kPingEvery.count()), "--misses", "100", "--duration-s", "3.2"},
              "stall_client");
  ASSERT_TRUE(client.started());
  std::unique_ptr<EchoLoad> load;
  if (p.load) load = std::make_unique<EchoLoad>(p.proto, port);

  std::this_thread::sleep_for(700ms);
  server.signal(SIGSTOP);  // PINGs keep coming and wait in the kernel
  std::this_thread::sleep_for(kPause);
  server.signal(SIGCONT);
  ASSERT_EQ(client.wait(15s), 0) << client.err();
  const uint64_t echoed = load ? load->echoed() : 0;
  const std::set<uint16_t> load_ports = load ? load->ports() : std::set<uint16_t>{};
  load.reset();
  const std::string log = server.err();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(10s), 0) << log;
  size_t pingers_dropped = 0, load_dropped = 0;
  for (uint16_t port : timed_out_ports(log)) {
    if (load_ports.count(port) != 0) {
      ++load_dropped;
    } else {
      ++pingers_dropped;
    }
  }
  EXPECT_EQ(pingers_dropped, 0u)
      << "peers that kept pinging were dropped after a " << kPause.count()
      << " ms pause (idle window " << kIdleWindow.count() << " ms):\n"
      << log;
  if (load_dropped > 0) {
    // Not a failure: see the top of this file.
    std::printf("STALL io=%s proto=%s: %zu load socket(s) that waited for their echo were "
                "dropped as idle after the pause\n",
                p.io.c_str(), p.proto.c_str(), load_dropped);
  }
  // The sessions got PONGs after the pause too, without reconnecting.
  const std::string out = client.out();
  EXPECT_NE(out.find("\"reconnects\":0,"), std::string::npos) << out << client.err();
  EXPECT_EQ(out.find("\"pongs_received\":0,"), std::string::npos) << out;
  if (p.load) {
    EXPECT_GT(echoed, 0u) << "the echo load never got an answer";
  }
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Stall, ::testing::ValuesIn(params()), param_name);

}  // namespace
}  // namespace sluice
