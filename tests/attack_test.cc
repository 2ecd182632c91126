// Hostile-client tests, over every registered back end: malformed and
// garbage input, connections that never send, slowloris, a client that
// never reads, connect/reset floods, bursts beyond max_connections and
// descriptor exhaustion. During each attack a well-behaved client does
// 64-byte ping-pong; its p99 round trip must stay within
// max(3 x unloaded baseline, baseline + 5 ms) (the +5 ms is the noise floor
// of a 2-core machine that also runs the attack and the server). Afterwards
// the server holds no connection, and this process's descriptor count and
// RSS are back near where they were. Each case prints one "ATTACK ..." line
// with its measurements (copied into docs/ROBUSTNESS.md).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/backend_params.h"
#include "codec/factory.h"
#include "core/server.h"
#include "io/registry.h"
#include "tests/test_thread.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

// Memory and timing bounds are checked only without sanitizers (see
// testing::kSanitized); every functional check still applies.
constexpr bool kResourceBounds = !testing::kSanitized;

using Steady = std::chrono::steady_clock;
using testing::connect_local;
using testing::count_fds;
using testing::read_n;
using testing::rss_bytes;
using testing::set_recv_timeout;
using testing::wait_closed;
using testing::frame;

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Connects to 127.0.0.1:port within timeout_ms (a blocking connect to a
// listener whose backlog is full would wait for SYN retransmits, minutes).
// Returns a blocking socket, or -1.
int connect_within(uint16_t port, int timeout_ms) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 &&
      errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  int err = 0;
  socklen_t len = sizeof err;
  if (::poll(&p, 1, timeout_ms) != 1 ||
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
    ::close(fd);
    return -1;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

// Runs `round` (an attack round) repeatedly for at least `window`, at most
// `max_rounds` times, so the good client's p99 is taken over a few hundred
// samples during the attack. Returns the rounds run.
template <typename F>
int run_for(std::chrono::milliseconds window, int max_rounds, F round) {
  auto t0 = Steady::now();
  int n = 0;
  while (n < max_rounds && (n == 0 || Steady::now() - t0 < window)) {
    round();
    ++n;
  }
  return n;
}

void abortive_close(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

// Echoes every frame; reaps idle connections as echo_server does.
class ReapingEcho final : public Handler {
 public:
  void on_message(Connection& conn, std::string_view data) override {
    received += data.size();
    conn.send(data);
  }
  void on_idle(Connection& conn, IdleKind) override {
    ++idle_reaped;
    conn.abort();
  }
  void on_high_water(Connection&, size_t) override { ++high_water; }
  void on_close(Connection&, CloseReason reason, int) override {
    if (reason == CloseReason::kFrameError) ++frame_errors;
  }
  std::atomic<size_t> received{0};
  std::atomic<int> idle_reaped{0};
  std::atomic<int> high_water{0};
  std::atomic<int> frame_errors{0};
};

// The well-behaved client: 64-byte ping-pong with a 1 ms pause, recording
// each round trip.
class GoodClient {
 public:
  explicit GoodClient(uint16_t port) : port_(port) {}
  ~GoodClient() { stop(); }

  bool start() {
    fd_ = connect_local(port_);
    if (fd_ < 0) return false;
    set_recv_timeout(fd_, 2000);
    // One round trip first: the server has surely accepted it after that.
    const std::string msg = frame(std::string(64, 'p'));
    if (!send_all(fd_, msg) || read_n(fd_, msg.size()) != msg) return false;
    running_ = true;
    thread_ = testing::TestThread([this] { run(); });
    return true;
  }
  // Stops the client; returns its p99 in microseconds (-1: it failed).
  double stop() {
    if (!running_.exchange(false)) return p99_;
    thread_.join();
    ::close(fd_);
    fd_ = -1;
    if (failed_ || lat_us_.empty()) return p99_ = -1;
    std::sort(lat_us_.begin(), lat_us_.end());
    p99_ = lat_us_[std::min(lat_us_.size() - 1, lat_us_.size() * 99 / 100)];
    return p99_;
  }
  size_t samples() const { return lat_us_.size(); }
  bool failed() const { return failed_; }

 private:
  void run() {
    const std::string payload(64, 'p');
    const std::string msg = frame(payload);
    while (running_) {
      auto t0 = Steady::now();
      if (!send_all(fd_, msg) || read_n(fd_, msg.size()) != msg) {
        failed_ = true;
        return;
      }
      lat_us_.push_back(std::chrono::duration<double, std::micro>(Steady::now() - t0).count());
      std::this_thread::sleep_for(1ms);
    }
  }

  uint16_t port_;
  int fd_ = -1;
  std::atomic<bool> running_{false};
  testing::TestThread thread_;  // joined by stop(), which the destructor calls
  std::vector<double> lat_us_;
  bool failed_ = false;
  double p99_ = -1;
};

class Attack : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    sluice::raise_fd_limit();
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
    fds_before_ = count_fds();
    rss_before_ = rss_bytes();
  }

  void TearDown() override {
    if (!server_) return;
    bool drained = wait_drained(5s);
    EXPECT_TRUE(drained) << server_->connection_count() << " connections left";
    server_->stop(500ms);
    server_.reset();
    // Descriptors are closed asynchronously by some back ends' helpers.
    size_t fds = count_fds();
    for (int i = 0; i < 100 && fds != fds_before_; ++i) {
      std::this_thread::sleep_for(20ms);
      fds = count_fds();
    }
    const size_t rss = rss_bytes();
    std::printf("ATTACK io=%s case=%s good_p99_us base=%.0f during=%.0f samples=%zu "
                "fds=%zu->%zu rss_mib=%.1f->%.1f %s\n",
                GetParam().c_str(), case_.c_str(), base_p99_, during_p99_, samples_,
                fds_before_, fds, rss_before_ / 1048576.0, rss / 1048576.0, extra_.c_str());
    std::fflush(stdout);
    EXPECT_EQ(fds, fds_before_);
    if (kResourceBounds) {
      EXPECT_LE(rss, rss_before_ + (32u << 20));
    }
  }

  void start(ServerOptions opts = {}, size_t max_frame = 1 << 20) {
    codec::CodecOptions c;
    c.name = "length";
    c.length_bytes = 4;
    c.max_frame = max_frame;
    opts.io = GetParam();
    opts.threads = 2;
    if (opts.io_options.max_conns < 8192) opts.io_options.max_conns = 8192;
    server_ = std::make_unique<Server>(opts, handler_, codec::make_codec(c));
    std::string err;
    ASSERT_EQ(server_->start(&err), 0) << err;
    // The unloaded baseline.
    GoodClient base(server_->port());
    ASSERT_TRUE(base.start());
    std::this_thread::sleep_for(500ms);
    base_p99_ = base.stop();
    ASSERT_GT(base_p99_, 0) << "good client failed unloaded";
    good_ = std::make_unique<GoodClient>(server_->port());
    ASSERT_TRUE(good_->start());
  }

  // Ends the good client and checks its latency against the baseline.
  // `floor_us`: the additive allowance over the baseline (5 ms: the noise
  // floor of a 2-core machine running client, attack and server at once).
  void finish_good(double floor_us = 5000) {
    during_p99_ = good_->stop();
    samples_ = good_->samples();
    EXPECT_FALSE(good_->failed()) << "the good client's ping-pong failed during the attack";
    const double limit = std::max(3 * base_p99_, base_p99_ + floor_us);
    if (kResourceBounds) {
      EXPECT_LE(during_p99_, limit)
          << "p99 " << during_p99_ << " us vs baseline " << base_p99_;
    }
  }

  bool wait_drained(std::chrono::milliseconds limit) {
    auto end = Steady::now() + limit;
    while (server_->connection_count() != 0) {
      if (Steady::now() > end) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  bool wait_drained_to(size_t n, std::chrono::milliseconds limit) {
    auto end = Steady::now() + limit;
    while (server_->connection_count() > n) {
      if (Steady::now() > end) return false;
      std::this_thread::sleep_for(2ms);
    }
    return true;
  }

  // Waits until the server holds `n` connections (the good client included).
  bool wait_count(size_t n, std::chrono::milliseconds limit) {
    auto end = Steady::now() + limit;
    while (server_->connection_count() < n) {
      if (Steady::now() > end) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  ReapingEcho handler_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<GoodClient> good_;
  std::string case_;
  std::string extra_;
  double base_p99_ = -1;
  double during_p99_ = -1;
  size_t samples_ = 0;
  size_t fds_before_ = 0;
  size_t rss_before_ = 0;
};

// A length field of 0xFFFFFFFF: the codec rejects it at once; nothing is
// allocated for it.
TEST_P(Attack, HugeLengthField) {
  case_ = "length_0xFFFFFFFF";
  start();
  int total = 0;
  int closed = 0;
  run_for(600ms, 200, [&] {
    std::vector<int> fds;
    for (int i = 0; i < 10; ++i) {
      int fd = connect_local(server_->port());
      if (fd < 0) continue;
      fds.push_back(fd);
      send_all(fd, std::string("\xFF\xFF\xFF\xFF" "abcdefgh", 12));
    }
    for (int fd : fds) {
      closed += wait_closed(fd, 2000);
      ::close(fd);
    }
    total += static_cast<int>(fds.size());
  });
  finish_good();
  EXPECT_GE(total, 10);
  EXPECT_EQ(closed, total);
  EXPECT_GE(handler_.frame_errors.load(), total);
  extra_ = "closed=" + std::to_string(closed) + "/" + std::to_string(total);
}

// Random garbage on several connections (max frame 64 KiB, so a random
// length field is almost surely too large).
TEST_P(Attack, RandomGarbage) {
  case_ = "random_garbage";
  start({}, 64 << 10);
  int total = 0;
  int closed = 0;
  uint64_t seed = 1000;
  run_for(600ms, 100, [&] {
    std::vector<int> fds;
    for (int i = 0; i < 5; ++i) {
      int fd = connect_local(server_->port());
      if (fd < 0) continue;
      fds.push_back(fd);
      send_all(fd, testing::random_bytes(16 << 10, seed++));  // may be cut off
    }
    for (int fd : fds) {
      closed += wait_closed(fd, 2000);
      ::close(fd);
    }
    total += static_cast<int>(fds.size());
  });
  finish_good();
  EXPECT_GE(total, 5);
  EXPECT_EQ(closed, total);
  extra_ = "closed=" + std::to_string(closed) + "/" + std::to_string(total);
}

// Many connections that connect and never send.
TEST_P(Attack, SilentConnections) {
  case_ = "silent_conns";
  // select() cannot watch descriptors >= FD_SETSIZE (1024), and client and
  // server descriptors share this process: it gets 400.
  const size_t kConns = GetParam() == "select" ? 400 : 2000;
  start();
  std::vector<int> fds;
  auto t0 = Steady::now();
  for (size_t i = 0; i < kConns && Steady::now() - t0 < 5s; ++i) {
    int fd = connect_local(server_->port());
    if (fd < 0) break;
    fds.push_back(fd);
  }
  // Under TSan the blocking model's 4,000 thread creations take longer
  // than 5 s (1,813 of 2,000 held by then in one run).
  const bool all = wait_count(kConns + 1, testing::kSanitized ? 30s : 5s);
  const size_t held = server_->connection_count() - 1;
  // Hold them: the good client keeps being measured meanwhile.
  while (Steady::now() - t0 < 800ms) std::this_thread::sleep_for(10ms);
  // Two models pay per connection by design, so for them the floor is
  // 25 ms instead of 5 ms (see docs/ROBUSTNESS.md): blocking (a thread per
  // connection: the burst is 2,000 thread creations on 2 cores) and
  // nonblocking (no readiness API: every pass tries a recv on each of the
  // 2,000 sockets).
  const bool per_conn_cost = GetParam() == "blocking" || GetParam() == "nonblocking";
  finish_good(per_conn_cost ? 25000 : 5000);
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(fds.size(), kConns);
  EXPECT_TRUE(all) << "server holds " << held;
  extra_ = "held=" + std::to_string(held);
}

// Slowloris: a frame header, then one byte every 50 ms; the idle timeout
// (300 ms: no input or no echo progress) reaps it.
TEST_P(Attack, Slowloris) {
  case_ = "slowloris";
  ServerOptions opts;
  opts.idle.reader = 300ms;
  opts.idle.writer = 300ms;
  start(opts);
  // The good client pings every 2 ms, so it is never idle.
  constexpr int kConns = 20;
  std::vector<int> fds;
  for (int i = 0; i < kConns; ++i) {
    int fd = connect_local(server_->port());
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    send_all(fd, std::string("\0\0\x03\xE8", 4));  // 1000-byte frame follows
  }
  std::vector<bool> reaped(kConns, false);
  std::vector<double> reap_ms(kConns, 0);
  auto t0 = Steady::now();
  int left = kConns;
  while (left > 0 && Steady::now() - t0 < 3s) {
    for (int i = 0; i < kConns; ++i) {
      if (reaped[i]) continue;
      char b = 'x';
      ssize_t s = ::send(fds[i], &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      char buf[16];
      ssize_t r = ::recv(fds[i], buf, sizeof buf, MSG_DONTWAIT);
      if (s < 0 || r == 0 || (r < 0 && errno != EAGAIN)) {
        reaped[i] = true;
        reap_ms[i] = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
        --left;
      }
    }
    std::this_thread::sleep_for(50ms);
  }
  finish_good();
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(left, 0) << left << " slowloris connections still open after 3 s";
  double worst = *std::max_element(reap_ms.begin(), reap_ms.end());
  extra_ = "reaped=" + std::to_string(kConns - left) + "/" + std::to_string(kConns) +
           " worst_reap_ms=" + std::to_string(static_cast<int>(worst));
}

// A client that sends 20 MB of frames and never reads: the server stops
// reading it at high water, so its memory stays bounded.
TEST_P(Attack, NeverReads) {
  case_ = "never_reads";
  ServerOptions opts;
  opts.limits.high_water = 1 << 20;
  opts.limits.low_water = 256 << 10;
  start(opts);
  int fd = connect_local(server_->port());
  ASSERT_GE(fd, 0);
  timeval tv{0, 300 * 1000};  // a send blocked this long: backpressure
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const std::string msg = frame(std::string(64 << 10, 'n'));
  size_t sent = 0;
  size_t peak_rss = rss_bytes();
  auto t0 = Steady::now();
  bool blocked = false;
  while (sent < (20u << 20) && Steady::now() - t0 < 3s) {
    ssize_t n = ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL);
    if (n < 0) {
      blocked = errno == EAGAIN || errno == EWOULDBLOCK;
      break;
    }
    sent += static_cast<size_t>(n);
    peak_rss = std::max(peak_rss, rss_bytes());
  }
  std::this_thread::sleep_for(100ms);
  peak_rss = std::max(peak_rss, rss_bytes());
  finish_good();
  abortive_close(fd);
  EXPECT_TRUE(blocked) << "sent " << sent << " bytes without being held back";
  EXPECT_GE(handler_.high_water.load(), 1);
  if (kResourceBounds) {
    EXPECT_LE(peak_rss, rss_before_ + (32u << 20));
  }
  extra_ = "sent_before_block_mib=" + std::to_string(sent >> 20) +
           " high_water_events=" + std::to_string(handler_.high_water.load()) +
           " peak_rss_mib=" + std::to_string(peak_rss >> 20);
}

// 500 connects closed with SO_LINGER 0 (RST); every tenth first sends a
// 256 KiB frame, so the server is writing its echo into a reset peer. The
// process must survive that (SIGPIPE is ignored; sends use MSG_NOSIGNAL).
TEST_P(Attack, ConnectResetFlood) {
  case_ = "connect_reset_flood";
  start();
  struct sigaction sa {};
  ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &sa), 0);
  EXPECT_EQ(sa.sa_handler, SIG_IGN) << "a server must ignore SIGPIPE";
  const std::string big = frame(std::string(256 << 10, 'r'));
  int done = 0;
  int i = 0;
  auto t0 = Steady::now();
  // At least 500 connects; repeated for 600 ms (3 s at most).
  while ((i < 500 || Steady::now() - t0 < 600ms) && Steady::now() - t0 < 3s) {
    int fd = connect_local(server_->port());
    if (fd < 0) continue;
    if (i++ % 10 == 0) {
      set_recv_timeout(fd, 1000);
      send_all(fd, big);
      char b[4096];
      ::recv(fd, b, sizeof b, 0);  // the echo has started
    }
    abortive_close(fd);
    ++done;
  }
  finish_good();
  EXPECT_GE(done, 500);
  extra_ = "resets=" + std::to_string(done);
}

// A burst beyond max_connections: 50 served, the rest closed at once. The
// limit is 51 because the good client holds one connection.
TEST_P(Attack, BurstBeyondMaxConnections) {
  case_ = "burst_beyond_max_conns";
  ServerOptions opts;
  opts.max_connections = 51;
  start(opts);
  const std::string ping = frame("hello");
  bool all_rounds_exact = true;
  double worst_check_ms = 0;
  std::string counts;
  const int rounds = run_for(600ms, 20, [&] {
    std::vector<int> fds;
    for (int i = 0; i < 200; ++i) {
      int fd = connect_local(server_->port());
      if (fd < 0) continue;
      set_recv_timeout(fd, 1000);
      fds.push_back(fd);
    }
    wait_count(51, 2s);
    std::this_thread::sleep_for(50ms);  // every accept handled
    int served = 0;
    int refused = 0;
    auto t0 = Steady::now();
    for (int fd : fds) {
      send_all(fd, ping);
      if (read_n(fd, ping.size()) == ping) {
        ++served;
      } else {
        ++refused;
      }
    }
    worst_check_ms = std::max(
        worst_check_ms, std::chrono::duration<double, std::milli>(Steady::now() - t0).count());
    for (int fd : fds) ::close(fd);
    wait_drained_to(1, 2s);
    if (served != 50 || refused != 150) {
      all_rounds_exact = false;
      counts += " " + std::to_string(served) + "/" + std::to_string(refused);
    }
  });
  finish_good();
  EXPECT_TRUE(all_rounds_exact) << "served/refused per bad round:" << counts;
  EXPECT_EQ(server_->refused_count(), 150u * rounds);
  extra_ = "rounds=" + std::to_string(rounds) + " each_served=50_refused=150:" +
           (all_rounds_exact ? "yes" : "NO" + counts) +
           " refused_total=" + std::to_string(server_->refused_count()) +
           " worst_check_200_ms=" + std::to_string(static_cast<int>(worst_check_ms));
}

// Descriptor exhaustion: the soft RLIMIT_NOFILE drops to (open + 40) while
// two threads hammer connects; then it is restored and a fresh client must
// be served.
TEST_P(Attack, DescriptorExhaustion) {
  case_ = "fd_exhaustion";
  start();
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = count_fds() + 40;
  const uint16_t port = server_->port();
  std::atomic<bool> go{true};
  std::atomic<int> emfile{0};
  std::atomic<int> attempts{0};
  auto hammer = [&] {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::vector<int> held;
    while (go) {
      ++attempts;
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        ++emfile;
        if (!held.empty()) {
          ::close(held.front());
          held.erase(held.begin());
        }
        std::this_thread::sleep_for(1ms);
        continue;
      }
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);  // EINPROGRESS
      held.push_back(fd);
      if (held.size() > 30) {
        ::close(held.front());
        held.erase(held.begin());
      }
    }
    for (int fd : held) ::close(fd);
  };
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  {
    auto stop_hammer = [&] { go = false; };
    testing::TestThread h1 = testing::stoppable_thread(hammer, stop_hammer);
    testing::TestThread h2 = testing::stoppable_thread(hammer, stop_hammer);
    std::this_thread::sleep_for(1500ms);
  }  // stopped and joined
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  finish_good();
  // The server recovered: a fresh client is served.
  int fd = -1;
  std::string got;
  auto t0 = Steady::now();
  const std::string ping = frame("fresh");
  while (Steady::now() - t0 < 3s) {
    fd = connect_within(port, 500);
    if (fd >= 0) {
      set_recv_timeout(fd, 1000);
      send_all(fd, ping);
      got = read_n(fd, ping.size());
      ::close(fd);
      if (got == ping) break;
    }
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(got, ping) << "no fresh client served after the limit was restored";
  EXPECT_GT(emfile.load(), 0) << "the limit never bit";
  extra_ = "connect_attempts=" + std::to_string(attempts.load()) +
           " client_emfile=" + std::to_string(emfile.load()) + " fresh_client=" +
           (got == ping ? "served" : "FAILED");
}

// Graceful stop with a deadline: a client owed 1 MiB that reads gets all of
// it and then an orderly EOF (FIN, not a reset); a client that never reads
// is cut off at the deadline, and stop() returns soon after it.
TEST_P(Attack, GracefulStopWithDeadline) {
  case_ = "graceful_stop";
  start();
  finish_good();
  const uint16_t port = server_->port();
  int reader = connect_local(port);
  int stuck = connect_local(port);
  ASSERT_GE(reader, 0);
  ASSERT_GE(stuck, 0);
  set_recv_timeout(reader, 3000);
  timeval tv{0, 300 * 1000};
  ::setsockopt(stuck, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const std::string big = frame(std::string(512 << 10, 'g'));
  ASSERT_TRUE(send_all(reader, big));
  // The whole frame must have arrived (and its echo be owed) before stop:
  // a frame still arriving is dropped by a graceful close.
  const size_t before = handler_.received;
  auto t_wait = Steady::now();
  while (handler_.received < before + (512u << 10) && Steady::now() - t_wait < 3s) {
    std::this_thread::sleep_for(5ms);
  }
  const std::string chunk = frame(std::string(64 << 10, 's'));
  for (int i = 0; i < 200; ++i) {  // until backpressure holds it back
    if (::send(stuck, chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) break;
  }
  auto t0 = Steady::now();
  testing::TestThread stopper([this] { server_->stop(500ms); });
  const std::string got = read_n(reader, big.size());
  char b;
  const ssize_t eof = ::recv(reader, &b, 1, 0);
  const int eof_errno = eof < 0 ? errno : 0;
  stopper.join();
  const double stop_ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big);
  EXPECT_EQ(eof, 0) << "expected an orderly EOF after the echo, got errno " << eof_errno;
  EXPECT_TRUE(wait_closed(stuck, 1000)) << "the stuck client was not cut off";
  EXPECT_GE(stop_ms, 400);
  EXPECT_LE(stop_ms, 1500);
  ::close(reader);
  abortive_close(stuck);
  EXPECT_EQ(server_->connection_count(), 0u);
  server_.reset();
  size_t fds = count_fds();
  std::printf("ATTACK io=%s case=%s stop_ms=%.0f reader_got=%zu/%zu orderly_eof=%s "
              "fds=%zu->%zu\n",
              GetParam().c_str(), case_.c_str(), stop_ms, got.size(), big.size(),
              eof == 0 ? "yes" : "no", fds_before_, fds);
  std::fflush(stdout);
  EXPECT_EQ(fds, fds_before_);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Attack, ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

}  // namespace
}  // namespace sluice
