// The UDP scenarios of tests/backend_scenarios.h: echo, a burst, backpressure,
// detach, and ICMP errors on a connected socket.
#include "tests/backend_scenarios.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/backend_harness.h"
#include "tests/backend_harness_channels.h"
#include "tests/backend_harness_net.h"
#include "tests/test_thread.h"

namespace sluice::testing {
namespace {

using namespace std::chrono_literals;

// ------------------------------------------------------------ UDP

TEST_P(BackendScenarios, UdpEchoSizesFromSeveralClients) {
  DatagramServer s(make());
  ASSERT_TRUE(s.ok());
  constexpr int kClients = 3;
  const std::vector<size_t> sizes = {1, 1400, 65000};
  std::vector<uint16_t> client_ports(kClients);
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  TestThread clients([&] {
    bad = udp_round_robin_echo(s.port, sizes, &client_ports, pattern);
    done = true;
  });
  EXPECT_TRUE(s.run_until([&] { return done.load(); }, 120s));
  clients.join();
  EXPECT_EQ(bad.load(), 0);
  // The server saw each datagram once, with its sender's address, in order.
  ASSERT_EQ(s.ch->got.size(), sizes.size() * kClients);
  size_t j = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    for (int i = 0; i < kClients; ++i, ++j) {
      EXPECT_EQ(s.ch->got[j].port, client_ports[i]) << "datagram " << j;
      EXPECT_TRUE(s.ch->got[j].data == pattern(sizes[k], 100 * i + k)) << "datagram " << j;
    }
  }
}

TEST_P(BackendScenarios, UdpBurstOfAThousandAllComeBack) {
  constexpr int kBuf = 4 << 20;
  constexpr uint32_t kCount = 1000;
  DatagramServer s(make(), kBuf);
  ASSERT_TRUE(s.ok());
  s.ch->record = false;
  int fd = udp_local(nullptr, kBuf);
  ASSERT_GE(fd, 0);
  int eff = 0;
  socklen_t len = sizeof eff;
  ::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &eff, &len);
  std::atomic<uint32_t> back{0};
  std::atomic<int> bad{0};
  std::atomic<bool> done{false};
  TestThread client([&] {
    for (uint32_t i = 0; i < kCount; ++i) {
      if (!send_to(fd, s.port, numbered(i, 16 + (i * 37) % 1400))) ++bad;
    }
    // Collect until all are back or 3 s of silence.
    set_timeouts(fd, 3s);
    std::vector<bool> seen(kCount, false);
    std::string d;
    uint16_t from = 0;
    while (back.load() < kCount && recv_dgram(fd, &d, &from)) {
      const uint32_t seq = seq_of(d);
      if (seq >= kCount || seen[seq] || d != numbered(seq, 16 + (seq * 37) % 1400) ||
          from != s.port) {
        ++bad;
        continue;
      }
      seen[seq] = true;
      ++back;
    }
    done = true;
  });
  EXPECT_TRUE(s.run_until([&] { return done.load(); }, 120s));
  client.join();
  ::close(fd);
  std::printf("%s burst: %u of %u datagrams came back (SO_RCVBUF %d)\n",
              GetParam().name.c_str(), back.load(), kCount, eff);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(s.ch->count, kCount);
  EXPECT_EQ(back.load(), kCount);
}

TEST_P(BackendScenarios, UdpBackpressureStopsReceiving) {
  DatagramServer s(make(), 1 << 20);
  ASSERT_TRUE(s.ok());
  s.ch->echo = false;
  s.ch->pause_at = 1;
  int fd = udp_local(nullptr);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_to(fd, s.port, numbered(0, 100)));
  ASSERT_TRUE(s.run_until([&] { return s.ch->count == 1; }, 10s));
  EXPECT_FALSE(s.ch->want_read());
  s.run_for(50ms);  // a cancel (io_uring) takes effect
  for (uint32_t i = 1; i <= 20; ++i) ASSERT_TRUE(send_to(fd, s.port, numbered(i, 100)));
  s.run_for(300ms);
  EXPECT_EQ(s.ch->count, 1u) << "on_datagram while want_read is false";
  // Reading stopped before the next receive: (nearly) all of them wait in
  // the kernel's queue, not in the back end.
  const long queued = kernel_rx_queue(s.port);
  if (queued >= 0) {
    EXPECT_GE(queued, 19 * 100) << "receiving did not stop";
  }
  // Resume: all arrive, in order.
  s.ch->set_want_read(true);
  s.be->update(*s.ch);
  EXPECT_TRUE(s.run_until([&] { return s.ch->count == 21; }, 10s));
  ASSERT_EQ(s.ch->got.size(), 21u);
  for (uint32_t i = 0; i < 21; ++i) EXPECT_EQ(seq_of(s.ch->got[i].data), i);

  // A handler turning want_read off mid-batch: the rest is held, in order,
  // and nothing is delivered until it is on again (toggling while off
  // changes nothing).
  s.ch->got.clear();
  s.ch->count = 0;
  s.ch->pause_at = 500;
  constexpr uint32_t kMany = 1500;
  for (uint32_t i = 0; i < kMany; ++i) ASSERT_TRUE(send_to(fd, s.port, numbered(i, 8)));
  ASSERT_TRUE(s.run_until([&] { return s.ch->count == 500; }, 10s));
  s.run_for(200ms);
  EXPECT_EQ(s.ch->count, 500u);
  EXPECT_FALSE(s.ch->want_read());
  for (int i = 0; i < 6; ++i) {
    s.ch->set_want_read(false);
    s.be->update(*s.ch);
    s.run_for(5ms);
  }
  EXPECT_EQ(s.ch->count, 500u);
  s.ch->pause_at = 0;
  s.ch->set_want_read(true);
  s.be->update(*s.ch);
  EXPECT_TRUE(s.run_until([&] { return s.ch->count == kMany; }, 20s));
  ASSERT_EQ(s.ch->got.size(), kMany);
  for (uint32_t i = 0; i < kMany; ++i) {
    if (seq_of(s.ch->got[i].data) != i) {
      ADD_FAILURE() << "datagram " << i << " out of order";
      break;
    }
  }
  ::close(fd);
}

