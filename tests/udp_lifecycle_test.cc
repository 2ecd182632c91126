// UDP endpoint life cycle on every registered back end: a close sends
// every datagram queued before it (within the close's flush bound), a
// handler that pauses reading mid-batch gets nothing more until it resumes
// (then everything, in order), and a UdpServer whose loop died on a
// back-end failure still closes its endpoints (on_close, fd) and never
// hangs in start() or stop(); a socket error closes an endpoint once and
// says so. The dead loop is forced on epoll by putting
// /dev/null in place of the loop's epoll descriptor: epoll_wait then fails
// with EINVAL, as a real back-end failure would.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
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
#include "tests/backend_harness.h"
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

std::string numbered(uint32_t seq, size_t size) {
  std::string s(size, 'x');
  std::memcpy(s.data(), &seq, sizeof seq);
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
    got.push_back(testing::seq_of({buf, static_cast<size_t>(n)}));
  }
  return got;
}

class UdpLifecycle : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string why = testing::udp_skip_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << why;
  }
};

// Answers a 4-byte count N with N numbered 64-byte datagrams. With `hold`
// it then holds its loop until the test has called stop(), so the close
// runs in the same iteration, before the end-of-iteration flush.
class Burst final : public DatagramHandler {
 public:
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
    const uint32_t n = testing::seq_of(d.data);
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
    ASSERT_TRUE(testing::send_to(fd, server.port(), numbered(n, 4)));
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

// Turns reading off on the first datagram it sees.
class Pauser final : public DatagramHandler {
 public:
  void on_open(UdpEndpoint& ep) override { endpoint = &ep; }
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      got.push_back(testing::seq_of(d.data));
    }
    if (pause_next.exchange(false)) {
      ep.set_want_read(false);
      ep.loop().backend().update(ep);
    }
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return got.size();
  }
  std::atomic<UdpEndpoint*> endpoint{nullptr};
  std::atomic<bool> pause_next{true};
  std::mutex mu;
  std::vector<uint32_t> got;
};

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Bug 5: ten datagrams wait in the socket, so a reactor takes them in one
// recvmmsg batch; the handler pauses on the first. Nothing more may arrive
// until it resumes; then the held ones come, in order, before newer ones.
TEST_P(UdpLifecycle, PauseMidBatchHoldsTheRestUntilResumed) {
  Pauser h;
  UdpServerOptions o;
  o.io = GetParam();
  UdpServer server(o, h);
  std::string err;
  ASSERT_EQ(server.start(&err), 0) << err;
  UdpEndpoint* ep = h.endpoint.load();
  ASSERT_NE(ep, nullptr);
  EventLoop& loop = ep->loop();
  // Hold the loop while the batch is queued in the kernel.
  std::promise<void> sent;
  std::shared_future<void> sent_f = sent.get_future().share();
  loop.post([sent_f] { sent_f.wait(); });
  int fd = big_client();
  for (uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(testing::send_to(fd, server.port(), numbered(i, 32)));
  sent.set_value();
  ASSERT_TRUE(wait_for([&] { return h.count() >= 1; }, 5s));
  std::this_thread::sleep_for(200ms);
  const size_t extra = h.count() - 1;
  std::printf("UDP-PAUSE io=%s extra_after_pause=%zu\n", GetParam().c_str(), extra);
  EXPECT_EQ(extra, 0u) << "datagrams delivered after the handler paused reading";
  // Resume on the loop thread, then send more: the held ones come first.
  loop.post([ep] {
    ep->set_want_read(true);
    ep->loop().backend().update(*ep);
  });
  ASSERT_TRUE(wait_for([&] { return h.count() >= 10; }, 5s)) << h.count();
  for (uint32_t i = 10; i < 15; ++i) ASSERT_TRUE(testing::send_to(fd, server.port(), numbered(i, 32)));
  EXPECT_TRUE(wait_for([&] { return h.count() >= 15; }, 5s)) << h.count();
  server.stop();
  ::close(fd);
  std::lock_guard<std::mutex> lock(h.mu);
  ASSERT_EQ(h.got.size(), 15u);
  for (uint32_t i = 0; i < 15; ++i) EXPECT_EQ(h.got[i], i) << "position " << i;
}

// Descriptors of this process whose /proc/self/fd link reads `what`.
std::set<int> fds_of(const std::string& what) {
  std::set<int> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(e.path(), ec);
    if (!ec && target.string() == what) out.insert(std::stoi(e.path().filename().string()));
  }
  return out;
}

