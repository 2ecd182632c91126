// The uring back end driven directly (no core): small Channel subclasses,
// 127.0.0.1 ephemeral ports, plain blocking client sockets in other
// threads, the test thread running wait() in bounded loops.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "io/uring.h"
#include "tests/backend_harness.h"
#include "tests/test_util.h"

namespace sluice::io {
namespace {

using sluice::testing::kernel_rx_queue;
using sluice::testing::local_addr;
using sluice::testing::Received;
using sluice::testing::recv_dgram;
using sluice::testing::send_to;
using sluice::testing::random_bytes;
using sluice::testing::seq_of;
using sluice::testing::set_timeouts;
using sluice::testing::udp_local;
using sluice::testing::udp_round_robin_echo;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------ helpers --

int make_listener(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
      ::listen(fd, 1024) < 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int connect_fd(int fd, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return 0;
  int err = errno;
  if (err != EINTR) return -err;
  // Interrupted (without DEFER_TASKRUN the ring's task work interrupts
  // blocking calls on the issuer thread, and this test thread is the loop
  // thread): the connect goes on; wait for it.
  pollfd p{fd, POLLOUT, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, 30000);
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) return -ETIMEDOUT;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return -err;
}

// Blocking client socket, or -errno. rcvbuf > 0 sets SO_RCVBUF first.
int connect_local(uint16_t port, int rcvbuf = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (rcvbuf > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  }
  set_timeouts(fd, 30000ms);
  int rc = connect_fd(fd, port);
  if (rc < 0) {
    ::close(fd);
    return rc;
  }
  return fd;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads up to n bytes (less on EOF / error / timeout).
std::string recv_n(int fd, size_t n, size_t chunk = 256 * 1024,
                   std::chrono::microseconds pause = 0us) {
  std::string out;
  out.reserve(n);
  std::vector<char> buf(chunk);
  while (out.size() < n) {
    ssize_t r = ::recv(fd, buf.data(), std::min(chunk, n - out.size()), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.append(buf.data(), static_cast<size_t>(r));
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
  return out;
}

void hard_close(int fd) {  // RST instead of FIN
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

// ----------------------------------------------------------- channels --

// A stream channel that echoes (by default) and records every callback.
class Conn : public Channel {
 public:
  Conn(Backend* be, int fd) : Channel(fd, Kind::kStream), be_(be) {}
  ~Conn() override {
    if (!closed_) ::close(fd());
  }

  void on_input(std::string_view data) override {
    alive();
    const size_t n = data.size();
    ++inputs;
    in_bytes += n;
    if (input_hook) input_hook(*this, n);
    if (echo) {
      output().append(data);
      be_->update(*this);
    } else {
      got.append(data);  // the view is only valid during the call
    }
  }
  void on_sent(size_t n) override {
    alive();
    sent_bytes += n;
    if (sent_hook) sent_hook(*this, n);
  }
  void on_eof() override {
    alive();
    ++eofs;
    eof_at_bytes = in_bytes;
    if (auto_detach) be_->detach(*this);
  }
  void on_error(int err) override {
    alive();
    ++errors;
    last_error = err;
    if (auto_detach) be_->detach(*this);
  }
  void on_detached() override {
    ++detached;
    if (!closed_) {
      ::close(fd());
      closed_ = true;
    }
  }

  Backend* be_;
  bool echo = true;
  bool auto_detach = true;  // on eof / error
  std::function<void(Conn&, size_t)> input_hook;
  std::function<void(Conn&, size_t)> sent_hook;
  size_t inputs = 0, in_bytes = 0, sent_bytes = 0, eof_at_bytes = 0;
  std::string got;  // input kept when not echoing
  int eofs = 0, errors = 0, last_error = 0, detached = 0, late = 0;

 private:
  void alive() {
    if (detached) ++late;  // a callback after on_detached
  }
  bool closed_ = false;
};

class Listener : public Channel {
 public:
  Listener(Backend* be, int fd) : Channel(fd, Kind::kListener), be_(be) {}
  ~Listener() override { ::close(fd()); }

  void on_accept(int fd) override {
    if (detached) ++late;
    ++accepts;
    EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
    auto c = std::make_unique<Conn>(be_, fd);
    if (setup) setup(*c);
    int rc = be_->attach(*c);
    EXPECT_EQ(rc, 0);
    conns.push_back(std::move(c));
    if (after_attach) after_attach(*conns.back());
    max_live = std::max(max_live, live());
  }
  void on_accept_error(int err) override {
    if (detached) ++late;
    ++accept_errors;
    last_accept_error = err;
  }
  void on_detached() override { ++detached; }

  size_t live() const {
    size_t n = 0;
    for (const auto& c : conns) n += c->detached == 0;
    return n;
  }
  int late_total() const {
    int n = late;
    for (const auto& c : conns) n += c->late;
    return n;
  }

  Backend* be_;
  std::vector<std::unique_ptr<Conn>> conns;
  std::function<void(Conn&)> setup;         // before attach
  std::function<void(Conn&)> after_attach;  // after attach
  int accepts = 0, accept_errors = 0, last_accept_error = 0, detached = 0,
      late = 0;
  size_t max_live = 0;
};

// Drives wait() until pred() holds or the deadline passes.
template <class Pred>
bool pump(Backend& be, Pred pred, std::chrono::milliseconds limit = 30s) {
  auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    int n = be.wait(10ms);
    EXPECT_GE(n, 0);
    if (n < 0) return false;
  }
  return true;
}

void pump_for(Backend& be, std::chrono::milliseconds d) {
  auto deadline = Clock::now() + d;
  while (Clock::now() < deadline) {
    EXPECT_GE(be.wait(5ms), 0);
  }
}

struct Server {
  std::unique_ptr<UringBackend> be;
  std::unique_ptr<Listener> lis;
  uint16_t port = 0;

  explicit Server(const UringTuning& tuning = {}) {
    BackendOptions opts;
    opts.uring_entries = 1024;
    be = make_uring_backend_tuned(opts, tuning);
    if (!be) return;
    uint16_t p = 0;
    int fd = make_listener(&p);
    EXPECT_GE(fd, 0);
    port = p;
    lis = std::make_unique<Listener>(be.get(), fd);
    EXPECT_EQ(be->attach(*lis), 0);
  }

  // Detaches everything and waits for every on_detached.
  void shutdown() {
    if (!be) return;
    for (auto& c : lis->conns) be->detach(*c);
    be->detach(*lis);
    EXPECT_TRUE(pump(*be, [&] {
      if (lis->detached != 1) return false;
      for (auto& c : lis->conns)
        if (c->detached != 1) return false;
      return true;
    }));
    EXPECT_EQ(lis->late_total(), 0);
  }
};

class UringBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = probe_uring();
    if (!why.empty()) GTEST_SKIP() << "io_uring unavailable: " << why;
    ::signal(SIGPIPE, SIG_IGN);
  }
};

// Echo one payload through a fresh connection; returns the echoed bytes.
std::string echo_once(Server& s, const std::string& data) {
  std::string got;
  std::atomic<bool> done{false};
  std::thread client([&] {
    int fd = connect_local(s.port);
    if (fd < 0) {
      done = true;
      return;
    }
    std::thread writer([&] { send_all(fd, data); });
    got = recv_n(fd, data.size());
    writer.join();
    ::close(fd);
    done = true;
  });
  EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }, 60s));
  client.join();
  return got;
}

// --------------------------------------------------------------- tests --

