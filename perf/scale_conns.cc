#include "perf/scale_conns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace sluice::perf::scale {
namespace {

enum : uint8_t { kIdle, kConnecting, kUp, kClosed };
constexpr size_t kFrame = 21;  // 4-byte length (17), then type, seq, timestamp

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void put_be64(uint8_t* p, uint64_t v) {
  v = htobe64(v);
  std::memcpy(p, &v, 8);
}
uint64_t get_be64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return be64toh(v);
}

}  // namespace

int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

Conns::Conns(ConnsOptions o) : o_(std::move(o)), conns_(o_.conns), rng_(o_.seed) {}

Conns::~Conns() {
  close_all();
  if (ep_ >= 0) ::close(ep_);
}

int Conns::init() {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) return -errno;
  start_ns_ = now_ns();
  return 0;
}

void Conns::watch(int fd) {
  watch_fd_ = fd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = UINT32_MAX;
  ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
}

void Conns::set_target(size_t n) {
  target_ = std::min(n, conns_.size());
  ramp_base_ = next_open_;
  ramp_start_ns_ = now_ns();
  c_.ramp_ns = 0;
  connect_ns_.reset();
}

bool Conns::ramp_done() const { return next_open_ >= target_ && settled_ >= target_; }

void Conns::set_phase(Phase p) {
  if (p == Phase::kHold) {
    hold_start_ns_ = now_ns();
    c_.pings = c_.pongs = c_.false_drops = c_.late_drops = 0;
    rtt_ns_.reset();
    late_ns_.reset();
  }
  phase_ = p;
}

void Conns::close_all() {
  for (Conn& c : conns_) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
    c.state = kClosed;
  }
  c_.open = 0;
}

void Conns::open_due(int64_t now) {
  // Token bucket from the ramp's start: its k-th connect may start at
  // start + k / rate.
  const double elapsed_s = static_cast<double>(now - ramp_start_ns_) / 1e9;
  const size_t allowed =
      std::min(target_, ramp_base_ + static_cast<size_t>(elapsed_s * o_.rate) + 1);
  while (next_open_ < allowed && connecting_ < o_.max_connecting) {
    open_one(next_open_++, now);
  }
}

void Conns::open_one(size_t i, int64_t now) {
  Conn& c = conns_[i];
  ++c_.attempted;
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(o_.port);
  ::inet_pton(AF_INET, o_.host.c_str(), &dst.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail_connect(c, errno);
    return;
  }
  c.fd = fd;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!o_.sources.empty()) {
    // The port is chosen at connect() for the whole 4-tuple, so each
    // source address has the full local port range toward this server.
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr = o_.sources[(o_.source_offset + i) % o_.sources.size()];
    if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) < 0) {
      fail_connect(c, errno);
      return;
    }
  }
  c.started_ns = now;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) < 0 && errno != EINPROGRESS) {
    fail_connect(c, errno);
    return;
  }
  c.state = kConnecting;
  ++connecting_;
  connect_order_.push(static_cast<uint32_t>(i));
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLIN;
  ev.data.u32 = static_cast<uint32_t>(i);
  ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
}

void Conns::fail_connect(Conn& c, int err) {
  if (c.state == kConnecting) --connecting_;
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
  c.state = kClosed;
  ++c_.connect_failed;
  if (c_.errno_first == 0) c_.errno_first = static_cast<uint64_t>(err);
  ++settled_;
  c_.ramp_ns = now_ns() - ramp_start_ns_;
}

void Conns::on_connected(Conn& c, uint32_t idx, int64_t now) {
  --connecting_;
  ++settled_;
  c_.ramp_ns = now - ramp_start_ns_;
  c.state = kUp;
  ++c_.connected;
  ++c_.open;
  connect_ns_.record(static_cast<uint64_t>(now - c.started_ns));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = idx;
  ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  // First PING at a random phase within one interval, so peers spread.
  const int64_t interval = o_.interval_ms * 1000000;
  const int64_t phase = static_cast<int64_t>(splitmix(rng_) % static_cast<uint64_t>(interval));
  c.last_send_ns = now;  // the connect counts as hearing from us
  due_.push({now + phase, idx});
}

void Conns::on_closed(Conn& c, int64_t now) {
  ::close(c.fd);
  c.fd = -1;
  c.state = kClosed;
  --c_.open;
  if (phase_ != Phase::kHold) {
    ++c_.closed_other;
    return;
  }
  const int64_t window = o_.interval_ms * 1000000 * o_.misses;
  if (now - c.last_send_ns < window) {
    ++c_.false_drops;
  } else {
    ++c_.late_drops;
  }
}