int newest(const std::set<int>& now, const std::set<int>& before) {
  int fd = -1;
  for (int f : now) {
    if (!before.count(f)) fd = std::max(fd, f);
  }
  return fd;
}

// Makes the loop owning epoll descriptor `ep` (and eventfd `wake`) fail:
// its next epoll_wait sees /dev/null (EINVAL) and run() returns.
void kill_loop(int ep, int wake) {
  int nul = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(nul, 0);
  ASSERT_EQ(::dup2(nul, ep), ep);
  ::close(nul);
  uint64_t one = 1;
  ASSERT_EQ(::write(wake, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  std::this_thread::sleep_for(100ms);  // the loop wakes up, fails, exits
}

// Runs fn on a thread of its own; false if it did not finish within
// limit. A hang cannot be undone, so the process then exits (failing).
bool finishes_within(std::chrono::milliseconds limit, std::function<void()> fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> f = done->get_future();
  std::thread([fn = std::move(fn), done] {
    fn();
    done->set_value();
  }).detach();
  if (f.wait_for(limit) == std::future_status::ready) return true;
  std::fprintf(stderr, "hung for %lld ms: exiting\n", static_cast<long long>(limit.count()));
  return false;
}

class Counting final : public DatagramHandler {
 public:
  void on_open(UdpEndpoint& ep) override {
    ++opened;
    if (hook) hook(ep);
  }
  void on_datagram(UdpEndpoint&, const io::Datagram&) override {}
  void on_close(UdpEndpoint&) override { ++closed; }
  std::atomic<int> opened{0}, closed{0};
  std::function<void(UdpEndpoint&)> hook;  // on_open, loop thread
};

const char kEpollLink[] = "anon_inode:[eventpoll]";
const char kEventfdLink[] = "anon_inode:[eventfd]";

// Seen: the loop exits on a back-end failure; stop() must still run
// on_close and close the socket (the port is free again afterwards).
TEST(UdpServerDeadLoop, StopClosesTheEndpointOfALoopThatDied) {
  if (!io::probe("epoll").available) GTEST_SKIP() << "epoll unavailable here";
  const auto ep_before = fds_of(kEpollLink), ev_before = fds_of(kEventfdLink);
  Counting h;
  UdpServerOptions o;
  o.io = "epoll";
  auto server = std::make_unique<UdpServer>(o, h);
  std::string err;
  ASSERT_EQ(server->start(&err), 0) << err;
  const uint16_t port = server->port();
  const int ep = newest(fds_of(kEpollLink), ep_before);
  const int wake = newest(fds_of(kEventfdLink), ev_before);
  ASSERT_GE(ep, 0);
  ASSERT_GE(wake, 0);
  kill_loop(ep, wake);
  if (!finishes_within(5s, [&] { server.reset(); })) std::_Exit(1);
  EXPECT_EQ(h.opened.load(), 1);
  EXPECT_EQ(h.closed.load(), 1) << "on_close never ran";
  int fd = bind_udp("127.0.0.1", port, {});
  EXPECT_GE(fd, 0) << "the socket leaked: port " << port << " is still bound";
  if (fd >= 0) ::close(fd);
}

// Code reading: start() waits for each loop to attach its endpoint; a loop
// that died before running that task must make start() fail, not hang.
// Loop 0's on_open kills loop 1 before start() posts loop 1's attach.
TEST(UdpServerDeadLoop, StartFailsInsteadOfWaitingForADeadLoop) {
  if (!io::probe("epoll").available) GTEST_SKIP() << "epoll unavailable here";
  const auto ep_before = fds_of(kEpollLink), ev_before = fds_of(kEventfdLink);
  Counting h;
  h.hook = [&](UdpEndpoint&) {
    // Loop 1 was created after loop 0: its descriptors are the newest.
    kill_loop(newest(fds_of(kEpollLink), ep_before), newest(fds_of(kEventfdLink), ev_before));
  };
  UdpServerOptions o;
  o.io = "epoll";
  o.threads = 2;
  auto server = std::make_unique<UdpServer>(o, h);
  int rc = 0;
  std::string err;
  if (!finishes_within(5s, [&] { rc = server->start(&err); })) std::_Exit(1);
  EXPECT_LT(rc, 0);
  EXPECT_FALSE(err.empty());
  std::printf("start() with a dead loop: %d (%s)\n", rc, err.c_str());
  const uint16_t port = server->port();
  server.reset();
  EXPECT_EQ(h.opened.load(), 1);
  EXPECT_EQ(h.closed.load(), 1);
  int fd = bind_udp("127.0.0.1", port, {});
  EXPECT_GE(fd, 0) << "a socket leaked: port " << port << " is still bound";
  if (fd >= 0) ::close(fd);
}

// A receive error that makes the socket unusable closes the endpoint once,
// with the error in close_error() for on_close (a handler can say what
// happened, not "server stopping"), instead of retrying it forever. Forced
// by putting /dev/null in place of the socket, which the back ends that
// watch descriptor numbers (nonblocking, select, poll) then read: ENOTSOCK.
class UdpSocketError : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
  }
};

