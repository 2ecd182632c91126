// The io_uring back end's datagram side, driven through the Backend
// interface directly: which receive path each ring set-up takes and its
// counters, the datagram buffer ring running out (ENOBUFS), truncation,
// sendmsg ops parked in the kernel at detach, retries after EAGAIN, and
// refused sends. (Echo, bursts, backpressure, detach and ICMP errors are
// the shared BackendScenarios.Udp*, instantiated in uring_backend_test.cc.)
#include "io/uring.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/backend_harness.h"
#include "tests/backend_harness_channels.h"
#include "tests/backend_harness_net.h"
#include "tests/test_thread.h"
#include "tests/uring_test_util.h"

namespace sluice::io {
namespace {

using namespace sluice::testing;
using namespace sluice::io::uring_test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_F(UringBackendTest, UdpAttachChecksSocketType) {
  auto be = uring();
  ASSERT_NE(be, nullptr);
  std::cout << "uring info: " << be->info().describe() << "\n";
  ASSERT_TRUE(be->info().datagrams);
  int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(tcp, 0);
  {
    TestDatagram ch(*be, tcp);
    EXPECT_EQ(be->attach(ch), -EINVAL);
    EXPECT_TRUE(ch.io == nullptr);
  }
  ::close(tcp);
  int fd = udp_local(nullptr);
  ASSERT_GE(fd, 0);
  TestDatagram ch(*be, fd);
  EXPECT_EQ(be->attach(ch), 0);
  EXPECT_EQ(be->attach(ch), -EEXIST);
  ch.do_detach();
  EXPECT_TRUE(pump(*be, [&] { return ch.detached == 1; }));
  EXPECT_EQ(ch.late, 0);
  ::close(fd);
}

// Which receive path each set-up takes, and the counters of an echo on
// it (the echo itself is checked by BackendScenarios.UdpEcho*).
TEST_F(UringBackendTest, UdpReceiveModesAndCounters) {
  struct Mode {
    const char* name;
    UringTuning tuning;
    bool multishot;
  };
  UringTuning single;
  single.disable_multishot_recvmsg = true;
  UringTuning tier2;
  tier2.first_setup_tier = 2;
  for (const Mode& mode : {Mode{"multishot", {}, true}, Mode{"single-shot", single, false},
                           Mode{"tier2", tier2, false}, Mode{"tier4", oldest_tier(), false}}) {
    SCOPED_TRACE(mode.name);
    auto s = udp_server(mode.tuning);
    ASSERT_TRUE(s->ok());
    const UringBackend& be = ur(*s->be);
    std::cout << mode.name << ": " << be.info().describe() << "\n";
    EXPECT_EQ(be.info().multishot_recvmsg, mode.multishot);
    const std::vector<size_t> sizes = {1, 1400, 65000};
    std::vector<uint16_t> client_ports(3);
    std::atomic<int> bad{-1};
    TestThread clients([&] { bad = udp_round_robin_echo(s->port, sizes, &client_ports, pattern); });
    EXPECT_TRUE(s->run_until([&] { return bad.load() >= 0; }, 60s));
    clients.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(be.stats().dgram_received, 9u);
    EXPECT_EQ(be.stats().dgram_sent, 9u);
    EXPECT_EQ(be.stats().dgram_dropped, 0u);
    EXPECT_EQ(be.stats().dgram_truncated, 0u);
  }
}

TEST_F(UringBackendTest, UdpRingExhaustionTakesEnobufsPath) {
  UringTuning t;
  t.dgram_buf_count = 2;  // a tiny datagram buffer group
  t.dgram_buf_size = 4096;
  auto s = udp_server(t, 4 << 20);
  ASSERT_TRUE(s->ok());
  const UringBackend& be = ur(*s->be);
  if (!be.info().multishot_recvmsg) {
    GTEST_SKIP() << "no multishot recvmsg here: " << be.info().describe();
  }
  EXPECT_EQ(be.info().dgram_buf_count, 2u);
  EXPECT_EQ(be.info().dgram_payload_cap, 4096u - 192u);
  s->ch->echo = false;
  int fd = udp_local(nullptr, 4 << 20);
  ASSERT_GE(fd, 0);
  constexpr uint32_t kCount = 300;
  // Queued in the server's socket before its recvmsg is even submitted:
  // the first shot drains the two buffers and ends with -ENOBUFS.
  for (uint32_t i = 0; i < kCount; ++i) ASSERT_TRUE(send_to(fd, s->port, numbered(i, 100 + i)));
  EXPECT_TRUE(s->run_until([&] { return s->ch->count == kCount; }));
  ASSERT_EQ(s->ch->got.size(), kCount);
  for (uint32_t i = 0; i < kCount; ++i) {
    if (s->ch->got[i].data != numbered(i, 100 + i)) {
      ADD_FAILURE() << "datagram " << i << " lost, reordered or corrupt";
      break;
    }
  }
  EXPECT_GT(be.stats().dgram_enobufs, 0u);
  std::cout << "enobufs=" << be.stats().dgram_enobufs
            << " recv_arms=" << be.stats().dgram_recv_arms << "\n";
  // Still receiving normally afterwards, stream ring untouched.
  s->ch->echo = true;
  set_timeouts(fd, 10s);
  std::atomic<bool> done{false};
  std::string got;
  TestThread client([&](std::stop_token st) {
    UnblockOnStop unblock(st, fd);
    send_to(fd, s->port, "after");
    recv_dgram(fd, &got);
    done = true;
  });
  EXPECT_TRUE(s->run_until([&] { return done.load(); }));
  client.join();
  EXPECT_EQ(got, "after");
  ::close(fd);
}

TEST_F(UringBackendTest, UdpTruncatedDatagramsAreDropped) {
  for (bool single : {false, true}) {
    SCOPED_TRACE(single ? "single-shot" : "multishot");
    UringTuning t;
    t.dgram_buf_size = 1024;  // 832 bytes of payload
    t.disable_multishot_recvmsg = single;
    auto s = udp_server(t);
    ASSERT_TRUE(s->ok());
    const UringBackend& be = ur(*s->be);
    const unsigned cap = be.info().dgram_payload_cap;
    EXPECT_EQ(cap, 1024u - 192u);
    s->ch->echo = false;
    int fd = udp_local(nullptr);
    ASSERT_GE(fd, 0);
    const std::vector<size_t> sizes = {800, 2000, cap, cap + 1, 0, 3};
    for (size_t i = 0; i < sizes.size(); ++i) {
      ASSERT_TRUE(send_to(fd, s->port, pattern(sizes[i], i)));
    }
    EXPECT_TRUE(s->run_until([&] { return s->ch->count == 4; }));
    s->run_for(50ms);
    ASSERT_EQ(s->ch->got.size(), 4u);
    EXPECT_TRUE(s->ch->got[0].data == pattern(800, 0));
    EXPECT_TRUE(s->ch->got[1].data == pattern(cap, 2));
    EXPECT_TRUE(s->ch->got[2].data.empty());  // an empty datagram is one
    EXPECT_TRUE(s->ch->got[3].data == pattern(3, 5));
    EXPECT_EQ(be.stats().dgram_truncated, 2u);
    ::close(fd);
  }
}

TEST_F(UringBackendTest, UdpDetachWithOpsInFlight) {
  // (Detaching while paused or from inside on_datagram is
  // BackendScenarios.UdpDetachWhilePausedOrFromInsideOnDatagram.)
  auto be = uring();
  ASSERT_NE(be, nullptr);
  // 1) sendmsg ops parked in the kernel: an AF_UNIX datagram pair whose
  //    peer never reads (its queue fills after a few datagrams), sent to
  //    the connected peer (no address); and the recvmsg in flight.
  {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    TestDatagram ch(*be, sv[0]);
    ch.check_addr = false;
    ch.echo = false;
    ASSERT_EQ(be->attach(ch), 0);
    for (int i = 0; i < 200; ++i) ch.datagrams().push(no_addr(), 0, pattern(512, i));
    be->update(ch);
    pump_for(*be, 100ms);
    const UringStats& st = be->stats();
    std::cout << "unix pair: sends=" << st.dgram_sends << " sent=" << st.dgram_sent
              << " retries=" << st.dgram_send_retries << "\n";
    EXPECT_GT(st.dgram_sent, 0u);
    EXPECT_LT(st.dgram_sent, 200u) << "the peer's queue never filled";
    EXPECT_GE(st.dgram_sends, st.dgram_sent + 1) << "no send in flight";
    EXPECT_TRUE(ch.datagrams().empty()) << "queue taken by the back end";
    ch.do_detach();
    be->detach(ch);             // idempotent
    EXPECT_EQ(ch.detached, 0);  // on_detached always comes from wait()
    EXPECT_TRUE(pump(*be, [&] { return ch.detached == 1; }));
    // The peer reads now: nothing more is sent, no callbacks.
    const uint64_t sent = st.dgram_sent;
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
  // 2) Attach and detach before the first wait(): nothing was submitted.
  {
    int fd = udp_local(nullptr);
    ASSERT_GE(fd, 0);
    auto fresh = make_uring_backend_tuned({}, {});
    ASSERT_NE(fresh, nullptr);
    TestDatagram ch(*fresh, fd);
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
  auto be = uring(t);
  ASSERT_NE(be, nullptr);
  const UringStats& st = be->stats();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
  TestDatagram ch(*be, sv[0]);
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
  TestThread reader([&](std::stop_token st) {
    UnblockOnStop unblock(st, sv[1]);
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

// Refused sends and ICMP reports are dropped and counted (that they are not
// fatal is BackendScenarios.UdpRefusedSendsAndIcmpErrorsAreNotFatal).
TEST_F(UringBackendTest, UdpRefusedSendsAreCounted) {
  uint16_t peer_port = 0;
  int peer = udp_local(&peer_port);
  ASSERT_GE(peer, 0);
  ::close(peer);  // nothing listens on peer_port now
  const sockaddr_in pa = local_addr(peer_port);
  DatagramServer s(uring(), 0, peer_port);
  ASSERT_TRUE(s.ok());
  s.ch->echo = false;
  s.ch->datagrams().push(reinterpret_cast<const sockaddr*>(&pa), sizeof pa,
                         std::string(70000, 'x'));
  for (int round = 0; round < 5; ++round) {
    s.ch->datagrams().push(reinterpret_cast<const sockaddr*>(&pa), sizeof pa, "ping");
    s.be->update(*s.ch);
    EXPECT_TRUE(s.ch->datagrams().empty()) << "taken by the back end";
    s.run_for(50ms);
  }
  const UringStats& st = ur(*s.be).stats();
  std::cout << "refused: sent=" << st.dgram_sent << " dropped=" << st.dgram_dropped
            << " recv_errors=" << st.dgram_recv_errors << "\n";
  EXPECT_GE(st.dgram_dropped, 1u);  // at least the EMSGSIZE one
  EXPECT_GT(st.dgram_recv_errors + st.dgram_dropped, 1u) << "no ICMP report was seen";
  EXPECT_TRUE(s.ch->errors.empty());
}

TEST_F(UringBackendTest, UdpAndStreamsShareOneBackend) {
  // A datagram burst on the tiny datagram ring cannot starve streams of
  // their (separate) buffer ring.
  UringTuning t;
  t.dgram_buf_count = 2;
  t.dgram_buf_size = 2048;
  StreamServer s(uring(t));
  ASSERT_TRUE(s.ok());
  uint16_t uport = 0;
  int ufd = udp_local(&uport, 4 << 20);
  ASSERT_GE(ufd, 0);
  TestDatagram u(*s.be, ufd);
  u.record = false;
  ASSERT_EQ(s.be->attach(u), 0);
  std::atomic<uint32_t> back{0};
  std::atomic<bool> done{false};
  TestThread udp_client([&](std::stop_token st) {
    int fd = udp_local(nullptr, 4 << 20);
    {
      UnblockOnStop unblock(st, fd);
      set_timeouts(fd, 3s);
      for (uint32_t i = 0; i < 500; ++i) send_to(fd, uport, numbered(i, 200));
      std::string d;
      while (back.load() < 500 && recv_dgram(fd, &d)) ++back;
    }
    ::close(fd);
    done = true;
  });
  const std::string data = pattern(2 << 20, 42);
  const std::string got = s.echo_once(data);
  EXPECT_TRUE(s.run_until([&] { return done.load(); }, 60s));
  udp_client.join();
  EXPECT_TRUE(got == data);
  EXPECT_EQ(back.load(), 500u);
  u.do_detach();
  EXPECT_TRUE(s.run_until([&] { return u.detached == 1; }));
  ::close(ufd);
}

}  // namespace
}  // namespace sluice::io
