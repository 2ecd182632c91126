// perf/flood's connection floods: `connect` (full handshakes, held open up
// to --conns, from local source addresses round-robin) and `slowloris`
// (the same, each connection then announcing a frame of --frame-bytes and
// trickling one byte of it every --interval-ms, never finishing). One
// epoll loop; a slot the server frees is filled again at the paced rate.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <unordered_map>

#include "perf/flood.h"

namespace sluice::perf::flood {

namespace {

enum class State { kConnecting, kOpen };
struct Conn {
  State state = State::kConnecting;
  double started = 0;
  double next_byte = 0;  // slowloris
};

// Closes with a RST: the lab's next phase should not wait for FIN_WAITs.
void abort_fd(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

}  // namespace

int run_conns(const Options& o, Report* rep) {
  const bool loris = o.mode == "slowloris";
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    const int e = errno;
    rep->error(e, "epoll_create1");
    return -e;
  }
  std::unordered_map<int, Conn> conns;
  std::deque<std::pair<double, int>> connecting;  // FIFO: one timeout for all
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(o.dst);
  to.sin_port = htons(o.port);
  size_t next_src = 0;
  uint64_t open = 0;  // established and not yet closed
  char buf[4096];
  const unsigned char prefix[4] = {static_cast<unsigned char>(o.frame_bytes >> 24),
                                   static_cast<unsigned char>(o.frame_bytes >> 16),
                                   static_cast<unsigned char>(o.frame_bytes >> 8),
                                   static_cast<unsigned char>(o.frame_bytes)};

  auto drop = [&](int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    if (auto it = conns.find(fd); it != conns.end() && it->second.state == State::kOpen) --open;
    conns.erase(fd);
    abort_fd(fd);
  };
  auto open_one = [&](double now) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      rep->error(errno, "socket");
      return;
    }
    if (!o.bind.empty()) {
      int one = 1;
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sockaddr_in from{};
      from.sin_family = AF_INET;
      from.sin_addr.s_addr = htonl(o.bind[next_src++ % o.bind.size()]);
      if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) < 0) {
        rep->error(errno, "bind");
        close(fd);
        return;
      }
    }
    ++rep->packets;
    if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0 && errno != EINPROGRESS) {
      const int e = errno;
      if (e == ECONNREFUSED) ++rep->refused;
      else rep->error(e, "connect");
      close(fd);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    conns[fd] = Conn{State::kConnecting, now, now};
    connecting.emplace_back(now, fd);
  };
  auto established = [&](int fd, Conn& c, double now) {
    ++rep->established;
    ++open;
    c.state = State::kOpen;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    if (loris) {
      const ssize_t n = send(fd, prefix, sizeof prefix, MSG_NOSIGNAL);
      if (n > 0) rep->bytes += static_cast<uint64_t>(n);
      c.next_byte = now + static_cast<double>(o.interval_ms) / 1000;
    }
  };

  const double t0 = now_s();
  const double end = t0 + o.seconds;
  const double timeout = static_cast<double>(o.connect_timeout_ms) / 1000;
  Pacer pacer(o.rate, t0);
  std::vector<epoll_event> evs(256);
  double next_trickle = t0;
  for (;;) {
    double now = now_s();
    if (now >= end) break;
    // New connects: paced, up to --conns open or opening, --count in all.
    uint64_t room = o.conns > conns.size() ? o.conns - conns.size() : 0;
    if (o.count) room = std::min<uint64_t>(room, o.count > rep->packets ? o.count - rep->packets : 0);
    for (uint64_t n = pacer.take(now, std::min<uint64_t>(room, 256)); n > 0; --n) open_one(now);
    // Connects past their deadline.
    while (!connecting.empty() && connecting.front().first + timeout <= now) {
      const int fd = connecting.front().second;
      connecting.pop_front();
      auto it = conns.find(fd);
      if (it != conns.end() && it->second.state == State::kConnecting &&
          it->second.started + timeout <= now) {
        ++rep->timeouts;
        drop(fd);
      }
    }
    // Slowloris: one byte per open connection per interval.
    if (loris && now >= next_trickle) {
      for (auto& [fd, c] : conns) {
        if (c.state != State::kOpen || now < c.next_byte) continue;
        if (send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) ++rep->bytes;
        c.next_byte = now + static_cast<double>(o.interval_ms) / 1000;
      }
      next_trickle = now + 0.005;
    }
    rep->max_open = std::max(rep->max_open, open);
    const int wait_ms = room > 0 ? 1 : 5;
    const int k = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), wait_ms);
    now = now_s();
    for (int i = 0; i < k; ++i) {
      const int fd = evs[i].data.fd;
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = it->second;
      if (c.state == State::kConnecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0) {
          established(fd, c, now);
          continue;
        }
        if (err == ECONNREFUSED) ++rep->refused;
        else if (err == ECONNRESET) ++rep->reset;
        else if (err == ETIMEDOUT) ++rep->timeouts;
        else rep->error(err, "connect");
        drop(fd);
        continue;
      }
      // Open: the server may echo (connect mode never sends) or close.
      const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) continue;
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n == 0) ++rep->closed_by_server;
      else if (errno == ECONNRESET) ++rep->reset;
      else rep->error(errno, "recv");
      drop(fd);
    }
    // Connected sockets leave `connecting` lazily (state check above).
    while (!connecting.empty()) {
      auto it = conns.find(connecting.front().second);
      if (it != conns.end() && it->second.state == State::kConnecting) break;
      connecting.pop_front();
    }
  }
  rep->elapsed_s = now_s() - t0;
  rep->open_at_end = open;
  for (const auto& [fd, c] : conns) abort_fd(fd);
  close(ep);
  return 0;
}

}  // namespace sluice::perf::flood
