// UDP core API (UdpEndpoint, UdpServer) on every registered back end:
// datagram integrity up to the IPv4 maximum, bursts, several loops sharing
// a port with SO_REUSEPORT, and the bounded send queue. Back ends whose
// datagram path does not exist yet are skipped by a real capability probe
// (tests/udp_probe.h), never by name.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "tests/backend_params.h"
#include "core/event_loop.h"
#include "core/net.h"
#include "core/udp_endpoint.h"
#include "core/udp_server.h"
#include "io/registry.h"
#include "tests/test_util.h"
#include "tests/udp_probe.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

class UdpEcho final : public DatagramHandler {
 public:
  void on_open(UdpEndpoint&) override { ++opened; }
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
    ++received;
    {
      std::lock_guard<std::mutex> lock(mu);
      loops.insert(&ep.loop());
    }
    ep.send_to(d.addr, d.addr_len, d.data);
  }
  void on_close(UdpEndpoint&) override { ++closed; }
  std::atomic<int> opened{0}, closed{0};
  std::atomic<size_t> received{0};
  std::mutex mu;
  std::set<EventLoop*> loops;
};

int client_socket() {
  int fd = bind_udp("127.0.0.1", 0, {});
  int big = 4 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  return fd;
}

void send_to_port(int fd, uint16_t port, std::string_view data) {
  sockaddr_storage to;
  socklen_t len;
  make_address("127.0.0.1", port, &to, &len);
  ASSERT_EQ(::sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&to), len),
            static_cast<ssize_t>(data.size()));
}

// One datagram, or "" after timeout_ms.
std::string recv_one(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return {};
  std::string buf(70000, '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  if (n < 0) return {};
  buf.resize(static_cast<size_t>(n));
  return buf;
}

class Udp : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string why = testing::udp_skip_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << why;
  }

  void start(size_t threads = 1) {
    UdpServerOptions o;
    o.io = GetParam();
    o.threads = threads;
    o.socket.rcvbuf = 4 << 20;
    server_ = std::make_unique<UdpServer>(o, handler_);
    std::string err;
    ASSERT_EQ(server_->start(&err), 0) << err;
    ASSERT_EQ(server_->io_name(), GetParam());
    ASSERT_NE(server_->port(), 0);
  }

  UdpEcho handler_;
  std::unique_ptr<UdpServer> server_;
};

TEST_P(Udp, EchoesDatagramsUpToTheIpv4Maximum) {
  start();
  int fd = client_socket();
  for (size_t size : {size_t{1}, size_t{100}, size_t{1472}, size_t{9000}, size_t{65507}}) {
    std::string data = testing::random_bytes(size, size);
    send_to_port(fd, server_->port(), data);
    std::string back = recv_one(fd, 3000);
    EXPECT_EQ(back.size(), size);
    EXPECT_TRUE(back == data) << "size " << size;
  }
  // Empty datagrams are datagrams too.
  send_to_port(fd, server_->port(), "");
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1);
  char b;
  EXPECT_EQ(::recv(fd, &b, 1, 0), 0);
  ::close(fd);
  server_->stop();
  EXPECT_EQ(handler_.opened.load(), 1);
  EXPECT_EQ(handler_.closed.load(), 1);
}

TEST_P(Udp, BurstFromManyPeersIsEchoedToEachSender) {
  start();
  constexpr int kPeers = 8, kEach = 200;
  std::vector<int> fds;
  for (int i = 0; i < kPeers; ++i) fds.push_back(client_socket());
  for (int k = 0; k < kEach; ++k) {
    for (int i = 0; i < kPeers; ++i) {
      char msg[32];
      int n = std::snprintf(msg, sizeof msg, "peer %d msg %d", i, k);
      send_to_port(fds[i], server_->port(), std::string_view(msg, n));
    }
  }
  // Loopback with large buffers should not drop; allow a little anyway.
  int total = 0;
  for (int i = 0; i < kPeers; ++i) {
    int got = 0;
    for (;;) {
      std::string d = recv_one(fds[i], got < kEach ? 1000 : 0);
      if (d.empty()) break;
      EXPECT_EQ(d.rfind("peer " + std::to_string(i) + " ", 0), 0u) << "echo went to the wrong peer";
      ++got;
    }
    total += got;
    ::close(fds[i]);
  }
  EXPECT_GE(total, kPeers * kEach * 98 / 100);
}