TEST_F(UringBackendTest, ProbeAndSetupFlags) {
  BackendOptions opts;
  auto plain = make_uring_backend(opts);
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->name(), "uring");
  Server s;
  ASSERT_NE(s.be, nullptr);
  const UringInfo& info = s.be->info();
  std::cout << "uring info: " << info.describe() << "\n";
  RecordProperty("uring_info", info.describe());
  EXPECT_NE(info.sq_entries, 0u);
  EXPECT_FALSE(describe_uring_setup_flags(info.setup_flags).empty());
  s.shutdown();
}

TEST_F(UringBackendTest, EchoIntegrity1BTo16MiB) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  const size_t sizes[] = {1,         2,          100,         4096,
                          16 * 1024, 65536 + 3,  1 << 20,     (3 << 20) + 7,
                          16 << 20};
  uint64_t seed = 1;
  for (size_t n : sizes) {
    std::string data = random_bytes(n, seed++);
    std::string got = echo_once(s, data);
    ASSERT_EQ(got.size(), data.size()) << "size " << n;
    ASSERT_TRUE(got == data) << "corrupt echo, size " << n;
  }
  // Each client closed after reading: every server conn saw EOF.
  EXPECT_TRUE(pump(*s.be, [&] { return s.lis->live() == 0; }));
  for (auto& c : s.lis->conns) {
    EXPECT_EQ(c->eofs, 1);
    EXPECT_EQ(c->errors, 0);
    EXPECT_EQ(c->sent_bytes, c->in_bytes);
  }
  EXPECT_EQ(s.lis->accepts, static_cast<int>(std::size(sizes)));
  s.shutdown();
}

TEST_F(UringBackendTest, TwoHundredConcurrentConnections) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  constexpr size_t kConns = 200;
  constexpr size_t kBytes = 16 * 1024;
  std::atomic<bool> done{false};
  std::atomic<size_t> ok{0};
  std::thread client([&] {
    std::vector<int> fds;
    for (size_t i = 0; i < kConns; ++i) {
      int fd = connect_local(s.port);
      if (fd < 0) break;
      fds.push_back(fd);
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      send_all(fds[i], random_bytes(kBytes, 1000 + i));
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (recv_n(fds[i], kBytes) == random_bytes(kBytes, 1000 + i)) ++ok;
    }
    for (int fd : fds) ::close(fd);
    done = true;
  });
  EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }, 60s));
  client.join();
  EXPECT_EQ(ok.load(), kConns);
  EXPECT_EQ(s.lis->max_live, kConns);  // all open at once
  EXPECT_TRUE(pump(*s.be, [&] { return s.lis->live() == 0; }));
  s.shutdown();
}

TEST_F(UringBackendTest, ShortSendsAreContinued) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  constexpr size_t kTotal = 4 << 20;
  const std::string data = random_bytes(kTotal, 77);
  size_t queued = 0;
  s.lis->setup = [](Conn& c) {
    c.echo = false;
    int sz = 4096;
    ::setsockopt(c.fd(), SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  };
  auto queue_more = [&](Conn& c) {
    size_t n = std::min<size_t>(512 * 1024, kTotal - queued);
    if (n == 0) return;
    c.output().append(data.data() + queued, n);
    queued += n;
    c.be_->update(c);
  };
  s.lis->after_attach = [&](Conn& c) {
    queue_more(c);  // the first 512 KiB at once ...
    c.sent_hook = [&](Conn& cc, size_t) {
      // ... the rest while sends are in flight (swap-again path).
      if (queued < kTotal && cc.output().readable() < 64 * 1024) {
        queue_more(cc);
      }
    };
  };
  std::string got;
  std::atomic<bool> done{false};
  std::thread client([&] {
    int fd = connect_local(s.port, 4096);
    got = recv_n(fd, kTotal, 8192, 100us);  // slow reader
    ::close(fd);
    done = true;
  });
  EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }, 120s));
  client.join();
  ASSERT_EQ(got.size(), kTotal);
  EXPECT_TRUE(got == data);
  ASSERT_EQ(s.lis->conns.size(), 1u);
  EXPECT_EQ(s.lis->conns[0]->sent_bytes, kTotal);
  EXPECT_GT(s.be->stats().partial_sends, 0u);
  std::cout << "sends=" << s.be->stats().sends
            << " partial=" << s.be->stats().partial_sends << "\n";
  s.shutdown();
}

TEST_F(UringBackendTest, BackpressureStopsAndResumesInput) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  s.lis->setup = [](Conn& c) { c.echo = false; };
  const std::string first = random_bytes(1000, 5);
  const std::string second = random_bytes(200 * 1024, 6);
  int fd = connect_local(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, first));
  ASSERT_TRUE(pump(*s.be, [&] {
    return !s.lis->conns.empty() && s.lis->conns[0]->in_bytes == first.size();
  }));
  Conn& c = *s.lis->conns[0];
  c.set_want_read(false);
  s.be->update(c);
  pump_for(*s.be, 100ms);  // the cancel takes effect
  size_t inputs = c.inputs;
  size_t buffered = c.got.size();

  std::thread writer([&] { send_all(fd, second); });
  pump_for(*s.be, 300ms);
  EXPECT_EQ(c.inputs, inputs) << "on_input while want_read() is false";
  EXPECT_EQ(c.got.size(), buffered);

  c.set_want_read(true);
  s.be->update(c);
  EXPECT_TRUE(pump(*s.be, [&] {
    return c.in_bytes == first.size() + second.size();
  }));
  writer.join();
  EXPECT_GT(c.inputs, inputs);
  EXPECT_TRUE(c.got == first + second);

  // Toggle repeatedly while data streams: nothing lost or reordered.
  c.got.clear();
  const std::string third = random_bytes(2 << 20, 7);
  std::thread writer2([&] { send_all(fd, third); });
  for (int i = 0; i < 40 && c.got.size() < third.size(); ++i) {
    c.set_want_read(i % 2 == 1);
    s.be->update(c);
    size_t before = c.inputs;
    pump_for(*s.be, 5ms);
    if (!c.want_read()) {
      // CQEs already in flight are held back, never delivered now.
      EXPECT_EQ(c.inputs, before);
    }
  }
  c.set_want_read(true);
  s.be->update(c);
  EXPECT_TRUE(pump(*s.be, [&] { return c.got.size() == third.size(); }));
  writer2.join();
  EXPECT_TRUE(c.got == third);
  ::close(fd);
  s.shutdown();
}

TEST_F(UringBackendTest, PeerResetMidTransferIsAnError) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  s.lis->setup = [](Conn& c) { c.echo = false; };
  s.lis->after_attach = [](Conn& c) {
    c.output().append(random_bytes(32 << 20, 9));
    c.be_->update(c);
  };
  int fd = connect_local(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(pump(*s.be, [&] {
    return !s.lis->conns.empty() && s.lis->conns[0]->sent_bytes > 0;
  }));
  EXPECT_EQ(recv_n(fd, 64 * 1024).size(), 64u * 1024);
  hard_close(fd);
  Conn& c = *s.lis->conns[0];
  EXPECT_TRUE(pump(*s.be, [&] { return c.detached == 1; }));
  EXPECT_EQ(c.errors, 1);
  EXPECT_TRUE(c.last_error == -ECONNRESET || c.last_error == -EPIPE)
      << c.last_error;
  EXPECT_EQ(c.eofs, 0);
  pump_for(*s.be, 50ms);
  EXPECT_EQ(c.late, 0);
  EXPECT_EQ(c.detached, 1);
  s.shutdown();
}

