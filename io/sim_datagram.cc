// Simulated datagrams: the core's sockets are registered by port at
// attach(); DatagramPeers have virtual ports. Every datagram, either way,
// is lost, duplicated, corrupted and delayed independently (so the order is not
// kept), as the world's faults say.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "io/sim_internal.h"
#include "io/sim_peer.h"
#include "io/sim_world.h"

namespace sluice::sim {

void DatagramPeer::send_to(uint16_t port, std::string_view data) {
  world_.route_datagram(port_, port, data, 0);
}

// Delivered by port when it arrives: to a core socket bound there (so two
// endpoints of the core, e.g. both ends of an rudp test, can talk), else
// to a DatagramPeer, else lost (nobody bound: an ICMP unreachable).
void World::route_datagram(uint16_t from, uint16_t to, std::string_view data, uint8_t ecn) {
  if (!blackholed_.empty() && (blackholed_.count(from) || blackholed_.count(to))) {
    ++stats_.datagrams_lost;
    return;
  }
  if (rng_.chance(faults_.loss)) {
    ++stats_.datagrams_lost;
    return;
  }
  const int copies = rng_.chance(faults_.duplicate) ? 2 : 1;
  if (copies == 2) ++stats_.datagrams_duplicated;
  for (int i = 0; i < copies; ++i) {
    std::string d(data);
    if (!d.empty() && rng_.chance(faults_.corrupt)) {
      d[rng_.below(d.size())] ^= static_cast<char>(1 + rng_.below(255));
      ++stats_.datagrams_corrupted;
    }
    SimClock::duration wait = faults_.min_delay + delay();
    uint8_t mark = ecn;
    if (!cross_bottleneck(from, to, d.size(), &wait, &mark)) continue;
    if (faults_.path_delay) wait += faults_.path_delay(from, to);
    after(wait, [this, from, to, mark, d = std::move(d)] {
      sockets_.count(to) ? datagram_to_core(from, to, d, mark) : datagram_to_peer(from, to, d);
    });
  }
}

namespace {
constexpr size_t kIpUdpHeaders = 28;
}  // namespace

bool World::cross_bottleneck(uint16_t from, uint16_t to, size_t bytes, SimClock::duration* wait,
                             uint8_t* ecn) {
  const SimFaults::Bottleneck& b = faults_.bottleneck;
  if (b.bps == 0 || (to != b.port && from != b.port)) return true;
  const bool up = to == b.port;
  SimClock::time_point& free = up ? up_free_ : down_free_;
  free = std::max(free, now_);
  const uint64_t backlog = bottleneck_backlog(up);
  const uint64_t size = bytes + kIpUdpHeaders;
  if (backlog + size > b.queue_bytes) {
    ++stats_.bottleneck_drops;
    return false;
  }
  // Step marking (DCTCP's): an ECN-capable datagram that finds more than
  // the threshold queued is marked CE.
  if (b.ce_threshold_bytes > 0 && backlog > b.ce_threshold_bytes &&
      (*ecn == io::kEct0 || *ecn == io::kEct1)) {
    *ecn = io::kCe;
    ++stats_.bottleneck_ce_marks;
  }
  free += std::chrono::nanoseconds(size * 8 * 1'000'000'000 / b.bps);
  if (up) stats_.bottleneck_max_backlog = std::max(stats_.bottleneck_max_backlog, backlog + size);
  *wait += free - now_;
  return true;
}

uint64_t World::bottleneck_backlog(bool uplink) const {
  const SimClock::time_point free = uplink ? up_free_ : down_free_;
  if (free <= now_ || faults_.bottleneck.bps == 0) return 0;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(free - now_).count();
  return static_cast<uint64_t>(static_cast<double>(ns) * faults_.bottleneck.bps / 8e9);
}

int World::attach_datagram(io::Channel& ch) {
  const uint16_t port = bound_port(ch.fd());
  if (port == 0) return -EINVAL;
  if (sockets_.count(port)) return -EADDRINUSE;
  auto s = std::make_unique<Socket>();
  s->ch = &ch;
  s->port = port;
  // Codepoints are delivered to sockets that asked for them (IP_RECVTOS /
  // IPV6_RECVTCLASS, set before attach), as the kernel does.
  int on = 0;
  socklen_t len = sizeof on;
  if (::getsockopt(ch.fd(), IPPROTO_IP, IP_RECVTOS, &on, &len) == 0 && on) s->recv_ecn = true;
  on = 0;
  len = sizeof on;
  if (::getsockopt(ch.fd(), IPPROTO_IPV6, IPV6_RECVTCLASS, &on, &len) == 0 && on) {
    s->recv_ecn = true;
  }
  sockets_[port] = std::move(s);
  ch.io = std::make_unique<ChanState>();
  return 0;
}

void World::detach_datagram(io::Channel& ch) {
  auto it = sockets_.find(bound_port(ch.fd()));
  if (it != sockets_.end() && it->second->ch == &ch) sockets_.erase(it);
}

namespace {
sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}
}  // namespace

void World::datagram_to_core(uint16_t from, uint16_t to, const std::string& data, uint8_t ecn) {
  Socket& s = *sockets_.at(to);
  if (!s.recv_ecn) ecn = 0;
  if (s.queue.empty() && s.ch->want_read()) {
    const sockaddr_in a = loopback(from);
    ++stats_.datagrams_to_core;
    s.ch->on_datagram({reinterpret_cast<const sockaddr*>(&a), sizeof a, data, ecn});
    return;
  }
  if (s.queue.size() >= faults_.datagram_queue) {
    ++stats_.datagrams_overflow;  // the socket's receive buffer is full
    return;
  }
  s.queue.push_back({from, data, ecn});
}

void World::drain_datagrams(uint16_t port) {
  // Looked up again after every callback: the handler may close the socket.
  for (;;) {
    auto it = sockets_.find(port);
    if (it == sockets_.end()) return;
    Socket& s = *it->second;
    s.drain_scheduled = false;
    if (s.queue.empty() || !s.ch->want_read()) return;
    Socket::Queued q = std::move(s.queue.front());
    s.queue.pop_front();
    const sockaddr_in a = loopback(q.from);
    ++stats_.datagrams_to_core;
    s.ch->on_datagram({reinterpret_cast<const sockaddr*>(&a), sizeof a, q.data, q.ecn});
  }
}

void World::send_datagrams(io::Channel& ch) {
  const uint16_t port = bound_port(ch.fd());
  io::DatagramQueue& q = ch.datagrams();
  const size_t n = q.size();
  // The codepoint the socket sets on what it sends (IP_TOS / IPV6_TCLASS,
  // which the owner may change at any time).
  uint8_t ecn = 0;
  if (n > 0) {
    int tos = 0;
    socklen_t len = sizeof tos;
    if (::getsockopt(ch.fd(), IPPROTO_IP, IP_TOS, &tos, &len) == 0) {
      ecn = static_cast<uint8_t>(tos & 3);
    } else {
      tos = 0;
      len = sizeof tos;
      if (::getsockopt(ch.fd(), IPPROTO_IPV6, IPV6_TCLASS, &tos, &len) == 0) {
        ecn = static_cast<uint8_t>(tos & 3);
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const io::DatagramQueue::Item& it = q.item(i);
    uint16_t to = 0;
    if (it.addr.ss_family == AF_INET) {
      to = ntohs(reinterpret_cast<const sockaddr_in*>(&it.addr)->sin_port);
    }
    ++stats_.datagrams_from_core;
    route_datagram(port, to, q.payload(it), ecn);
  }
  if (n > 0) {
    q.pop(n);
    ch.on_datagrams_sent(n);
  }
  // Reading resumed with datagrams queued: deliver them from wait(), not
  // from inside update() (a handler may call it from its own callback).
  auto it = sockets_.find(port);
  if (it != sockets_.end() && it->second->ch == &ch && ch.want_read() &&
      !it->second->queue.empty() && !it->second->drain_scheduled) {
    it->second->drain_scheduled = true;
    after(SimClock::duration::zero(), [this, port] { drain_datagrams(port); });
  }
}

void World::datagram_to_peer(uint16_t from, uint16_t to, const std::string& data) {
  if (to < kFirstPeerPort || static_cast<size_t>(to - kFirstPeerPort) >= dpeers_.size()) {
    ++stats_.datagrams_lost;  // nobody bound there (an ICMP unreachable)
    return;
  }
  DatagramPeer& p = *dpeers_[to - kFirstPeerPort];
  ++p.received_;
  if (p.on_datagram) p.on_datagram(from, data);
}

}  // namespace sluice::sim
