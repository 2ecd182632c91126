// The heartbeat service end to end, in process, on every registered back
// end, with short real-time intervals (50 ms x 3 misses): silent peers are
// dropped within interval x misses + one interval (TCP and UDP; the
// lateness is printed), pinging peers survive echo load on other
// connections, malformed input drops only its sender, and the Pinger
// (heartbeat_client's engine) reconnects after a server restart with counts
// that add up.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/backend_params.h"
#include "codec/heartbeat.h"
#include "core/net.h"
#include "core/server.h"
#include "core/udp_server.h"
#include "io/registry.h"
#include "servers/heartbeat_pinger.h"
#include "servers/heartbeat_service.h"
#include "tests/test_thread.h"
#include "tests/test_util.h"
#include "tests/udp_probe.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
namespace hb = codec::heartbeat;
using servers::PeerEvent;

constexpr auto kInterval = 50ms;
constexpr int kMisses = 3;
constexpr auto kTimeout = kInterval * kMisses;

uint64_t now_ns() {
  return static_cast<uint64_t>(Clock::now().time_since_epoch().count());
}

std::string local_name(int fd) {
  sockaddr_storage a;
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return address_name(reinterpret_cast<sockaddr*>(&a), len);
}

// Joins and drops seen by the server, in order (observer runs on loop threads).
class Events {
 public:
  servers::PeerObserver observer() {
    return [this](const PeerEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(e);
      cv_.notify_all();
    };
  }
  // The first drop of `peer`, waiting up to `limit`.
  std::optional<PeerEvent> drop_of(const std::string& peer, std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<PeerEvent> found;
    cv_.wait_for(lock, limit, [&] {
      for (const auto& e : events_) {
        if (e.kind == PeerEvent::Kind::kDrop && e.peer == peer) {
          found = e;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  size_t count(PeerEvent::Kind kind, const std::string& peer = "") {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const auto& e : events_) n += e.kind == kind && (peer.empty() || e.peer == peer);
    return n;
  }
  std::vector<PeerEvent> drops() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<PeerEvent> out;
    for (const auto& e : events_) {
      if (e.kind == PeerEvent::Kind::kDrop) out.push_back(e);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PeerEvent> events_;
};

// A TCP heartbeat peer on a blocking socket.
class TcpPeer {
 public:
  explicit TcpPeer(uint16_t port) : fd_(testing::connect_local(port)) {
    testing::set_recv_timeout(fd_, 100);
  }
  ~TcpPeer() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  std::string name() const { return local_name(fd_); }
  bool send_raw(std::string_view bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  bool ping(uint64_t seq) { return send_raw(hb::frame(hb::view(hb::encode_ping(seq, now_ns())))); }
  bool data(std::string_view bytes) { return send_raw(hb::frame(hb::encode_data(bytes))); }
  // Waits for the next message (PONG or DATA echo) up to limit.
  std::optional<hb::Message> next(std::chrono::milliseconds limit, std::string* data = nullptr) {
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
      if (!queue_.empty()) {
        auto m = queue_.front();
        queue_.erase(queue_.begin());
        if (data) *data = m.second;
        return m.first;
      }
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return std::nullopt;
      if (n < 0) continue;  // recv timeout tick
      parser_.feed({buf, static_cast<size_t>(n)}, [&](const hb::Message& m) {
        queue_.push_back({m, std::string(m.data)});
      });
    }
    return std::nullopt;
  }
  bool pong(uint64_t seq, std::chrono::milliseconds limit = 1000ms) {
    auto m = next(limit);
    return m && m->type == hb::Type::kPong && m->seq == seq;
  }

 private:
  int fd_;
  hb::StreamParser parser_;
  std::vector<std::pair<hb::Message, std::string>> queue_;
};

// A UDP heartbeat peer.
class UdpPeer {
 public:
  explicit UdpPeer(uint16_t port) : fd_(bind_udp("127.0.0.1", 0, {})) {
    make_address("127.0.0.1", port, &to_, &len_);
  }
  ~UdpPeer() { ::close(fd_); }
  std::string name() const { return local_name(fd_); }
  bool send(std::string_view payload) {
    return ::sendto(fd_, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to_),
                    len_) == static_cast<ssize_t>(payload.size());
  }
  bool ping(uint64_t seq) { return send(hb::view(hb::encode_ping(seq, now_ns()))); }
  std::string recv(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return {};
    std::string buf(70000, '\0');
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return buf;
  }
  bool pong(uint64_t seq, int timeout_ms = 1000) {
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < end) {
      std::string d = recv(50);
      hb::Message m;
      if (!d.empty() && hb::parse(d, &m) == hb::ParseError::kNone && m.type == hb::Type::kPong &&
          m.seq == seq) {
        return true;
      }
    }
    return false;
  }

 private:
  int fd_;
  sockaddr_storage to_;
  socklen_t len_;
};

void report_lateness(const std::string& what, Clock::duration late) {
  std::printf("[drop lateness] %-16s %6.2f ms after interval x misses\n", what.c_str(),
              std::chrono::duration<double, std::milli>(late).count());
}

class Heartbeat : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    sluice::raise_fd_limit();
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
    hopts_.interval = kInterval;
    hopts_.misses = kMisses;
  }

  void skip_without_udp() {
    std::string why = testing::udp_unsupported_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << why << " (not yet supported)";
  }

  void start_tcp(uint16_t port = 0) {
    if (!tcp_handler_) {
      tcp_handler_ = std::make_unique<servers::HeartbeatTcpHandler>(hopts_, events_.observer());
    }
    ServerOptions o;
    o.io = GetParam();
    o.port = port;
    o.idle = hopts_.idle();
    o.stop_deadline = 300ms;
    tcp_ = std::make_unique<Server>(o, *tcp_handler_, hb::make_tcp_codec());
    std::string err;
    ASSERT_EQ(tcp_->start(&err), 0) << err;
  }

  void start_udp(uint16_t port = 0) {
    if (!udp_handler_) {
      udp_handler_ = std::make_unique<servers::HeartbeatUdpHandler>(hopts_, events_.observer());
    }
    UdpServerOptions o;
    o.io = GetParam();
    o.port = port;
    o.socket.reuse_addr = true;
    udp_ = std::make_unique<UdpServer>(o, *udp_handler_);
    std::string err;
    ASSERT_EQ(udp_->start(&err), 0) << err;
  }

  std::string label(const char* proto) const { return std::string(proto) + "/" + GetParam(); }

  servers::HeartbeatOptions hopts_;
  Events events_;
  std::unique_ptr<servers::HeartbeatTcpHandler> tcp_handler_;
  std::unique_ptr<servers::HeartbeatUdpHandler> udp_handler_;
  std::unique_ptr<Server> tcp_;
  std::unique_ptr<UdpServer> udp_;
};

TEST_P(Heartbeat, TcpSilentPeerIsDroppedWithinOneInterval) {
  start_tcp();
  TcpPeer peer(tcp_->port());
  Clock::time_point last_sent;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    last_sent = Clock::now();
    ASSERT_TRUE(peer.ping(seq));
    ASSERT_TRUE(peer.pong(seq));
    if (seq < 3) std::this_thread::sleep_for(kInterval);
  }
  auto drop = events_.drop_of(peer.name(), 2000ms);
  ASSERT_TRUE(drop) << "silent peer never dropped";
  EXPECT_EQ(drop->reason, "timeout missed=3");
  const Clock::duration late = drop->at - (last_sent + kTimeout);
  EXPECT_GE(late, 0ms) << "dropped before interval x misses of silence";
  EXPECT_LE(late, kInterval) << "dropped more than one interval late";
  report_lateness(label("tcp"), late);
  EXPECT_TRUE(testing::wait_closed(peer.fd(), 1000));
}