TEST_F(UringBackendTest, PeerResetWhileReadingIsAnError) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  s.lis->setup = [](Conn& c) { c.echo = false; };
  int fd = connect_local(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "partial request"));
  ASSERT_TRUE(pump(*s.be, [&] {
    return !s.lis->conns.empty() && s.lis->conns[0]->in_bytes == 15;
  }));
  hard_close(fd);
  Conn& c = *s.lis->conns[0];
  EXPECT_TRUE(pump(*s.be, [&] { return c.detached == 1; }));
  EXPECT_EQ(c.errors, 1);
  EXPECT_EQ(c.last_error, -ECONNRESET);
  s.shutdown();
}

TEST_F(UringBackendTest, EofAfterAllInput) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  s.lis->setup = [](Conn& c) { c.auto_detach = false; };
  int fd = connect_local(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "hello, world"));
  ::shutdown(fd, SHUT_WR);
  ASSERT_TRUE(pump(*s.be, [&] {
    return !s.lis->conns.empty() && s.lis->conns[0]->eofs == 1 &&
           s.lis->conns[0]->sent_bytes == 12;
  }));
  Conn& c = *s.lis->conns[0];
  EXPECT_EQ(c.eof_at_bytes, 12u);  // on_eof after every on_input
  EXPECT_EQ(c.errors, 0);
  // Half-close: the echo still went out.
  EXPECT_EQ(recv_n(fd, 12), "hello, world");
  pump_for(*s.be, 50ms);
  EXPECT_EQ(c.eofs, 1);
  s.be->detach(c);
  EXPECT_TRUE(pump(*s.be, [&] { return c.detached == 1; }));
  // The server closed: the client sees EOF.
  char b;
  EXPECT_EQ(::recv(fd, &b, 1, 0), 0);
  ::close(fd);
  s.shutdown();
}

TEST_F(UringBackendTest, DetachWithOpsInFlight) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  s.lis->setup = [](Conn& c) { c.echo = false; };
  s.lis->after_attach = [](Conn& c) {
    c.output().append(random_bytes(32 << 20, 3));  // stalls: nobody reads
    c.be_->update(c);
  };
  int fd = connect_local(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(pump(*s.be, [&] {
    return !s.lis->conns.empty() && s.lis->conns[0]->sent_bytes > 0;
  }));
  pump_for(*s.be, 50ms);
  Conn& c = *s.lis->conns[0];
  size_t inputs = c.inputs;
  s.be->detach(c);  // a recv and a send are in flight
  s.be->detach(c);  // idempotent
  EXPECT_EQ(c.detached, 0);
  EXPECT_TRUE(pump(*s.be, [&] { return c.detached == 1; }));

  // Detach a listener with its (multishot) accept in flight.
  s.be->detach(*s.lis);
  EXPECT_TRUE(pump(*s.be, [&] { return s.lis->detached == 1; }));

  // Whatever the peer does now, no more callbacks.
  send_all(fd, "more data after detach");
  int fd2 = connect_local(s.port);  // lands in the backlog, never accepted
  pump_for(*s.be, 200ms);
  ::close(fd);
  if (fd2 >= 0) ::close(fd2);
  pump_for(*s.be, 100ms);
  EXPECT_EQ(c.detached, 1);
  EXPECT_EQ(c.inputs, inputs);
  EXPECT_EQ(s.lis->detached, 1);
  EXPECT_EQ(s.lis->accepts, 1);
  EXPECT_EQ(s.lis->late_total(), 0);
  EXPECT_TRUE(c.io == nullptr);
}

TEST_F(UringBackendTest, DetachFromInsideCallbackAndBeforeFirstWait) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  // Detach from inside on_input, with an echo send just queued.
  s.lis->setup = [](Conn& c) {
    c.input_hook = [](Conn& cc, size_t) {
      cc.output().append("bye");
      cc.be_->update(cc);
      cc.be_->detach(cc);
    };
  };
  int fd = connect_local(s.port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "x"));
  ASSERT_TRUE(pump(*s.be, [&] {
    return !s.lis->conns.empty() && s.lis->conns[0]->detached == 1;
  }));
  send_all(fd, "y");
  pump_for(*s.be, 50ms);
  EXPECT_EQ(s.lis->conns[0]->inputs, 1u);
  EXPECT_EQ(s.lis->late_total(), 0);
  ::close(fd);

  // Attach then detach with no wait() in between: nothing was submitted.
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Conn quick(s.be.get(), sv[0]);
  ASSERT_EQ(s.be->attach(quick), 0);
  EXPECT_EQ(s.be->attach(quick), -EEXIST);
  s.be->detach(quick);
  EXPECT_EQ(quick.detached, 0);  // on_detached always comes from wait()
  EXPECT_TRUE(pump(*s.be, [&] { return quick.detached == 1; }));
  pump_for(*s.be, 20ms);
  EXPECT_EQ(quick.detached, 1);
  EXPECT_EQ(quick.late, 0);
  ::close(sv[1]);
  s.shutdown();
}

TEST_F(UringBackendTest, WakeupFromAnotherThread) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  pump_for(*s.be, 20ms);  // settle: accept armed, wake read submitted
  for (int round = 0; round < 3; ++round) {
    auto t0 = Clock::now();
    std::thread waker([&] {
      std::this_thread::sleep_for(50ms);
      s.be->wakeup();
    });
    int n = s.be->wait(-1ms);
    auto dt = Clock::now() - t0;
    waker.join();
    EXPECT_GE(n, 0);
    EXPECT_LT(dt, 5s);
    EXPECT_GE(dt, 40ms) << "round " << round;
  }
  // A wakeup before wait() also makes it return.
  s.be->wakeup();
  auto t0 = Clock::now();
  EXPECT_GE(s.be->wait(-1ms), 0);
  EXPECT_LT(Clock::now() - t0, 1s);
  // A storm of wakeups from several threads is coalesced; later ones work.
  std::vector<std::thread> storm;
  for (int i = 0; i < 4; ++i) {
    storm.emplace_back([&] {
      for (int j = 0; j < 1000; ++j) s.be->wakeup();
    });
  }
  for (auto& t : storm) t.join();
  EXPECT_GE(s.be->wait(-1ms), 0);
  pump_for(*s.be, 20ms);
  std::thread waker([&] {
    std::this_thread::sleep_for(30ms);
    s.be->wakeup();
  });
  t0 = Clock::now();
  EXPECT_GE(s.be->wait(-1ms), 0);
  EXPECT_LT(Clock::now() - t0, 5s);
  waker.join();
  EXPECT_GT(s.be->stats().wakeups, 0u);
  s.shutdown();
}

TEST_F(UringBackendTest, RingExhaustionTakesEnobufsPath) {
  UringTuning t;
  t.buf_count = 4;  // a tiny provided-buffer ring
  t.buf_size = 4096;
  Server s(t);
  ASSERT_NE(s.be, nullptr);
  if (!s.be->info().multishot_recv) {
    GTEST_SKIP() << "no multishot recv here: " << s.be->info().describe();
  }
  const std::string data = random_bytes(4 << 20, 11);
  std::string got = echo_once(s, data);
  ASSERT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
  EXPECT_GT(s.be->stats().enobufs, 0u);
  std::cout << "enobufs=" << s.be->stats().enobufs
            << " recv_arms=" << s.be->stats().recv_arms << "\n";

  // Many connections at once on the tiny ring.
  constexpr size_t kConns = 20;
  std::atomic<bool> done{false};
  std::atomic<size_t> ok{0};
  std::thread client([&] {
    std::vector<std::thread> ts;
    for (size_t i = 0; i < kConns; ++i) {
      ts.emplace_back([&, i] {
        int fd = connect_local(s.port);
        if (fd < 0) return;
        std::string d = random_bytes(256 * 1024, 500 + i);
        std::thread w([&] { send_all(fd, d); });
        if (recv_n(fd, d.size()) == d) ++ok;
        w.join();
        ::close(fd);
      });
    }
    for (auto& th : ts) th.join();
    done = true;
  });
  EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }, 60s));
  client.join();
  EXPECT_EQ(ok.load(), kConns);
  s.shutdown();
}

