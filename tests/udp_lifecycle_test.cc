// UDP endpoint life cycle on every registered back end: a close sends
// every datagram queued before it (within the close's flush bound).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/event_loop.h"
#include "core/net.h"
#include "core/udp_endpoint.h"
#include "core/udp_server.h"
#include "io/registry.h"
#include "tests/backend_params.h"
#include "tests/udp_probe.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

// A client socket whose receive buffer holds every reply of a burst, so
// anything missing was lost by the server, not by the client.
int big_client() {
  int fd = bind_udp("127.0.0.1", 0, {});
  int big = 64 << 20;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  }
  return fd;
}

void send_to_port(int fd, uint16_t port, std::string_view data) {
  sockaddr_storage to;
  socklen_t len;
  make_address("127.0.0.1", port, &to, &len);
  ASSERT_EQ(::sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&to), len),
            static_cast<ssize_t>(data.size()));
}

std::string numbered(uint32_t seq, size_t size) {
  std::string s(size, 'x');
  std::memcpy(s.data(), &seq, sizeof seq);
  return s;
}

uint32_t seq_of(std::string_view d) {
  uint32_t s = UINT32_MAX;
  if (d.size() >= sizeof s) std::memcpy(&s, d.data(), sizeof s);
  return s;
}

// Every datagram that arrives until none has for quiet_ms.
std::vector<uint32_t> drain(int fd, int quiet_ms) {
  std::vector<uint32_t> got;
  char buf[2048];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, quiet_ms) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) break;
    got.push_back(seq_of({buf, static_cast<size_t>(n)}));
  }
  return got;
}

class UdpLifecycle : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
    std::string why = testing::udp_unsupported_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << why << " (not yet supported)";
  }
};

// Answers a 4-byte count N with N numbered 64-byte datagrams. With `hold`
// it then holds its loop until the test has called stop(), so the close
// runs in the same iteration, before the end-of-iteration flush.
class Burst final : public DatagramHandler {
 public:
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
    const uint32_t n = seq_of(d.data);
    uint32_t ok = 0;
    for (uint32_t i = 0; i < n; ++i) ok += ep.send_to(d.addr, d.addr_len, numbered(i, 64)) ? 1 : 0;
    queued.store(ok);
    if (!hold) return;
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (!stopping.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(100us);
    }
    std::this_thread::sleep_for(20ms);  // stop() posts its close meanwhile
  }
  std::atomic<uint32_t> queued{0};
  std::atomic<bool> stopping{false};
  bool hold = false;
};

// Bug 4: the handler queues N replies, then the server stops (the
// echo_server --proto udp SIGTERM path), with the close in the same loop
// iteration as the queueing (hold) or just after it. All N must arrive.
TEST_P(UdpLifecycle, StopSendsEveryQueuedDatagram) {
  for (int variant = 0; variant < 4; ++variant) {
    const uint32_t n = variant % 2 == 0 ? 1000 : 100;
    const bool hold = variant >= 2;
    SCOPED_TRACE("queued " + std::to_string(n) + (hold ? " held" : ""));
    Burst h;
    h.hold = hold;
    UdpServerOptions o;
    o.io = GetParam();
    UdpServer server(o, h);
    std::string err;
    ASSERT_EQ(server.start(&err), 0) << err;
    int fd = big_client();
    send_to_port(fd, server.port(), numbered(n, 4));
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (h.queued.load() == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(100us);
    }
    ASSERT_EQ(h.queued.load(), n);
    h.stopping.store(true);
    const auto t0 = std::chrono::steady_clock::now();
    server.stop();
    const auto took = std::chrono::steady_clock::now() - t0;
    std::vector<uint32_t> got = drain(fd, 200);
    ::close(fd);
    std::printf("UDP-CLOSE-FLUSH io=%s queued=%u hold=%d received=%zu stop_ms=%lld\n",
                GetParam().c_str(), n, hold ? 1 : 0, got.size(),
                static_cast<long long>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
    EXPECT_EQ(got.size(), n);
    for (uint32_t i = 0; i < got.size() && i < n; ++i) {
      if (got[i] != i) {
        ADD_FAILURE() << "datagram " << i << " out of order: " << got[i];
        break;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllBackends, UdpLifecycle,
                         ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

}  // namespace
}  // namespace sluice