void Conns::on_readable(Conn& c, int64_t now) {
  uint8_t buf[4096];
  for (;;) {
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      on_closed(c, now);
      return;
    }
    if (n < 0) return;
    for (ssize_t off = 0; off < n;) {
      const size_t take = std::min<size_t>(kFrame - c.rlen, static_cast<size_t>(n - off));
      std::memcpy(c.rbuf + c.rlen, buf + off, take);
      c.rlen = static_cast<uint8_t>(c.rlen + take);
      off += static_cast<ssize_t>(take);
      if (c.rlen < kFrame) break;
      c.rlen = 0;
      const bool pong = c.rbuf[0] == 0 && c.rbuf[1] == 0 && c.rbuf[2] == 0 && c.rbuf[3] == 17 &&
                        c.rbuf[4] == 0x02;
      if (!pong) {
        ++c_.bad_frames;
        continue;
      }
      if (phase_ == Phase::kHold) {
        const int64_t sent = static_cast<int64_t>(get_be64(c.rbuf + 13));
        // Only PINGs sent in this hold: pings == pongs + the few in flight.
        if (sent >= hold_start_ns_ && sent <= now) {
          ++c_.pongs;
          rtt_ns_.record(static_cast<uint64_t>(now - sent));
        }
      }
    }
    if (static_cast<size_t>(n) < sizeof buf) return;
  }
}

void Conns::send_due(int64_t now) {
  const int64_t interval = o_.interval_ms * 1000000;
  while (!due_.empty() && due_.top().first <= now) {
    const auto [at, idx] = due_.top();
    due_.pop();
    Conn& c = conns_[idx];
    if (c.state != kUp) continue;
    uint8_t f[kFrame] = {0, 0, 0, 17, 0x01};
    put_be64(f + 5, ++c.seq);
    put_be64(f + 13, static_cast<uint64_t>(now));
    const ssize_t n = ::send(c.fd, f, sizeof f, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n != static_cast<ssize_t>(sizeof f)) {
      // 21 bytes never fill a socket buffer unless the peer is gone; the
      // read side reports the close.
      if (n < 0 && errno != EAGAIN) continue;
    }
    if (phase_ == Phase::kHold) {
      ++c_.pings;
      late_ns_.record(static_cast<uint64_t>(now - at));
    }
    c.last_send_ns = now;
    due_.push({at + interval, idx});  // on schedule, whatever this one's lateness
  }
}

void Conns::expire_connects(int64_t now) {
  const int64_t timeout = o_.connect_timeout_ms * 1000000;
  while (!connect_order_.empty()) {
    Conn& c = conns_[connect_order_.front()];
    if (c.state != kConnecting) {
      connect_order_.pop();
      continue;
    }
    if (now - c.started_ns < timeout) break;
    connect_order_.pop();
    fail_connect(c, ETIMEDOUT);
  }
}

bool Conns::step(int max_wait_ms) {
  int64_t now = now_ns();
  if (next_open_ < target_) open_due(now);
  send_due(now);
  expire_connects(now);
  int wait = max_wait_ms;
  if (next_open_ < target_) wait = std::min(wait, 1);
  if (!due_.empty()) {
    const int64_t until = (due_.top().first - now + 999999) / 1000000;
    wait = static_cast<int>(std::clamp<int64_t>(until, 0, wait));
  }
  epoll_event evs[512];
  const int n = ::epoll_wait(ep_, evs, 512, wait);
  now = now_ns();
  bool watched = false;
  for (int k = 0; k < n; ++k) {
    if (evs[k].data.u32 == UINT32_MAX) {
      watched = true;
      continue;
    }
    on_event(evs[k].data.u32, evs[k].events, now);
  }
  return watched;
}

void Conns::on_event(uint32_t idx, uint32_t events, int64_t now) {
  Conn& c = conns_[idx];
  if (c.state == kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fail_connect(c, err);
      return;
    }
    if ((events & (EPOLLOUT | EPOLLIN)) == 0) return;
    on_connected(c, idx, now);
    if ((events & EPOLLIN) == 0) return;
  }
  if (c.state == kUp && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c, now);
}

}  // namespace sluice::perf::scale