TEST_F(UringBackendTest, SingleShotFallbacks) {
  UringTuning t;
  t.disable_buf_ring = true;
  t.disable_multishot_accept = true;
  Server s(t);
  ASSERT_NE(s.be, nullptr);
  EXPECT_FALSE(s.be->info().multishot_recv);
  EXPECT_FALSE(s.be->info().multishot_accept);
  for (size_t n : {size_t{1}, size_t{70000}, size_t{5 << 20}}) {
    std::string data = random_bytes(n, n);
    EXPECT_TRUE(echo_once(s, data) == data) << n;
  }
  // Backpressure on the single-shot path.
  s.lis->setup = [](Conn& c) { c.echo = false; };
  int fd = connect_local(s.port);
  ASSERT_TRUE(send_all(fd, "abc"));
  ASSERT_TRUE(pump(*s.be, [&] {
    return s.lis->conns.size() == 4 && s.lis->conns[3]->in_bytes == 3;
  }));
  Conn& c = *s.lis->conns[3];
  c.set_want_read(false);
  s.be->update(c);
  pump_for(*s.be, 50ms);
  size_t inputs = c.inputs;
  ASSERT_TRUE(send_all(fd, "defg"));
  pump_for(*s.be, 100ms);
  EXPECT_EQ(c.inputs, inputs);
  c.set_want_read(true);
  s.be->update(c);
  EXPECT_TRUE(pump(*s.be, [&] { return c.in_bytes == 7; }));
  EXPECT_EQ(c.got, "abcdefg");
  ::close(fd);
  EXPECT_TRUE(pump(*s.be, [&] { return c.eofs == 1; }));
  s.shutdown();
}

// Every setup-flag tier (as a kernel that rejects the newer flags would
// get): echo, concurrency and detach with ops in flight all still work.
TEST_F(UringBackendTest, EverySetupTierWorks) {
  for (unsigned tier = 0; tier < 5; ++tier) {
    SCOPED_TRACE("tier " + std::to_string(tier));
    UringTuning t;
    t.first_setup_tier = tier;
    Server s(t);
    ASSERT_NE(s.be, nullptr);
    std::cout << "tier " << tier << ": " << s.be->info().describe() << "\n";
    for (size_t n : {size_t{1}, size_t{(1 << 20) + 3}}) {
      std::string data = random_bytes(n, tier * 100 + n);
      EXPECT_TRUE(echo_once(s, data) == data) << n;
    }
    std::atomic<bool> done{false};
    std::atomic<size_t> ok{0};
    std::thread client([&] {
      std::vector<int> fds;
      for (size_t i = 0; i < 50; ++i) fds.push_back(connect_local(s.port));
      for (size_t i = 0; i < fds.size(); ++i)
        send_all(fds[i], random_bytes(8192, i));
      for (size_t i = 0; i < fds.size(); ++i)
        if (recv_n(fds[i], 8192) == random_bytes(8192, i)) ++ok;
      for (int fd : fds) ::close(fd);
      done = true;
    });
    EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }));
    client.join();
    EXPECT_EQ(ok.load(), 50u);
    // A stalled send and a recv in flight, then detach everything.
    s.lis->setup = [](Conn& c) { c.echo = false; };
    s.lis->after_attach = [](Conn& c) {
      c.output().append(random_bytes(16 << 20, 1));
      c.be_->update(c);
    };
    int fd = connect_local(s.port);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(pump(*s.be, [&] { return s.lis->conns.back()->sent_bytes > 0; }));
    s.shutdown();
    ::close(fd);
  }
}

TEST_F(UringBackendTest, AcceptErrorsBackOffAndRecover) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  pump_for(*s.be, 20ms);
  // The kernel takes RLIMIT_NOFILE when an accept SQE is prepared, so
  // pause accepting, lower the limit, then let the back end re-arm.
  s.lis->set_want_read(false);
  s.be->update(*s.lis);
  pump_for(*s.be, 50ms);
  int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
  int probe = ::open("/dev/null", O_RDONLY | O_CLOEXEC);  // lowest free fd
  ASSERT_GE(probe, 0);
  ::close(probe);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(probe);  // no free descriptor left
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  s.lis->set_want_read(true);
  s.be->update(*s.lis);
  int rc = connect_fd(client, s.port);  // needs no new descriptor
  bool got_error = pump(*s.be, [&] { return s.lis->accept_errors > 0; }, 5s);
  int errors_before = s.lis->accept_errors;
  pump_for(*s.be, 300ms);
  int errors_in_300ms = s.lis->accept_errors - errors_before;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
  ASSERT_EQ(rc, 0);
  EXPECT_TRUE(got_error);
  EXPECT_EQ(s.lis->last_accept_error, -EMFILE);
  EXPECT_LE(errors_in_300ms, 12) << "accept error hot loop";
  EXPECT_GT(s.be->stats().accept_backoffs, 0u);
  EXPECT_EQ(s.lis->accepts, 0);
  EXPECT_TRUE(pump(*s.be, [&] { return s.lis->accepts == 1; }));
  std::cout << "accept errors=" << s.lis->accept_errors
            << " backoffs=" << s.be->stats().accept_backoffs << "\n";
  ::close(client);
  s.shutdown();
}

TEST_F(UringBackendTest, ListenerPauseViaWantRead) {
  Server s;
  ASSERT_NE(s.be, nullptr);
  pump_for(*s.be, 20ms);
  s.lis->set_want_read(false);
  s.be->update(*s.lis);
  pump_for(*s.be, 50ms);
  int fd = connect_local(s.port);
  ASSERT_GE(fd, 0);
  pump_for(*s.be, 100ms);
  EXPECT_EQ(s.lis->accepts, 0);
  s.lis->set_want_read(true);
  s.be->update(*s.lis);
  EXPECT_TRUE(pump(*s.be, [&] { return s.lis->accepts == 1; }));
  ::close(fd);
  s.shutdown();
}

TEST_F(UringBackendTest, CreatedOnOneThreadDrivenByAnother) {
  BackendOptions opts;
  std::unique_ptr<UringBackend> be = make_uring_backend_tuned(opts, {});
  ASSERT_NE(be, nullptr);
  uint16_t port = 0;
  int lfd = make_listener(&port);
  ASSERT_GE(lfd, 0);
  auto lis = std::make_unique<Listener>(be.get(), lfd);
  std::atomic<bool> stop{false};
  std::atomic<bool> attached{false};
  // Like core::Server: attach on this thread, then run the loop elsewhere.
  ASSERT_EQ(be->attach(*lis), 0);
  std::thread loop([&] {
    attached = true;
    while (!stop.load()) EXPECT_GE(be->wait(-1ms), 0);
    for (auto& c : lis->conns) be->detach(*c);
    be->detach(*lis);
    pump(*be, [&] {
      if (lis->detached != 1) return false;
      for (auto& c : lis->conns)
        if (c->detached != 1) return false;
      return true;
    });
  });
  while (!attached.load()) std::this_thread::sleep_for(1ms);
  std::string data = random_bytes(1 << 20, 21);
  int fd = connect_local(port);
  ASSERT_GE(fd, 0);
  std::thread w([&] { send_all(fd, data); });
  EXPECT_TRUE(recv_n(fd, data.size()) == data);
  w.join();
  ::close(fd);
  stop = true;
  be->wakeup();
  loop.join();
  EXPECT_EQ(lis->detached, 1);
  be.reset();  // destroyed off the loop thread
}