TEST_P(Heartbeat, UdpSilentPeerIsForgottenWithinOneInterval) {
  skip_without_udp();
  start_udp();
  UdpPeer peer(udp_->port());
  Clock::time_point last_sent;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    last_sent = Clock::now();
    ASSERT_TRUE(peer.ping(seq));
    ASSERT_TRUE(peer.pong(seq));
    if (seq < 3) std::this_thread::sleep_for(kInterval);
  }
  auto drop = events_.drop_of(peer.name(), 2000ms);
  ASSERT_TRUE(drop) << "silent UDP peer never forgotten";
  EXPECT_EQ(drop->reason, "timeout missed=3");
  const Clock::duration late = drop->at - (last_sent + kTimeout);
  EXPECT_GE(late, 0ms);
  EXPECT_LE(late, kInterval);
  report_lateness(label("udp"), late);
  EXPECT_EQ(events_.count(PeerEvent::Kind::kJoin, peer.name()), 1u);
}

// One loop serves a pinging peer and three connections streaming DATA
// echoes as fast as they can: the pinger must never be dropped.
TEST_P(Heartbeat, TcpPingingPeerSurvivesEchoLoad) {
  start_tcp();
  std::atomic<bool> stop{false};
  std::atomic<size_t> echoed{0};
  // Stopped and joined however the test ends (an ASSERT below returning
  // with these still running aborted an ASan run).
  std::vector<testing::TestThread> load;
  for (int i = 0; i < 3; ++i) {
    load.emplace_back([&, i](std::stop_token st) {
      TcpPeer p(tcp_->port());
      const std::string chunk = testing::random_bytes(16 << 10, i);
      while (!stop && !st.stop_requested()) {
        if (!p.data(chunk)) return;
        std::string back;
        auto m = p.next(2000ms, &back);
        if (!m || m->type != hb::Type::kData || back != chunk) return;
        echoed += back.size();
      }
    });
  }
  TcpPeer pinger(tcp_->port());
  int answered = 0;
  for (uint64_t seq = 1; seq <= 12; ++seq) {
    ASSERT_TRUE(pinger.ping(seq));
    answered += pinger.pong(seq, 1000ms) ? 1 : 0;
    std::this_thread::sleep_for(40ms);
  }
  stop = true;
  testing::stop_and_join(load);
  EXPECT_EQ(answered, 12);
  EXPECT_GT(echoed.load(), 1u << 20) << "no real echo load was generated";
  EXPECT_EQ(events_.count(PeerEvent::Kind::kDrop, pinger.name()), 0u);
  EXPECT_TRUE(pinger.ping(99));
  EXPECT_TRUE(pinger.pong(99));
}

