// Every back end reports a received datagram's ECN codepoint
// (io::Datagram::ecn) on a socket that asked for it (set_udp_ecn): a plain
// socket sends on loopback with IP_TOS 0..3, the channel sees each
// codepoint; with reading paused after the first datagram, the rest (held
// back by the back end) keep theirs. The io_uring back end also runs with
// its single-shot recvmsg fallback ("uring-single").
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/net.h"
#include "io/backend.h"
#include "io/registry.h"
#include "io/uring.h"
#include "tests/backend_params.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

class Sink final : public io::Channel {
 public:
  explicit Sink(int fd) : io::Channel(fd, Kind::kDatagram) {}
  void on_datagram(const io::Datagram& d) override {
    got[std::string(d.data)] = d.ecn;
    order.emplace_back(d.data);
    if (pause_after_first) set_want_read(false);
  }
  void on_detached() override { detached = true; }
  std::map<std::string, int> got;
  std::vector<std::string> order;
  bool pause_after_first = false;
  bool detached = false;
};

std::vector<std::string> params() {
  std::vector<std::string> v = testing::all_backends();
  v.push_back("uring-single");
  return v;
}

class UdpEcnTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string name = GetParam();
    std::string error;
    if (name == "uring-single") {
      io::UringTuning t;
      t.disable_multishot_recvmsg = true;
      if (!io::probe("uring").available) GTEST_SKIP() << io::probe("uring").reason;
      backend_ = io::make_uring_backend_tuned({}, t);
    } else {
      io::BackendInfo info = io::probe(name);
      if (!info.available) GTEST_SKIP() << info.reason;
      backend_ = io::create(name, {}, &error);
    }
    ASSERT_TRUE(backend_) << error;
  }

  // Sends payload "tos<N>" from a fresh socket with IP_TOS = N.
  static void send_with_tos(uint16_t port, int tos) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos), 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string p = "tos" + std::to_string(tos);
    ASSERT_EQ(::sendto(fd, p.data(), p.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(p.size()));
    ::close(fd);
  }

  void run(bool pause) {
    const int fd = bind_udp("127.0.0.1", 0, {});
    ASSERT_GE(fd, 0);
    ASSERT_EQ(set_udp_ecn(fd, true, io::kEct0), 0);
    int tos = 0;
    socklen_t len = sizeof tos;
    ASSERT_EQ(::getsockopt(fd, IPPROTO_IP, IP_TOS, &tos, &len), 0);
    EXPECT_EQ(tos & 3, io::kEct0);
    sockaddr_in me{};
    len = sizeof me;
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len), 0);
    const uint16_t port = ntohs(me.sin_port);

    Sink sink(fd);
    sink.pause_after_first = pause;
    ASSERT_EQ(backend_->attach(sink), 0);
    for (int t = 0; t < 4; ++t) send_with_tos(port, t);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    bool resumed = false;
    while (sink.got.size() < 4 && std::chrono::steady_clock::now() < deadline) {
      backend_->wait(20ms);
      if (pause && !sink.got.empty() && !resumed) {
        // Tell the back end (as the core does on backpressure), let the
        // rest arrive (and be held), then resume.
        backend_->update(sink);
        for (int i = 0; i < 5; ++i) backend_->wait(10ms);
        sink.pause_after_first = false;
        sink.set_want_read(true);
        backend_->update(sink);
        resumed = true;
      }
    }
    for (int t = 0; t < 4; ++t) {
      const std::string p = "tos" + std::to_string(t);
      ASSERT_TRUE(sink.got.count(p)) << p;
      EXPECT_EQ(sink.got[p], t) << p;
    }
    backend_->detach(sink);
    while (!sink.detached && std::chrono::steady_clock::now() < deadline + 5s) {
      backend_->wait(10ms);
    }
    EXPECT_TRUE(sink.detached);
    ::close(fd);
  }

  std::unique_ptr<io::Backend> backend_;
};

TEST_P(UdpEcnTest, ReportsTheCodepoint) { run(false); }

TEST_P(UdpEcnTest, HeldDatagramsKeepTheirCodepoint) { run(true); }

INSTANTIATE_TEST_SUITE_P(AllBackends, UdpEcnTest, ::testing::ValuesIn(params()),
                         testing::BackendName());

// A socket that did not ask gets 0 (no cmsg), on a reactor back end.
TEST(UdpEcnDefault, NotAskedNoCodepoint) {
  std::string error;
  auto b = io::create("epoll", {}, &error);
  if (!b) GTEST_SKIP() << error;
  const int fd = bind_udp("127.0.0.1", 0, {});
  ASSERT_GE(fd, 0);
  sockaddr_in me{};
  socklen_t len = sizeof me;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len), 0);
  Sink sink(fd);
  ASSERT_EQ(b->attach(sink), 0);
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int tos = 3;
  ASSERT_EQ(::setsockopt(s, IPPROTO_IP, IP_TOS, &tos, sizeof tos), 0);
  ASSERT_EQ(::sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&me), sizeof me), 1);
  ::close(s);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (sink.got.empty() && std::chrono::steady_clock::now() < deadline) b->wait(20ms);
  ASSERT_EQ(sink.got.count("x"), 1u);
  EXPECT_EQ(sink.got["x"], 0);
  b->detach(sink);
  while (!sink.detached && std::chrono::steady_clock::now() < deadline) b->wait(10ms);
  ::close(fd);
}

}  // namespace
}  // namespace sluice