TEST_F(UringBackendTest, DestroyWithDetachedChannelsStillDraining) {
  auto s = std::make_unique<Server>();
  ASSERT_NE(s->be, nullptr);
  s->lis->setup = [](Conn& c) { c.echo = false; };
  s->lis->after_attach = [](Conn& c) {
    c.output().append(random_bytes(16 << 20, 4));
    c.be_->update(c);
  };
  int fd = connect_local(s->port);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(pump(*s->be, [&] {
    return !s->lis->conns.empty() && s->lis->conns[0]->sent_bytes > 0;
  }));
  s->be->detach(*s->lis->conns[0]);
  s->be->detach(*s->lis);
  // No wait(): the destructor cancels and drains, and calls nobody.
  s->be.reset();
  EXPECT_EQ(s->lis->conns[0]->detached, 0);
  EXPECT_EQ(s->lis->detached, 0);
  EXPECT_EQ(s->lis->late_total(), 0);
  ::close(fd);
}


// ---------------------------------------------------------------- UDP --

// Sequence number in the first 4 bytes, seeded bytes after.
std::string numbered(uint32_t seq, size_t size) {
  std::string s = random_bytes(std::max<size_t>(size, 4), 0xD6 + seq);
  std::memcpy(s.data(), &seq, 4);
  return s;
}
// "No address" for DatagramQueue::push (send to the connected peer): a
// valid pointer with length 0 (memcpy from nullptr is UB even for 0 bytes).
const sockaddr* no_addr() {
  static const sockaddr_storage none{};
  return reinterpret_cast<const sockaddr*>(&none);
}

// A datagram channel: records (and by default echoes) what arrives and
// checks the callback rules.
class UdpChannel final : public Channel {
 public:
  UdpChannel(Backend* be, int fd) : Channel(fd, Kind::kDatagram), be_(be) {}

  void on_datagram(const Datagram& d) override {
    if (detach_called || detached) ++late;
    if (!want_read()) ++while_paused;
    ++count;
    if (check_addr) {
      if (d.addr == nullptr || d.addr_len != sizeof(sockaddr_in) ||
          d.addr->sa_family != AF_INET) {
        ++bad_addr;
        return;
      }
      const auto* in = reinterpret_cast<const sockaddr_in*>(d.addr);
      if (in->sin_addr.s_addr != htonl(INADDR_LOOPBACK)) ++bad_addr;
      if (record) got.push_back({ntohs(in->sin_port), std::string(d.data)});
    } else if (record) {
      got.push_back({0, std::string(d.data)});
    }
    if (echo) {
      datagrams().push(d.addr, d.addr_len, d.data);
      be_->update(*this);
    }
    if (pause_at != 0 && count == pause_at) {
      set_want_read(false);
      be_->update(*this);
    }
    if (detach_at != 0 && count == detach_at) do_detach();
  }
  void on_error(int err) override {
    if (detach_called || detached) ++late;
    errors.push_back(err);
  }
  void on_detached() override {
    if (!detach_called) ++late;
    ++detached;
  }
  void do_detach() {
    if (detach_called) return;
    detach_called = true;
    be_->detach(*this);
  }

  Backend* be_;
  bool echo = true;
  bool record = true;
  bool check_addr = true;
  size_t pause_at = 0;   // turn want_read off on this datagram (1-based)
  size_t detach_at = 0;  // detach from inside on_datagram
  size_t count = 0;
  std::vector<Received> got;
  std::vector<int> errors;
  int detached = 0, late = 0, while_paused = 0, bad_addr = 0;
  bool detach_called = false;
};

// A uring back end with one attached UdpChannel; the destructor detaches
// and checks for exactly one on_detached and no rule violations.
struct UdpServer {
  explicit UdpServer(const UringTuning& tuning = {}, int bufsize = 0) {
    BackendOptions opts;
    opts.uring_entries = 1024;
    be = make_uring_backend_tuned(opts, tuning);
    if (!be) return;
    int fd = udp_local(&port, bufsize);
    EXPECT_GE(fd, 0);
    ch = std::make_unique<UdpChannel>(be.get(), fd);
    EXPECT_EQ(be->attach(*ch), 0);
  }
  ~UdpServer() {
    if (!be) return;
    ch->do_detach();
    EXPECT_TRUE(pump(*be, [&] { return ch->detached > 0; }, 10s));
    pump_for(*be, 20ms);
    EXPECT_EQ(ch->detached, 1);
    EXPECT_EQ(ch->late, 0) << "callbacks after detach";
    EXPECT_EQ(ch->while_paused, 0) << "on_datagram while want_read is false";
    EXPECT_EQ(ch->bad_addr, 0);
    EXPECT_TRUE(ch->errors.empty());
    EXPECT_TRUE(ch->io == nullptr);
    ::close(ch->fd());
  }
  const UringStats& stats() const { return be->stats(); }

  std::unique_ptr<UringBackend> be;
  std::unique_ptr<UdpChannel> ch;
  uint16_t port = 0;
};

// The receive configurations worth covering: multishot recvmsg with the
// datagram ring, the forced single-shot fallback, and rings set up with
// the older setup tiers (no buffer rings there at all).
struct UdpMode {
  const char* name;
  UringTuning tuning;
};
std::vector<UdpMode> udp_modes() {
  std::vector<UdpMode> modes;
  modes.push_back({"multishot", {}});
  UringTuning single;
  single.disable_multishot_recvmsg = true;
  modes.push_back({"single-shot", single});
  UringTuning tier2;
  tier2.first_setup_tier = 2;
  modes.push_back({"tier2", tier2});
  UringTuning tier4;
  tier4.first_setup_tier = 4;
  modes.push_back({"tier4", tier4});
  return modes;
}

TEST_F(UringBackendTest, UdpAttachChecksSocketType) {
  BackendOptions opts;
  auto be = make_uring_backend_tuned(opts, {});
  ASSERT_NE(be, nullptr);
  std::cout << "uring info: " << be->info().describe() << "\n";
  ASSERT_TRUE(be->info().datagrams);
  int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(tcp, 0);
  {
    UdpChannel ch(be.get(), tcp);
    EXPECT_EQ(be->attach(ch), -EINVAL);
    EXPECT_TRUE(ch.io == nullptr);
  }
  ::close(tcp);
  int fd = udp_local(nullptr);
  ASSERT_GE(fd, 0);
  UdpChannel ch(be.get(), fd);
  EXPECT_EQ(be->attach(ch), 0);
  EXPECT_EQ(be->attach(ch), -EEXIST);
  ch.do_detach();
  EXPECT_TRUE(pump(*be, [&] { return ch.detached == 1; }));
  EXPECT_EQ(ch.late, 0);
  ::close(fd);
}