TEST_P(Heartbeat, UdpPingingPeerSurvivesEchoLoad) {
  skip_without_udp();
  start_udp();
  std::atomic<bool> stop{false};
  std::atomic<size_t> echoed{0};
  testing::TestThread load([&](std::stop_token st) {
    UdpPeer p(udp_->port());
    const std::string payload = hb::encode_data(std::string(8000, 'L'));
    while (!stop && !st.stop_requested()) {
      for (int k = 0; k < 8; ++k) p.send(payload);
      for (int k = 0; k < 8; ++k) {
        if (!p.recv(200).empty()) ++echoed;
      }
    }
  });
  UdpPeer pinger(udp_->port());
  int answered = 0;
  for (uint64_t seq = 1; seq <= 12; ++seq) {
    ASSERT_TRUE(pinger.ping(seq));
    answered += pinger.pong(seq, 1000) ? 1 : 0;
    std::this_thread::sleep_for(40ms);
  }
  stop = true;
  load.join();
  EXPECT_EQ(answered, 12);
  EXPECT_GT(echoed.load(), 100u);
  EXPECT_EQ(events_.count(PeerEvent::Kind::kDrop, pinger.name()), 0u);
}

TEST_P(Heartbeat, TcpBadFramesCloseOnlyTheOffender) {
  start_tcp();
  TcpPeer good(tcp_->port());
  ASSERT_TRUE(good.ping(1));
  ASSERT_TRUE(good.pong(1));
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"unknown type", hb::frame(std::string("\x07hello", 6))},
      {"short PING", hb::frame(std::string("\x01\x00\x00\x00\x01", 5))},
      {"long PONG", hb::frame(std::string(18, '\x02'))},
      {"empty payload", hb::frame("")},
      {"4 GiB length", std::string("\xff\xff\xff\xff", 4)},
  };
  for (const auto& [what, bytes] : bad) {
    SCOPED_TRACE(what);
    TcpPeer offender(tcp_->port());
    const std::string name = offender.name();
    ASSERT_TRUE(offender.ping(7));  // a good frame first: joined and served
    ASSERT_TRUE(offender.pong(7));
    ASSERT_TRUE(offender.send_raw(bytes));
    EXPECT_TRUE(testing::wait_closed(offender.fd(), 2000));
    auto drop = events_.drop_of(name, 1000ms);
    ASSERT_TRUE(drop);
    EXPECT_EQ(drop->reason.rfind("protocol error", 0), 0u) << drop->reason;
  }
  ASSERT_TRUE(good.ping(2));
  EXPECT_TRUE(good.pong(2));
  EXPECT_EQ(events_.count(PeerEvent::Kind::kDrop, good.name()), 0u);
  EXPECT_EQ(tcp_handler_->counters().protocol_errors.load(), bad.size());
}

