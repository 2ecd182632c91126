// One conformance suite over every registered IO back end (TEST_P over the
// registry, like Netty's SocketEchoTest): the same server code must behave
// the same on each. A back end that is unavailable here is skipped with its
// reason, never silently.
#include <netinet/in.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "tests/backend_params.h"
#include "codec/factory.h"
#include "core/event_loop.h"
#include "core/server.h"
#include "io/registry.h"
#include "tests/test_thread.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::concurrent_echo;
using testing::connect_local;
using testing::count_fds;
using testing::echo_through;
using testing::random_bytes;
using testing::read_n;
using testing::set_recv_timeout;
using testing::wait_closed;

// Echoes every message; counts what it saw so tests can observe the server.
class CountingEcho final : public Handler {
 public:
  void on_message(Connection& conn, std::string_view data) override {
    received += data.size();
    for (int i = 0; i < copies; ++i) conn.send(data);
  }
  void on_high_water(Connection&, size_t) override { ++high_water_events; }
  void on_close(Connection&, CloseReason reason, int) override {
    if (reason == CloseReason::kFrameError) ++frame_errors;
    ++closed;
  }
  std::atomic<size_t> received{0};
  std::atomic<int> high_water_events{0};
  std::atomic<int> frame_errors{0};
  std::atomic<int> closed{0};
  int copies = 1;  // times each message is echoed; set before start()
};

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    sluice::raise_fd_limit();
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
  }

  void start(const std::string& codec = "raw", size_t max_frame = 32 << 20,
             ServerOptions opts = {}) {
    codec::CodecOptions c;
    c.name = codec;
    c.max_frame = max_frame;
    c.fixed_size = 512;
    c.delimiter = "\\r\\n";
    opts.io = GetParam();
    opts.stop_deadline = 500ms;
    server_ = std::make_unique<Server>(opts, handler_, codec::make_codec(c));
    std::string err;
    ASSERT_EQ(server_->start(&err), 0) << err;
    ASSERT_EQ(server_->io_name(), GetParam());
  }

  // Waits until the server has no connections left (closes are async).
  bool drained(std::chrono::milliseconds limit = 5s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (server_->connection_count() != 0) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(2ms);
    }
    return true;
  }

  int client() {
    int fd = connect_local(server_->port());
    EXPECT_GE(fd, 0);
    set_recv_timeout(fd, 10000);
    return fd;
  }

  CountingEcho handler_;
  std::unique_ptr<Server> server_;
};

TEST_P(Conformance, RawEchoIntegrity1ByteTo16MiB) {
  start();
  for (size_t size : {size_t{1}, size_t{7}, size_t{1000}, size_t{65536 + 3},
                      size_t{1} << 20, size_t{16} << 20}) {
    int fd = client();
    std::string data = random_bytes(size, size);
    EXPECT_TRUE(echo_through(fd, data, size) == data) << "size " << size;
    ::close(fd);
  }
}

// True when `got` is `data` cut into pieces with each piece repeated:
// c1 c1 c2 c2 ... where c1 c2 ... == data. A raw echo sends each input
// view twice, and TCP does not keep send boundaries: one send may arrive
// in several reads (a short read, which --config=faults injects).
bool each_piece_twice(std::string_view got, std::string_view data) {
  if (data.empty()) return got.empty();
  for (size_t len = 1; len <= data.size() && 2 * len <= got.size(); ++len) {
    const std::string_view piece = data.substr(0, len);
    if (got.substr(0, len) == piece && got.substr(len, len) == piece &&
        each_piece_twice(got.substr(2 * len), data.substr(len))) {
      return true;
    }
  }
  return false;
}