TEST_F(UringBackendTest, UdpEchoSizesFromSeveralClients) {
  for (const UdpMode& mode : udp_modes()) {
    SCOPED_TRACE(mode.name);
    UdpServer s(mode.tuning);
    ASSERT_NE(s.be, nullptr);
    std::cout << mode.name << ": " << s.be->info().describe() << "\n";
    if (std::string(mode.name) == "multishot") {
      EXPECT_TRUE(s.be->info().multishot_recvmsg);
    } else {
      EXPECT_FALSE(s.be->info().multishot_recvmsg);
    }
    constexpr int kClients = 3;
    const std::vector<size_t> sizes = {1, 1400, 65000};
    std::vector<uint16_t> client_ports(kClients);
    std::atomic<bool> done{false};
    std::atomic<int> bad{0};
    std::thread clients([&] {
      bad = udp_round_robin_echo(s.port, sizes, &client_ports, random_bytes);
      done = true;
    });
    EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }, 60s));
    clients.join();
    EXPECT_EQ(bad.load(), 0);
    // The server saw each datagram once, with its sender's address.
    ASSERT_EQ(s.ch->got.size(), sizes.size() * kClients);
    size_t j = 0;
    for (size_t k = 0; k < sizes.size(); ++k) {
      for (int i = 0; i < kClients; ++i, ++j) {
        EXPECT_EQ(s.ch->got[j].port, client_ports[i]) << "datagram " << j;
        EXPECT_TRUE(s.ch->got[j].data == random_bytes(sizes[k], 100 * i + k))
            << "datagram " << j;
      }
    }
    EXPECT_EQ(s.stats().dgram_received, sizes.size() * kClients);
    EXPECT_EQ(s.stats().dgram_sent, sizes.size() * kClients);
    EXPECT_EQ(s.stats().dgram_dropped, 0u);
    EXPECT_EQ(s.stats().dgram_truncated, 0u);
  }
}

TEST_F(UringBackendTest, UdpBurstOfAThousandAllComeBack) {
  constexpr int kBuf = 4 << 20;
  constexpr uint32_t kCount = 1000;
  for (const UdpMode& mode : udp_modes()) {
    if (std::string(mode.name).rfind("tier", 0) == 0) continue;
    SCOPED_TRACE(mode.name);
    UdpServer s(mode.tuning, kBuf);
    ASSERT_NE(s.be, nullptr);
    s.ch->record = false;
    int fd = udp_local(nullptr, kBuf);
    ASSERT_GE(fd, 0);
    int eff = 0;
    socklen_t len = sizeof eff;
    ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &eff, &len);
    std::atomic<uint32_t> back{0};
    std::atomic<int> bad{0};
    std::atomic<bool> done{false};
    std::thread client([&] {
      for (uint32_t i = 0; i < kCount; ++i) {
        if (!send_to(fd, s.port, numbered(i, 16 + (i * 37) % 1400))) ++bad;
      }
      // Collect until all are back or 3 s of silence.
      set_timeouts(fd, 3000ms);
      std::vector<bool> seen(kCount, false);
      std::string d;
      uint16_t from = 0;
      while (back.load() < kCount && recv_dgram(fd, &d, &from)) {
        const uint32_t seq = seq_of(d);
        if (seq >= kCount || seen[seq] ||
            d != numbered(seq, 16 + (seq * 37) % 1400) || from != s.port) {
          ++bad;
          continue;
        }
        seen[seq] = true;
        ++back;
      }
      done = true;
    });
    EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }, 60s));
    client.join();
    ::close(fd);
    std::cout << mode.name << " burst: " << back.load() << " of " << kCount
              << " came back (SO_RCVBUF " << eff
              << ") recv_arms=" << s.stats().dgram_recv_arms
              << " enobufs=" << s.stats().dgram_enobufs
              << " sends=" << s.stats().dgram_sends << "\n";
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(s.ch->count, kCount);
    EXPECT_EQ(back.load(), kCount);
    EXPECT_EQ(s.stats().dgram_sent, kCount);
  }
}

TEST_F(UringBackendTest, UdpRingExhaustionTakesEnobufsPath) {
  UringTuning t;
  t.dgram_buf_count = 2;  // a tiny datagram buffer group
  t.dgram_buf_size = 4096;
  UdpServer s(t, 4 << 20);
  ASSERT_NE(s.be, nullptr);
  if (!s.be->info().multishot_recvmsg) {
    GTEST_SKIP() << "no multishot recvmsg here: " << s.be->info().describe();
  }
  EXPECT_EQ(s.be->info().dgram_buf_count, 2u);
  EXPECT_EQ(s.be->info().dgram_payload_cap, 4096u - 144u);
  s.ch->echo = false;
  int fd = udp_local(nullptr, 4 << 20);
  ASSERT_GE(fd, 0);
  constexpr uint32_t kCount = 300;
  // Queued in the server's socket before its recvmsg is even submitted:
  // the first shot drains the two buffers and ends with -ENOBUFS.
  for (uint32_t i = 0; i < kCount; ++i) {
    ASSERT_TRUE(send_to(fd, s.port, numbered(i, 100 + i)));
  }
  EXPECT_TRUE(pump(*s.be, [&] { return s.ch->count == kCount; }));
  ASSERT_EQ(s.ch->got.size(), kCount);
  for (uint32_t i = 0; i < kCount; ++i) {
    if (s.ch->got[i].data != numbered(i, 100 + i)) {
      ADD_FAILURE() << "datagram " << i << " lost, reordered or corrupt";
      break;
    }
  }
  EXPECT_GT(s.stats().dgram_enobufs, 0u);
  std::cout << "enobufs=" << s.stats().dgram_enobufs
            << " recv_arms=" << s.stats().dgram_recv_arms << "\n";
  // Still receiving normally afterwards, stream ring untouched.
  s.ch->echo = true;
  set_timeouts(fd, 10000ms);
  std::atomic<bool> done{false};
  std::string got;
  std::thread client([&] {
    send_to(fd, s.port, "after");
    recv_dgram(fd, &got);
    done = true;
  });
  EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }));
  client.join();
  EXPECT_EQ(got, "after");
  ::close(fd);
}

TEST_F(UringBackendTest, UdpTruncatedDatagramsAreDropped) {
  for (bool single : {false, true}) {
    SCOPED_TRACE(single ? "single-shot" : "multishot");
    UringTuning t;
    t.dgram_buf_size = 1024;  // 880 bytes of payload
    t.disable_multishot_recvmsg = single;
    UdpServer s(t);
    ASSERT_NE(s.be, nullptr);
    const unsigned cap = s.be->info().dgram_payload_cap;
    EXPECT_EQ(cap, 1024u - 144u);
    s.ch->echo = false;
    int fd = udp_local(nullptr);
    ASSERT_GE(fd, 0);
    const std::vector<size_t> sizes = {800, 2000, cap, cap + 1, 0, 3};
    for (size_t i = 0; i < sizes.size(); ++i) {
      ASSERT_TRUE(send_to(fd, s.port, random_bytes(sizes[i], i)));
    }
    EXPECT_TRUE(pump(*s.be, [&] { return s.ch->count == 4; }));
    pump_for(*s.be, 50ms);
    ASSERT_EQ(s.ch->got.size(), 4u);
    EXPECT_TRUE(s.ch->got[0].data == random_bytes(800, 0));
    EXPECT_TRUE(s.ch->got[1].data == random_bytes(cap, 2));
    EXPECT_TRUE(s.ch->got[2].data.empty());  // an empty datagram is one
    EXPECT_TRUE(s.ch->got[3].data == random_bytes(3, 5));
    EXPECT_EQ(s.stats().dgram_truncated, 2u);
    ::close(fd);
  }
}

