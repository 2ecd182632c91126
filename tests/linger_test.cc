// Lingering close, on every back end: a graceful close must deliver every
// byte the server handed the kernel and end in an orderly FIN, even when
// the peer keeps sending after the server stopped listening to it (issue
// 10, bug 2). Before the fix the server closed with unread input, Linux
// answered with a reset and dropped its send queue.
//
// Each case is bounded (a few seconds) and talks to 127.0.0.1 only.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "codec/factory.h"
#include "core/server.h"
#include "io/registry.h"
#include "tests/backend_params.h"
#include "tests/test_thread.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;
using testing::connect_local;
using testing::frame;
using testing::set_recv_timeout;

// Echoes every message; a message "bye" makes it close instead. With
// `reply` set, "bye" is first answered with that many bytes.
class LingerEcho final : public Handler {
 public:
  void on_open(Connection& conn) override {
    // A send buffer that takes the whole reply at once, so the close gets
    // to its linger phase (nothing left to hand over) while the peer,
    // whose receive window is closed, cannot acknowledge the FIN.
    if (sndbuf > 0) ::setsockopt(conn.fd(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  }
  void on_message(Connection& conn, std::string_view data) override {
    if (data == "bye") {
      if (reply > 0) conn.send(std::string(reply, 'r'));
      conn.close();
      return;
    }
    if (conn.send(data)) echoed += data.size() + (framed ? 4 : 0);
  }
  void on_close(Connection&, CloseReason, int) override { ++closed; }

  std::atomic<size_t> echoed{0};  // bytes on the wire the server queued
  std::atomic<int> closed{0};
  bool framed = false;
  size_t reply = 0;
  int sndbuf = 0;
};

// What a peer read: bytes, then how the stream ended.
struct Received {
  size_t bytes = 0;
  int end_errno = 0;  // 0: orderly EOF; else recv's errno (ECONNRESET ...)
  bool timed_out = false;
  std::string ending() const {
    if (timed_out) return "timeout";
    return end_errno == 0 ? "EOF" : std::strerror(end_errno);
  }
};

Received read_to_end(int fd, std::chrono::milliseconds limit) {
  Received r;
  set_recv_timeout(fd, 200);
  const auto end = Steady::now() + limit;
  std::string buf(1 << 16, '\0');
  while (true) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n > 0) {
      r.bytes += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return r;
    const int e = errno;
    if ((e == EAGAIN || e == EINTR) && Steady::now() < end) continue;
    if (e == EAGAIN) {
      r.timed_out = true;
    } else {
      r.end_errno = e;
    }
    return r;
  }
}

// A client with a tiny receive window (so our reply fills it and our FIN
// cannot be acknowledged while it does not read) that asks the server to
// close ("bye"). The fd, or -1.
int connect_and_say_bye(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string bye = frame("bye");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::send(fd, bye.data(), bye.size(), MSG_NOSIGNAL) != ssize_t(bye.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends until `stop`, an error, or (blocked) a 100 ms send timeout per try;
// pauses `gap` between chunks. Returns the bytes sent.
size_t keep_sending(int fd, const std::atomic<bool>& stop, size_t chunk,
                    std::chrono::microseconds gap) {
  timeval tv{0, 100 * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const std::string junk(chunk, 'j');
  size_t sent = 0;
  while (!stop.load()) {
    const ssize_t n = ::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    if (n > 0) sent += static_cast<size_t>(n);
    if (n < 0 && errno != EAGAIN && errno != EINTR) break;
    if (gap.count() > 0) std::this_thread::sleep_for(gap);
  }
  return sent;
}

class Linger : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
  }
  void TearDown() override {
    if (server_) server_->stop(500ms);
  }

  void start(const std::string& codec, ServerOptions opts = {}) {
    codec::CodecOptions c;
    c.name = codec;
    c.max_frame = 1 << 20;
    opts.io = GetParam();
    server_ = std::make_unique<Server>(opts, handler_, codec::make_codec(c));
    std::string err;
    ASSERT_EQ(server_->start(&err), 0) << err;
  }

  bool wait_released(std::chrono::milliseconds limit) {
    const auto end = Steady::now() + limit;
    while (server_->connection_count() != 0) {
      if (Steady::now() > end) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  // Until a linger has started (the connection may not even be adopted
  // yet when the client's connect() returns).
  bool wait_lingering(std::chrono::milliseconds limit) {
    const auto end = Steady::now() + limit;
    while (server_->linger_stats().started == 0) {
      if (Steady::now() > end) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  // A peer that asks to close, never reads, and keeps sending `chunk`
  // bytes every `gap`: how long after the linger began the server let go.
  struct CutOff {
    bool released = false;
    double ms = 0;
    LingerStats stats;
  };
  CutOff endless_sender(const ServerOptions& opts, size_t chunk, std::chrono::microseconds gap,
                        std::chrono::milliseconds limit, const char* what) {
    handler_.framed = true;
    handler_.reply = 256 << 10;
    handler_.sndbuf = 4 << 20;
    start("length", opts);
    CutOff c;
    const int fd = connect_and_say_bye(server_->port());
    EXPECT_GE(fd, 0);
    if (fd < 0) return c;
    std::atomic<bool> stop_sending{false};
    testing::TestThread writer = testing::stoppable_thread(
        [&] { keep_sending(fd, stop_sending, chunk, gap); }, [&] { stop_sending = true; });
    if (wait_lingering(2s)) {
      const auto t0 = Steady::now();
      c.released = wait_released(limit);
      c.ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
    } else {
      ADD_FAILURE() << "the connection never started lingering";
    }
    stop_sending = true;
    writer.join();
    c.stats = server_->linger_stats();
    std::printf("LINGER io=%s case=%s released_ms=%.0f\n", GetParam().c_str(), what, c.ms);
    report(what, Received{}, 0);
    ::close(fd);
    return c;
  }

  void report(const char* what, const Received& r, size_t owed) {
    const LingerStats s = server_->linger_stats();
    std::printf("LINGER io=%s case=%s received=%zu owed=%zu end=%s started=%llu eof=%llu "
                "fin_acked=%llu cut_time=%llu cut_bytes=%llu\n",
                GetParam().c_str(), what, r.bytes, owed, r.ending().c_str(),
                static_cast<unsigned long long>(s.started),
                static_cast<unsigned long long>(s.peer_eof),
                static_cast<unsigned long long>(s.fin_acked),
                static_cast<unsigned long long>(s.cut_by_time),
                static_cast<unsigned long long>(s.cut_by_bytes));
    std::fflush(stdout);
  }

  LingerEcho handler_;
  std::unique_ptr<Server> server_;
};

// 50 valid 60,000-byte frames, a length field of 0x7fffffff, then 1 MiB of
// junk; the peer reads only 0.5 s later. Every echo is owed, then EOF.
TEST_P(Linger, TrailingInputAfterFrameErrorGetsEveryByteThenEof) {
  handler_.framed = true;
  start("length");
  const int fd = connect_local(server_->port());
  ASSERT_GE(fd, 0);
  std::string wire;
  for (int i = 0; i < 50; ++i) wire += frame(std::string(60000, char('a' + i % 26)));
  const size_t owed = wire.size();
  wire += "\x7f\xff\xff\xff";
  wire += std::string(1 << 20, 'j');
  testing::TestThread writer([&] {
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    size_t off = 0;
    while (off < wire.size()) {
      const ssize_t n = ::send(fd, wire.data() + off, wire.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  });
  std::this_thread::sleep_for(500ms);
  const Received r = read_to_end(fd, 5s);
  writer.join();
  report("frame_error", r, owed);
  EXPECT_EQ(r.bytes, owed);
  EXPECT_EQ(r.ending(), "EOF");
  EXPECT_TRUE(wait_released(3s));
  ::close(fd);
}

// A peer sends without reading until the server is backpressured; the
// server stops with a drain deadline while input is still arriving, and
// the peer starts reading. Every byte the server queued arrives, then EOF.
TEST_P(Linger, InputArrivingDuringStopDrainGetsEveryByteThenEof) {
  ServerOptions opts;
  opts.limits.high_water = 1 << 20;
  opts.limits.low_water = 256 << 10;
  opts.limits.linger_max_bytes = 64 << 20;  // this case is not about the bound
  start("raw", opts);
  const int fd = connect_local(server_->port());
  ASSERT_GE(fd, 0);
  std::atomic<bool> stop_sending{false};
  testing::TestThread writer = testing::stoppable_thread(
      [&] { keep_sending(fd, stop_sending, 16 << 10, 1ms); }, [&] { stop_sending = true; });
  std::this_thread::sleep_for(1s);  // buffers fill; the server pauses reading
  const auto t0 = Steady::now();
  testing::TestThread stopper([&] { server_->stop(5000ms); });
  std::this_thread::sleep_for(100ms);  // input keeps arriving during the stop
  const Received r = read_to_end(fd, 6s);
  stop_sending = true;
  writer.join();
  stopper.join();
  const double stop_ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
  report("stop_drain", r, handler_.echoed.load());
  EXPECT_EQ(r.bytes, handler_.echoed.load());
  EXPECT_EQ(r.ending(), "EOF");
  EXPECT_LT(stop_ms, 5000);
  ::close(fd);
}

// The peer never reads (its window is closed, so our FIN cannot be
// acknowledged) and trickles input forever: cut off at the time bound.
TEST_P(Linger, EndlessTrickleIsCutOffAtTheTimeBound) {
  ServerOptions opts;
  opts.limits.linger_timeout = 300ms;
  opts.limits.linger_max_bytes = 64 << 20;
  const CutOff c = endless_sender(opts, 512, 5ms, 3s, "time_bound");
  EXPECT_TRUE(c.released);
  EXPECT_EQ(c.stats.started, 1u);
  EXPECT_EQ(c.stats.cut_by_time, 1u);
  EXPECT_GE(c.ms, 250);
  EXPECT_LT(c.ms, 1500);
  EXPECT_EQ(handler_.closed.load(), 1);
}

// The same peer sending as fast as it can: cut off at the byte bound,
// long before the time bound.
TEST_P(Linger, EndlessFloodIsCutOffAtTheByteBound) {
  ServerOptions opts;
  opts.limits.linger_timeout = 5s;
  opts.limits.linger_max_bytes = 256 << 10;
  const CutOff c = endless_sender(opts, 64 << 10, 0us, 4s, "byte_bound");
  EXPECT_TRUE(c.released);
  EXPECT_EQ(c.stats.started, 1u);
  EXPECT_EQ(c.stats.cut_by_bytes, 1u);
  EXPECT_EQ(c.stats.cut_by_time, 0u);
  EXPECT_LT(c.ms, 2500);
  EXPECT_EQ(handler_.closed.load(), 1);
}

// A stop's deadline still holds: a connection lingering for a peer that
// never takes our FIN is aborted at the deadline, not at linger_timeout.
TEST_P(Linger, StopDeadlineAbortsALingeringConnection) {
  ServerOptions opts;
  opts.limits.linger_timeout = 10s;
  handler_.framed = true;
  handler_.reply = 256 << 10;
  handler_.sndbuf = 4 << 20;
  start("length", opts);
  const int fd = connect_and_say_bye(server_->port());
  ASSERT_GE(fd, 0);
  std::atomic<bool> stop_sending{false};
  // ASSERT_TRUE below returning with the writer running aborted before.
  testing::TestThread writer = testing::stoppable_thread(
      [&] { keep_sending(fd, stop_sending, 512, 5ms); }, [&] { stop_sending = true; });
  ASSERT_TRUE(wait_lingering(2s));
  const auto t0 = Steady::now();
  server_->stop(300ms);
  const double ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
  stop_sending = true;
  writer.join();
  std::printf("LINGER io=%s case=stop_deadline stop_ms=%.0f\n", GetParam().c_str(), ms);
  EXPECT_GE(ms, 250);
  EXPECT_LT(ms, 1500);
  EXPECT_EQ(server_->connection_count(), 0u);
  EXPECT_EQ(handler_.closed.load(), 1);
  ::close(fd);
}

// The common case: the peer shut down first; the close that follows waits
// for nothing (no linger), and the peer gets its echo then EOF.
TEST_P(Linger, CloseAfterPeerEofIsPrompt) {
  start("raw");
  const int fd = connect_local(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, "hello", 5, MSG_NOSIGNAL), 5);
  ::shutdown(fd, SHUT_WR);
  const auto t0 = Steady::now();
  const Received r = read_to_end(fd, 2s);
  const bool released = wait_released(2s);
  const double ms = std::chrono::duration<double, std::milli>(Steady::now() - t0).count();
  report("after_eof", r, 5);
  EXPECT_EQ(r.bytes, 5u);
  EXPECT_EQ(r.ending(), "EOF");
  EXPECT_TRUE(released);
  EXPECT_LT(ms, 300);
  EXPECT_EQ(server_->linger_stats().started, 0u);
  EXPECT_EQ(handler_.closed.load(), 1);
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Linger, ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

}  // namespace
}  // namespace sluice