TEST_P(Heartbeat, UdpBadDatagramForgetsOnlyThatPeer) {
  skip_without_udp();
  start_udp();
  UdpPeer a(udp_->port()), b(udp_->port());
  ASSERT_TRUE(a.ping(1));
  ASSERT_TRUE(a.pong(1));
  ASSERT_TRUE(b.ping(1));
  ASSERT_TRUE(b.pong(1));
  ASSERT_TRUE(a.send(std::string(5, '\x01')));  // PING of the wrong length
  auto drop = events_.drop_of(a.name(), 1000ms);
  ASSERT_TRUE(drop);
  EXPECT_EQ(drop->reason, "protocol error (PING of 5 bytes (want 17))");
  ASSERT_TRUE(b.ping(2));
  EXPECT_TRUE(b.pong(2));
  // A forgotten peer that behaves again simply joins again.
  ASSERT_TRUE(a.ping(3));
  EXPECT_TRUE(a.pong(3));
  EXPECT_EQ(events_.count(PeerEvent::Kind::kJoin, a.name()), 2u);
  EXPECT_EQ(events_.count(PeerEvent::Kind::kDrop, b.name()), 0u);
}

void expect_counts_add_up(const servers::PingerReport& r) {
  EXPECT_EQ(r.pings_sent, r.pongs_received + r.lost + r.in_flight) << r.json();
  EXPECT_GT(r.pongs_received, 0u) << r.json();
  EXPECT_LE(r.rtt_p50_us, r.rtt_p99_us);
  EXPECT_LE(r.rtt_p99_us, r.rtt_max_us);
}

servers::PingerOptions pinger_options(const std::string& io, const std::string& proto,
                                      uint16_t port) {
  servers::PingerOptions o;
  o.io = io;
  o.proto = proto;
  o.port = port;
  o.conns = 3;
  o.interval = kInterval;
  o.misses = kMisses;
  o.duration = 1000ms;
  o.backoff_initial = 30ms;
  o.backoff_max = 120ms;
  o.connect_timeout = 500ms;
  return o;
}

TEST_P(Heartbeat, TcpPingerReconnectsAfterServerRestart) {
  start_tcp();
  const uint16_t port = tcp_->port();
  servers::Pinger pinger(pinger_options(GetParam(), "tcp", port));
  servers::PingerReport report;
  std::string err;
  int rc = 1;
  testing::TestThread runner =
      testing::stoppable_thread([&] { rc = pinger.run(&report, &err); }, [&] { pinger.stop(); });
  std::this_thread::sleep_for(300ms);
  tcp_->stop();  // the sessions see their connections close
  std::this_thread::sleep_for(150ms);
  start_tcp(port);  // same port (SO_REUSEADDR)
  runner.join();
  ASSERT_EQ(rc, 0) << err;
  expect_counts_add_up(report);
  EXPECT_GE(report.reconnects, 3u) << report.json();  // more only if a slow machine made a session give up early
  EXPECT_GE(report.drops, 3u);
  EXPECT_GT(report.pongs_received, report.pings_sent / 2) << report.json();
  std::printf("[pinger tcp/%s] %s\n", GetParam().c_str(), report.json().c_str());
}

TEST_P(Heartbeat, UdpPingerReconnectsAfterServerRestart) {
  skip_without_udp();
  start_udp();
  const uint16_t port = udp_->port();
  servers::Pinger pinger(pinger_options(GetParam(), "udp", port));
  servers::PingerReport report;
  std::string err;
  int rc = 1;
  testing::TestThread runner =
      testing::stoppable_thread([&] { rc = pinger.run(&report, &err); }, [&] { pinger.stop(); });
  std::this_thread::sleep_for(250ms);
  udp_->stop();  // silence: each session gives up after interval x misses
  std::this_thread::sleep_for(300ms);
  start_udp(port);
  runner.join();
  ASSERT_EQ(rc, 0) << err;
  expect_counts_add_up(report);
  EXPECT_GE(report.reconnects, 3u) << report.json();  // more only if a slow machine made a session give up early
  EXPECT_GE(report.lost, 3u) << "PINGs sent into the void must count as lost";
  std::printf("[pinger udp/%s] %s\n", GetParam().c_str(), report.json().c_str());
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Heartbeat, ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

}  // namespace
}  // namespace sluice