TEST_F(UringBackendTest, UdpBackpressureStopsReceiving) {
  for (const UdpMode& mode : udp_modes()) {
    if (std::string(mode.name).rfind("tier", 0) == 0) continue;
    SCOPED_TRACE(mode.name);
    UdpServer s(mode.tuning, 1 << 20);
    ASSERT_NE(s.be, nullptr);
    s.ch->echo = false;
    s.ch->pause_at = 1;
    int fd = udp_local(nullptr);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_to(fd, s.port, numbered(0, 100)));
    ASSERT_TRUE(pump(*s.be, [&] { return s.ch->count == 1; }, 10s));
    EXPECT_FALSE(s.ch->want_read());
    pump_for(*s.be, 50ms);  // the cancel takes effect
    for (uint32_t i = 1; i <= 20; ++i) {
      ASSERT_TRUE(send_to(fd, s.port, numbered(i, 100)));
    }
    pump_for(*s.be, 300ms);
    EXPECT_EQ(s.ch->count, 1u) << "on_datagram while want_read is false";
    // Nothing in flight reads them: they wait in the kernel's queue.
    const long queued = kernel_rx_queue(s.port);
    if (queued >= 0) {
      EXPECT_GE(queued, 20 * 100) << "receive not stopped";
    }
    // Resume: all arrive, in order.
    s.ch->set_want_read(true);
    s.be->update(*s.ch);
    EXPECT_TRUE(pump(*s.be, [&] { return s.ch->count == 21; }, 10s));
    ASSERT_EQ(s.ch->got.size(), 21u);
    for (uint32_t i = 0; i < 21; ++i) EXPECT_EQ(seq_of(s.ch->got[i].data), i);

    // A handler turning want_read off mid-batch: the rest of the batch is
    // held, in order, and nothing is delivered until it is on again.
    s.ch->got.clear();
    s.ch->count = 0;
    s.ch->pause_at = 500;
    constexpr uint32_t kMany = 1500;
    for (uint32_t i = 0; i < kMany; ++i) {
      ASSERT_TRUE(send_to(fd, s.port, numbered(i, 8)));
    }
    ASSERT_TRUE(pump(*s.be, [&] { return s.ch->count == 500; }, 10s));
    pump_for(*s.be, 200ms);
    EXPECT_EQ(s.ch->count, 500u);
    EXPECT_FALSE(s.ch->want_read());
    // Toggle a few times while paused-with-held: still nothing while off.
    for (int i = 0; i < 6; ++i) {
      s.ch->set_want_read(false);
      s.be->update(*s.ch);
      pump_for(*s.be, 5ms);
    }
    EXPECT_EQ(s.ch->count, 500u);
    s.ch->pause_at = 0;
    s.ch->set_want_read(true);
    s.be->update(*s.ch);
    EXPECT_TRUE(pump(*s.be, [&] { return s.ch->count == kMany; }, 20s));
    ASSERT_EQ(s.ch->got.size(), kMany);
    for (uint32_t i = 0; i < kMany; ++i) {
      if (seq_of(s.ch->got[i].data) != i) {
        ADD_FAILURE() << "datagram " << i << " out of order";
        break;
      }
    }
    ::close(fd);
  }
}

TEST_F(UringBackendTest, UdpDetachWithOpsInFlight) {
  BackendOptions opts;
  opts.uring_entries = 1024;
  auto be = make_uring_backend_tuned(opts, {});
  ASSERT_NE(be, nullptr);
  // 1) sendmsg ops parked in the kernel: an AF_UNIX datagram pair whose
  //    peer never reads (its queue fills after a few datagrams), sent to
  //    the connected peer (no address); and the recvmsg in flight.
  {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    UdpChannel ch(be.get(), sv[0]);
    ch.check_addr = false;
    ch.echo = false;
    ASSERT_EQ(be->attach(ch), 0);
    for (int i = 0; i < 200; ++i) {
      ch.datagrams().push(no_addr(), 0, random_bytes(512, i));
    }
    be->update(ch);
    pump_for(*be, 100ms);
    const UringStats& st = be->stats();
    std::cout << "unix pair: sends=" << st.dgram_sends
              << " sent=" << st.dgram_sent
              << " retries=" << st.dgram_send_retries << "\n";
    EXPECT_GT(st.dgram_sent, 0u);
    EXPECT_LT(st.dgram_sent, 200u) << "the peer's queue never filled";
    EXPECT_GE(st.dgram_sends, st.dgram_sent + 1) << "no send in flight";
    EXPECT_TRUE(ch.datagrams().empty()) << "queue taken by the back end";
    ch.do_detach();
    be->detach(ch);  // idempotent
    EXPECT_EQ(ch.detached, 0);  // on_detached always comes from wait()
    EXPECT_TRUE(pump(*be, [&] { return ch.detached == 1; }));
    // The peer reads now: nothing more is sent, no callbacks.
    uint64_t sent = st.dgram_sent;
    char buf[1024];
    int drained = 0;
    while (::recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) > 0) ++drained;
    ::send(sv[1], "late", 4, MSG_NOSIGNAL);
    pump_for(*be, 100ms);
    EXPECT_EQ(static_cast<uint64_t>(drained), sent);
    EXPECT_EQ(::recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), -1);
    EXPECT_EQ(ch.detached, 1);
    EXPECT_EQ(ch.count, 0u);
    EXPECT_EQ(ch.late, 0);
    EXPECT_TRUE(ch.io == nullptr);
    ::close(sv[0]);
    ::close(sv[1]);
  }
  // 2) Detach while paused with datagrams held, and 3) from inside
  //    on_datagram with more of the batch still to come.
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE(variant == 0 ? "paused" : "inside on_datagram");
    uint16_t port = 0;
    int fd = udp_local(&port, 1 << 20);
    ASSERT_GE(fd, 0);
    UdpChannel ch(be.get(), fd);
    ch.echo = false;
    if (variant == 0) ch.pause_at = 3;
    if (variant == 1) ch.detach_at = 3;
    ASSERT_EQ(be->attach(ch), 0);
    int c = udp_local(nullptr);
    for (uint32_t i = 0; i < 50; ++i) send_to(c, port, numbered(i, 64));
    EXPECT_TRUE(pump(*be, [&] { return ch.count >= 3; }, 10s));
    EXPECT_EQ(ch.count, 3u);
    if (variant == 0) ch.do_detach();
    EXPECT_TRUE(pump(*be, [&] { return ch.detached == 1; }, 10s));
    for (uint32_t i = 0; i < 5; ++i) send_to(c, port, numbered(i, 64));
    pump_for(*be, 100ms);
    EXPECT_EQ(ch.detached, 1);
    EXPECT_EQ(ch.count, 3u) << "on_datagram after detach";
    EXPECT_EQ(ch.late, 0);
    EXPECT_EQ(ch.while_paused, 0);
    ::close(c);
    ::close(fd);
  }
  // 4) Attach and detach before the first wait(): nothing was submitted.
  {
    int fd = udp_local(nullptr);
    ASSERT_GE(fd, 0);
    BackendOptions o;
    auto fresh = make_uring_backend_tuned(o, {});
    ASSERT_NE(fresh, nullptr);
    UdpChannel ch(fresh.get(), fd);
    ASSERT_EQ(fresh->attach(ch), 0);
    ch.datagrams().push(no_addr(), 0, "x");
    fresh->update(ch);
    ch.do_detach();
    EXPECT_TRUE(pump(*fresh, [&] { return ch.detached == 1; }));
    pump_for(*fresh, 20ms);
    EXPECT_EQ(ch.detached, 1);
    EXPECT_EQ(ch.late, 0);
    ::close(fd);
  }
}