class ErrorWatch final : public DatagramHandler {
 public:
  void on_open(UdpEndpoint& ep) override {
    loop = &ep.loop();
    fd = ep.fd();
  }
  void on_datagram(UdpEndpoint&, const io::Datagram&) override {}
  void on_close(UdpEndpoint& ep) override {
    error = ep.close_error();
    ++closed;
  }
  std::atomic<EventLoop*> loop{nullptr};
  std::atomic<int> fd{-1}, error{0}, closed{0};
};

TEST_P(UdpSocketError, ClosesTheEndpointAndSaysWhy) {
  ErrorWatch h;
  UdpServerOptions o;
  o.io = GetParam();
  auto server = std::make_unique<UdpServer>(o, h);
  std::string err;
  ASSERT_EQ(server->start(&err), 0) << err;
  ASSERT_GE(h.fd.load(), 0);
  // Swapped on the loop thread, between two of its waits: the loop owns the
  // descriptor (and a swap from here races its close, as TSan reports).
  std::promise<int> swapped;
  h.loop.load()->post([&h, &swapped] {
    const int nul = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const int rc = nul < 0 ? -1 : ::dup2(nul, h.fd.load());
    if (nul >= 0) ::close(nul);
    swapped.set_value(rc);
  });
  ASSERT_EQ(swapped.get_future().get(), h.fd.load());
  h.loop.load()->post([] {});  // a loop already in select()/poll() looks again
  EXPECT_TRUE(wait_for([&] { return h.closed.load() > 0; }, 3s)) << "the error did not close it";
  if (!finishes_within(5s, [&] { server.reset(); })) std::_Exit(1);
  EXPECT_EQ(h.closed.load(), 1);
  EXPECT_EQ(h.error.load(), -ENOTSOCK) << std::strerror(-h.error.load());
}

INSTANTIATE_TEST_SUITE_P(ByDescriptorNumber, UdpSocketError,
                         ::testing::Values("nonblocking", "select", "poll"),
                         sluice::testing::BackendName());

INSTANTIATE_TEST_SUITE_P(AllBackends, UdpLifecycle,
                         ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

}  // namespace
}  // namespace sluice