TEST_P(Udp, SeveralLoopsShareThePortWithReusePort) {
  start(3);
  // Distinct source ports hash to different sockets; each peer gets its
  // own echoes, whichever loop serves it.
  std::vector<int> fds;
  for (int i = 0; i < 24; ++i) fds.push_back(client_socket());
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < fds.size(); ++i) {
      std::string msg = "m" + std::to_string(i) + "." + std::to_string(round);
      send_to_port(fds[i], server_->port(), msg);
      EXPECT_EQ(recv_one(fds[i], 3000), msg);
    }
  }
  for (int fd : fds) ::close(fd);
  {
    std::lock_guard<std::mutex> lock(handler_.mu);
    EXPECT_GE(handler_.loops.size(), 2u) << "all 24 peers landed on one loop";
  }
  server_->stop();
  EXPECT_EQ(handler_.opened.load(), 3);
  EXPECT_EQ(handler_.closed.load(), 3);
}

TEST_P(Udp, SendQueueIsBoundedAndOversizeIsRefused) {
  std::string err;
  auto loop = EventLoop::create(GetParam(), {}, &err);
  ASSERT_TRUE(loop) << err;
  struct Owner final : UdpEndpoint::Owner {
    explicit Owner(EventLoop& l) : loop(l) {}
    void release(UdpEndpoint& ep) override {
      released = true;
      loop.destroy_later(std::move(owned));
      (void)ep;
    }
    EventLoop& loop;
    std::unique_ptr<UdpEndpoint> owned;
    bool released = false;
  } owner(*loop);
  UdpEcho h;
  int fd = bind_udp("127.0.0.1", 0, {});
  ASSERT_GE(fd, 0);
  owner.owned = std::make_unique<UdpEndpoint>(*loop, fd, h, owner, 4);
  UdpEndpoint& ep = *owner.owned;
  ASSERT_EQ(ep.start(), 0);
  int rx = client_socket();
  sockaddr_storage to;
  socklen_t len;
  make_address("127.0.0.1", local_port(rx), &to, &len);
  // Queued within one iteration: the fifth is refused (queue of 4).
  int accepted = 0;
  for (int i = 0; i < 6; ++i) {
    accepted += ep.send_to(reinterpret_cast<sockaddr*>(&to), len, "x") ? 1 : 0;
  }
  EXPECT_EQ(accepted, 4);
  EXPECT_EQ(ep.stats().dropped_full, 2u);
  EXPECT_FALSE(ep.send_to(reinterpret_cast<sockaddr*>(&to), len,
                          std::string(io::kMaxDatagram + 1, 'y')));
  EXPECT_EQ(ep.stats().dropped_too_big, 1u);
  // Let the loop flush, collect the 4 at the receiver, then close.
  int got = 0;
  bool closing = false;
  loop->run_every(1ms, [&] {
    char b[16];
    while (::recv(rx, b, sizeof b, MSG_DONTWAIT) > 0) ++got;
    if (got >= 4 && !closing) {
      closing = true;
      ep.close();
    }
    if (owner.released) loop->quit();
  });
  loop->run_after(5s, [&] { loop->quit(); });  // bound if something never comes
  loop->run();
  EXPECT_EQ(got, 4);
  EXPECT_TRUE(owner.released);
  EXPECT_EQ(recv_one(rx, 50), "");  // nothing beyond the 4
  ::close(rx);
}

TEST(UdpServerErrors, PortInUseFailsCleanly) {
  int fd = bind_udp("127.0.0.1", 0, {});
  UdpEcho h;
  UdpServerOptions o;
  o.port = local_port(fd);
  o.io = "epoll";
  UdpServer s(o, h);
  std::string err;
  EXPECT_EQ(s.start(&err), -EADDRINUSE);
  EXPECT_NE(err.find("cannot bind"), std::string::npos) << err;
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Udp, ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

}  // namespace
}  // namespace sluice