TEST_F(UringBackendTest, UdpSendRetriesAfterEagain) {
  // io_uring parks a send on a full socket in the kernel; with
  // MSG_DONTWAIT (test knob) it comes back as -EAGAIN instead, which is
  // retried after a short timer, and given up after ~1 s without progress.
  UringTuning t;
  t.dgram_send_dontwait = true;
  BackendOptions opts;
  opts.uring_entries = 1024;
  auto be = make_uring_backend_tuned(opts, t);
  ASSERT_NE(be, nullptr);
  const UringStats& st = be->stats();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
  UdpChannel ch(be.get(), sv[0]);
  ch.check_addr = false;
  ch.echo = false;
  ASSERT_EQ(be->attach(ch), 0);
  constexpr uint32_t kCount = 400;
  for (uint32_t i = 0; i < kCount; ++i) {
    ch.datagrams().push(no_addr(), 0, numbered(i, 512));
  }
  be->update(ch);
  pump_for(*be, 50ms);
  std::cout << "eagain: sent=" << st.dgram_sent
            << " retries=" << st.dgram_send_retries << "\n";
  EXPECT_GT(st.dgram_send_retries, 0u);
  // One probe per round while nothing goes, not the whole pipeline.
  EXPECT_LT(st.dgram_send_retries, 64u + 100u);
  EXPECT_LT(st.dgram_sent, kCount);
  EXPECT_EQ(st.dgram_dropped, 0u);
  // The peer drains: every datagram arrives once (retried ones may come
  // after later ones), none dropped.
  std::atomic<bool> done{false};
  std::atomic<uint32_t> got{0};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    set_timeouts(sv[1], 3000ms);
    std::vector<bool> seen(kCount, false);
    std::string buf(1024, '\0');
    while (got.load() < kCount) {
      ssize_t n = ::recv(sv[1], buf.data(), buf.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      std::string_view d(buf.data(), static_cast<size_t>(n));
      uint32_t seq = seq_of(d);
      if (seq >= kCount || seen[seq] || d != numbered(seq, 512)) {
        ++bad;
        continue;
      }
      seen[seq] = true;
      ++got;
    }
    done = true;
  });
  EXPECT_TRUE(pump(*be, [&] { return done.load(); }, 30s));
  reader.join();
  EXPECT_EQ(got.load(), kCount);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(st.dgram_sent, kCount);
  EXPECT_EQ(st.dgram_dropped, 0u);

  // Nobody reads at all: after ~1 s of fruitless retries the waiting
  // datagrams are dropped (counted), and the channel still works after.
  for (uint32_t i = 0; i < kCount; ++i) {
    ch.datagrams().push(no_addr(), 0, numbered(i, 512));
  }
  be->update(ch);
  auto t0 = Clock::now();
  EXPECT_TRUE(pump(*be, [&] { return st.dgram_dropped > 0; }, 20s));
  auto dt = Clock::now() - t0;
  EXPECT_GE(dt, 900ms);
  std::cout << "gave up after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(dt).count()
            << " ms: dropped=" << st.dgram_dropped
            << " retries=" << st.dgram_send_retries << "\n";
  // The whole rest of the batch went at once.
  EXPECT_TRUE(pump(*be, [&] {
    return st.dgram_sent + st.dgram_dropped == 2 * kCount;
  }, 2s));
  EXPECT_LT(st.dgram_send_retries, 3000u) << "retrying everything each round";
  char buf[1024];
  while (::recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) > 0) {
  }
  uint64_t sent = st.dgram_sent;
  ch.datagrams().push(no_addr(), 0, "again");
  be->update(ch);
  EXPECT_TRUE(pump(*be, [&] { return st.dgram_sent == sent + 1; }));
  EXPECT_EQ(::recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), 5);
  ch.do_detach();
  EXPECT_TRUE(pump(*be, [&] { return ch.detached == 1; }));
  EXPECT_EQ(ch.late, 0);
  EXPECT_TRUE(ch.errors.empty());
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST_F(UringBackendTest, UdpRefusedSendsAndIcmpErrorsAreNotFatal) {
  // A connected UDP socket gets ICMP port-unreachable reports as
  // ECONNREFUSED (from recvmsg or the next sendmsg); neither is fatal.
  uint16_t peer_port = 0;
  int peer = udp_local(&peer_port);
  ASSERT_GE(peer, 0);
  ::close(peer);  // nothing listens on peer_port now
  const sockaddr_in pa = local_addr(peer_port);
  UdpServer s;
  ASSERT_NE(s.be, nullptr);
  ASSERT_EQ(::connect(s.ch->fd(), reinterpret_cast<const sockaddr*>(&pa),
                      sizeof pa),
            0);
  s.ch->echo = false;
  // An oversized datagram (EMSGSIZE) and sends into the void, spread over
  // a few rounds so the ICMP reports come back in between.
  s.ch->datagrams().push(reinterpret_cast<const sockaddr*>(&pa), sizeof pa,
                         std::string(70000, 'x'));
  for (int round = 0; round < 5; ++round) {
    s.ch->datagrams().push(reinterpret_cast<const sockaddr*>(&pa), sizeof pa,
                           "ping");
    s.be->update(*s.ch);
    EXPECT_TRUE(s.ch->datagrams().empty()) << "taken by the back end";
    pump_for(*s.be, 50ms);
  }
  const UringStats& st = s.stats();
  std::cout << "refused: sent=" << st.dgram_sent
            << " dropped=" << st.dgram_dropped
            << " recv_errors=" << st.dgram_recv_errors << "\n";
  EXPECT_GE(st.dgram_dropped, 1u);  // at least the EMSGSIZE one
  EXPECT_GT(st.dgram_recv_errors + st.dgram_dropped, 1u)
      << "no ICMP report was seen";
  EXPECT_TRUE(s.ch->errors.empty());
  // Now something listens on the peer port: traffic flows both ways.
  peer = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(peer, 0);
  int on = 1;
  ::setsockopt(peer, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  ASSERT_EQ(::bind(peer, reinterpret_cast<const sockaddr*>(&pa), sizeof pa),
            0);
  set_timeouts(peer, 10000ms);
  s.ch->datagrams().push(reinterpret_cast<const sockaddr*>(&pa), sizeof pa,
                         "hello");
  s.be->update(*s.ch);
  std::atomic<bool> done{false};
  std::string got;
  std::thread t([&] {
    recv_dgram(peer, &got);
    send_to(peer, s.port, "back");
    done = true;
  });
  EXPECT_TRUE(pump(*s.be, [&] { return done.load() && s.ch->count == 1; },
                   20s));
  t.join();
  EXPECT_EQ(got, "hello");
  ASSERT_EQ(s.ch->got.size(), 1u);
  EXPECT_EQ(s.ch->got[0].data, "back");
  EXPECT_EQ(s.ch->got[0].port, peer_port);
  ::close(peer);
}

TEST_F(UringBackendTest, UdpAndStreamsShareOneBackend) {
  // A datagram burst on the tiny datagram ring cannot starve streams of
  // their (separate) buffer ring.
  UringTuning t;
  t.dgram_buf_count = 2;
  t.dgram_buf_size = 2048;
  Server s(t);
  ASSERT_NE(s.be, nullptr);
  uint16_t uport = 0;
  int ufd = udp_local(&uport, 4 << 20);
  ASSERT_GE(ufd, 0);
  UdpChannel u(s.be.get(), ufd);
  u.record = false;
  ASSERT_EQ(s.be->attach(u), 0);
  std::atomic<uint32_t> back{0};
  std::atomic<bool> done{false};
  std::thread udp_client([&] {
    int fd = udp_local(nullptr, 4 << 20);
    set_timeouts(fd, 3000ms);
    for (uint32_t i = 0; i < 500; ++i) send_to(fd, uport, numbered(i, 200));
    std::string d;
    while (back.load() < 500 && recv_dgram(fd, &d)) ++back;
    ::close(fd);
    done = true;
  });
  std::string data = random_bytes(2 << 20, 42);
  std::string got = echo_once(s, data);
  EXPECT_TRUE(pump(*s.be, [&] { return done.load(); }, 60s));
  udp_client.join();
  EXPECT_TRUE(got == data);
  EXPECT_EQ(back.load(), 500u);
  u.do_detach();
  EXPECT_TRUE(pump(*s.be, [&] { return u.detached == 1; }));
  ::close(ufd);
  s.shutdown();
}

}  // namespace
}  // namespace sluice::io