TEST_P(BackendScenarios, UdpDetachWhilePausedOrFromInsideOnDatagram) {
  auto be = make();
  ASSERT_NE(be, nullptr);
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE(variant == 0 ? "paused with datagrams held" : "inside on_datagram");
    uint16_t port = 0;
    int fd = udp_local(&port, 1 << 20);
    ASSERT_GE(fd, 0);
    TestDatagram ch(*be, fd);
    ch.echo = false;
    if (variant == 0) ch.pause_at = 3;
    if (variant == 1) ch.detach_at = 3;
    ASSERT_EQ(be->attach(ch), 0);
    int c = udp_local(nullptr);
    ASSERT_GE(c, 0);
    for (uint32_t i = 0; i < 50; ++i) send_to(c, port, numbered(i, 64));
    EXPECT_TRUE(pump(*be, [&] { return ch.count >= 3; }, 10s));
    EXPECT_EQ(ch.count, 3u);
    if (variant == 0) ch.do_detach();
    be->detach(ch);  // idempotent
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
}

TEST_P(BackendScenarios, UdpRefusedSendsAndIcmpErrorsAreNotFatal) {
  // A connected UDP socket gets ICMP port-unreachable reports as
  // ECONNREFUSED (from a receive or the next send); neither is fatal.
  uint16_t peer_port = 0;
  int peer = udp_local(&peer_port);
  ASSERT_GE(peer, 0);
  ::close(peer);  // nothing listens on peer_port now
  const sockaddr_in pa = local_addr(peer_port);
  {
    // Control: this host does report ICMP errors to a connected socket
    // (else the test would not exercise that path).
    int ctl = udp_local(nullptr);
    ASSERT_GE(ctl, 0);
    ASSERT_EQ(::connect(ctl, reinterpret_cast<const sockaddr*>(&pa), sizeof pa), 0);
    set_timeouts(ctl, 2s);
    ::send(ctl, "x", 1, MSG_NOSIGNAL);
    char c;
    const ssize_t r = ::recv(ctl, &c, 1, 0);
    const int err = errno;
    EXPECT_TRUE(r < 0 && err == ECONNREFUSED) << r << " " << err;
    ::close(ctl);
  }
  DatagramServer s(make(), 0, peer_port);
  ASSERT_TRUE(s.ok());
  s.ch->echo = false;
  // An oversized datagram (EMSGSIZE) and sends into the void, spread over
  // a few rounds so the ICMP reports come back in between.
  s.ch->datagrams().push(reinterpret_cast<const sockaddr*>(&pa), sizeof pa,
                         std::string(70000, 'x'));
  for (int round = 0; round < 5; ++round) {
    s.ch->datagrams().push(reinterpret_cast<const sockaddr*>(&pa), sizeof pa, "ping");
    s.be->update(*s.ch);
    s.run_for(50ms);
  }
  EXPECT_TRUE(s.ch->errors.empty());
  // Now something listens on the peer port: traffic flows both ways.
  peer = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(peer, 0);
  int on = 1;
  ::setsockopt(peer, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  ASSERT_EQ(::bind(peer, reinterpret_cast<const sockaddr*>(&pa), sizeof pa), 0);
  set_timeouts(peer, 10s);
  s.ch->datagrams().push(reinterpret_cast<const sockaddr*>(&pa), sizeof pa, "hello");
  s.be->update(*s.ch);
  std::atomic<bool> done{false};
  std::string got;
  TestThread t([&](std::stop_token st) {
    UnblockOnStop unblock(st, peer);
    recv_dgram(peer, &got);
    send_to(peer, s.port, "back");
    done = true;
  });
  EXPECT_TRUE(s.run_until([&] { return done.load() && s.ch->count == 1; }, 20s));
  t.request_stop();
  t.join();
  EXPECT_EQ(got, "hello");
  ASSERT_EQ(s.ch->got.size(), 1u);
  EXPECT_EQ(s.ch->got[0].data, "back");
  EXPECT_EQ(s.ch->got[0].port, peer_port);
  ::close(peer);
}

}  // namespace
}  // namespace sluice::testing