// Without a codec, echoing the whole input hands the input buffer to the
// output (no copy); sending the same view a second time must then still
// work, although it now points into the output buffer itself.
TEST_P(Conformance, RawEchoOfTheSameViewTwice) {
  handler_.copies = 2;
  start();
  int fd = client();
  for (size_t size : {size_t{1}, size_t{64}, size_t{1000}}) {
    for (int round = 0; round < 20; ++round) {
      const std::string data = random_bytes(size, size * 100 + round);
      ASSERT_EQ(::send(fd, data.data(), data.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(data.size()));
      const std::string got = read_n(fd, 2 * size);
      EXPECT_TRUE(each_piece_twice(got, data)) << "size " << size;
    }
  }
  ::close(fd);
  EXPECT_TRUE(drained());
}

// Builds a stream of frames for the codec, echoes it through the server
// written in random pieces (frames split and coalesced on the wire), and
// checks the byte stream that comes back is identical.
TEST_P(Conformance, CodecEchoIntegrity) {
  for (const char* name : {"length", "fixed", "delimiter", "line"}) {
    SCOPED_TRACE(name);
    start(name, 17 << 20);
    codec::CodecOptions c;
    c.name = name;
    c.max_frame = 17 << 20;
    c.fixed_size = 512;
    c.delimiter = "\\r\\n";
    auto enc = codec::make_codec(c);
    std::mt19937_64 rng(42);
    Buffer stream;
    std::vector<size_t> sizes = {1, 2, 100, 512, 4096, 65536, 1 << 20};
    if (std::string(name) == "length") sizes.push_back(16 << 20);
    for (int round = 0; round < 3; ++round) {
      for (size_t s : sizes) {
        if (std::string(name) == "fixed") s = 512;
        std::string p = random_bytes(s, rng());
        if (std::string(name) == "delimiter" || std::string(name) == "line") {
          for (char& ch : p) {
            if (ch == '\r' || ch == '\n') ch = 'x';
          }
        }
        ASSERT_TRUE(enc->encode(p, stream));
      }
    }
    std::string wire(stream.view());
    int fd = client();
    std::string back = echo_through(fd, wire, 7);
    EXPECT_EQ(back.size(), wire.size());
    EXPECT_TRUE(back == wire);
    ::close(fd);
    server_->stop();
  }
}

TEST_P(Conformance, ThousandConcurrentConnections) {
  start();
  const size_t kConns = 1000;
  testing::ConcurrentResult r = concurrent_echo(server_->port(), kConns, 4096, 60000);
  EXPECT_EQ(r.connect_failed, 0u);
  EXPECT_EQ(r.corrupt, 0u);
  if (GetParam() == "select") {
    // Client and server share this process, so about half the server's
    // descriptors land above FD_SETSIZE: those connections must be refused
    // cleanly, and every other one served.
    std::printf("select: %zu of %zu connections served, %zu refused (server fd >= "
                "FD_SETSIZE=%d)\n",
                r.ok, kConns, r.refused, FD_SETSIZE);
    EXPECT_GT(r.ok, 300u);
    EXPECT_EQ(r.ok + r.refused, kConns);
  } else {
    EXPECT_EQ(r.ok, kConns);
  }
  EXPECT_TRUE(drained());
}

TEST_P(Conformance, TenThousandShortLivedConnectionsLeaveNothingBehind) {
  start();
  // Warm up once so lazily created state (buffers, threads) is counted.
  {
    int fd = client();
    EXPECT_EQ(echo_through(fd, "warm", 1), "warm");
    ::close(fd);
  }
  ASSERT_TRUE(drained());
  const size_t fds_before = count_fds();
  const size_t rss_before = testing::rss_bytes();
  for (int i = 0; i < 10000; ++i) {
    int fd = client();
    ASSERT_GE(fd, 0) << "connection " << i;
    char msg[16];
    int n = std::snprintf(msg, sizeof msg, "hello %d", i);
    ASSERT_EQ(::send(fd, msg, n, MSG_NOSIGNAL), n);
    ASSERT_EQ(read_n(fd, n), std::string(msg, n)) << "connection " << i;
    ::close(fd);
  }
  EXPECT_TRUE(drained());
  EXPECT_EQ(count_fds(), fds_before);
  const size_t rss_after = testing::rss_bytes();
  if (!testing::kSanitized) {  // ASan keeps freed memory in quarantine
    EXPECT_LT(rss_after, rss_before + (16u << 20)) << "RSS grew by " << (rss_after - rss_before);
  }
}

TEST_P(Conformance, HalfCloseDeliversEverythingOwed) {
  start();
  int fd = client();
  std::string data = random_bytes(3 << 20, 5);
  std::mt19937_64 rng(1);
  testing::TestThread writer([&](std::stop_token st) {
    testing::UnblockOnStop unblock(st, fd);
    testing::write_chunked(fd, data, rng);
    ::shutdown(fd, SHUT_WR);
  });
  std::string back = read_n(fd, data.size());
  writer.join();
  EXPECT_TRUE(back == data) << back.size() << " of " << data.size();
  EXPECT_TRUE(wait_closed(fd, 5000)) << "server did not close after the half-close";
  ::close(fd);
  EXPECT_TRUE(drained());
}

TEST_P(Conformance, PeerResetMidWriteLeavesOthersServed) {
  start();
  int victim = client();
  int other = client();
  // Send a lot without reading, so the server is mid-write, then reset.
  std::string big = random_bytes(8 << 20, 9);
  testing::TestThread writer([&](std::stop_token st) {
    testing::UnblockOnStop unblock(st, victim);
    ::send(victim, big.data(), big.size(), MSG_NOSIGNAL);
  });
  std::this_thread::sleep_for(100ms);
  linger lg{1, 0};
  ::setsockopt(victim, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::shutdown(victim, SHUT_RDWR);  // unblocks the writer thread
  writer.join();
  ::close(victim);  // RST
  std::string data = random_bytes(100000, 3);
  EXPECT_TRUE(echo_through(other, data, 4) == data);
  ::close(other);
  EXPECT_TRUE(drained());
}

TEST_P(Conformance, SlowReaderIsBoundedAndOthersAreServed) {
  ServerOptions opts;
  opts.limits.high_water = 1 << 20;
  opts.limits.low_water = 256 << 10;
  start("raw", 32 << 20, opts);
  int slow = client();
  int rcv = 4096;
  ::setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  // Push until the server stops taking data (backpressure) or 64 MiB.
  std::atomic<bool> stop{false};
  std::atomic<size_t> pushed{0};
  testing::TestThread pusher = testing::stoppable_thread([&] {
    std::string chunk(65536, 'x');
    timeval tv{0, 200000};
    ::setsockopt(slow, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    while (!stop && pushed < (64u << 20)) {
      ssize_t n = ::send(slow, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n > 0) pushed += static_cast<size_t>(n);
      else if (errno != EAGAIN && errno != EINTR) break;
    }
  }, [&] { stop = true; });
  // Backpressure engages once the server holds high_water unsent bytes for
  // the slow peer, i.e. after the kernel's buffers toward it are full (the
  // server's send buffer autotunes up to several MiB). On a loaded machine
  // the pusher can take a while to get there, so wait for it (bounded).
  const auto engage_by = std::chrono::steady_clock::now() + 20s;
  while (handler_.high_water_events.load() == 0 &&
         std::chrono::steady_clock::now() < engage_by) {
    std::this_thread::sleep_for(20ms);
  }
  // Meanwhile another client is served normally.
  int other = client();
  std::string data = random_bytes(1 << 20, 11);
  EXPECT_TRUE(echo_through(other, data, 12) == data);
  ::close(other);
  const size_t took = handler_.received.load();
  stop = true;
  pusher.join();
  EXPECT_GE(handler_.high_water_events.load(), 1)
      << "backpressure never engaged; server took " << took << " bytes, client pushed "
      << pushed.load();
  // The server read at most high water + a few reads + the kernel's
  // buffers before it stopped reading: far below 64 MiB.
  EXPECT_LT(took, size_t{24} << 20) << "server kept reading from a peer that never reads";
  EXPECT_LT(pushed.load(), size_t{64} << 20);
  ::close(slow);
  EXPECT_TRUE(drained());
}

TEST_P(Conformance, BadFrameClosesOnlyThatConnection) {
  start("length", 1 << 20);
  int bad = client();
  int good = client();
  const unsigned char header[4] = {0xff, 0xff, 0xff, 0xff};
  ASSERT_EQ(::send(bad, header, 4, MSG_NOSIGNAL), 4);
  EXPECT_TRUE(wait_closed(bad, 5000));
  ::close(bad);
  std::string frame("\x00\x00\x00\x05hello", 9);
  ASSERT_EQ(::send(good, frame.data(), frame.size(), MSG_NOSIGNAL), 9);
  EXPECT_EQ(read_n(good, 9), frame);
  ::close(good);
  EXPECT_EQ(handler_.frame_errors.load(), 1);
  EXPECT_TRUE(drained());
}

TEST_P(Conformance, StopWithOpenConnectionsIsPromptAndLeakFree) {
  const size_t fds_before = count_fds();
  start();
  std::vector<int> clients;
  for (int i = 0; i < 50; ++i) clients.push_back(client());
  // One connection with output the peer never reads.
  std::string big = random_bytes(4 << 20, 2);
  testing::TestThread w([&] { ::send(clients[0], big.data(), 2 << 20, MSG_NOSIGNAL | MSG_DONTWAIT); });
  w.join();
  for (int fd : clients) EXPECT_EQ(::send(fd, "x", 1, MSG_NOSIGNAL), 1);
  std::this_thread::sleep_for(100ms);
  auto t0 = std::chrono::steady_clock::now();
  server_->stop();
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 2s);
  EXPECT_EQ(server_->connection_count(), 0u);
  for (int fd : clients) {
    EXPECT_TRUE(wait_closed(fd, 2000));
    ::close(fd);
  }
  server_.reset();
  EXPECT_EQ(count_fds(), fds_before);
}

TEST_P(Conformance, MultipleLoopsShareTheLoad) {
  ServerOptions opts;
  opts.threads = 3;
  start("raw", 1 << 20, opts);
  testing::ConcurrentResult r = concurrent_echo(server_->port(), 60, 20000, 30000);
  EXPECT_EQ(r.ok, 60u);
  server_->stop();
  EXPECT_EQ(server_->connection_count(), 0u);
}

TEST_P(Conformance, TimerAndCrossThreadPostFire) {
  std::string err;
  auto loop = EventLoop::create(GetParam(), {}, &err);
  ASSERT_TRUE(loop) << err;
  std::atomic<int> ticks{0};
  std::promise<Clock::duration> one_shot;
  std::promise<bool> posted;
  std::promise<bool> from_loop;
  auto t0 = Clock::now();
  loop->run_after(30ms, [&] { one_shot.set_value(Clock::now() - t0); });
  loop->run_every(10ms, [&] { ++ticks; });
  // A failed ASSERT below quits the loop before the join.
  testing::TestThread th = testing::stoppable_thread([&] { loop->run(); }, [&] { loop->quit(); });
  std::this_thread::sleep_for(50ms);  // the loop is now blocked in wait()
  loop->post([&] {
    posted.set_value(true);
    from_loop.set_value(loop->in_loop_thread());
  });
  auto pf = posted.get_future();
  ASSERT_EQ(pf.wait_for(2s), std::future_status::ready) << "post() did not wake the loop";
  EXPECT_TRUE(from_loop.get_future().get());
  auto of = one_shot.get_future();
  ASSERT_EQ(of.wait_for(2s), std::future_status::ready);
  Clock::duration fired = of.get();
  EXPECT_GE(fired, 30ms);
  EXPECT_LT(fired, 500ms);
  std::this_thread::sleep_for(60ms);
  EXPECT_GE(ticks.load(), 5);
  loop->quit();
  th.join();
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Conformance, ::testing::ValuesIn(sluice::testing::all_backends()),
                         sluice::testing::BackendName());

}  // namespace
}  // namespace sluice
