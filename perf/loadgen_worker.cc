// loadgen's per-thread Worker: connecting (and the TLS handshakes), the
// epoll loop and the drain.
// The TCP and UDP message paths are in loadgen_tcp.cc / loadgen_udp.cc.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "perf/loadgen_internal.h"

namespace sluice::perf::loadgen {

std::atomic<int> g_ready{0};
std::atomic<bool> g_go{false};
std::atomic<uint64_t> g_t0{0}, g_warm_end{0}, g_end{0};

Worker::Worker(const Options& o, const Wire& w, const sockaddr_storage& addr, socklen_t addrlen,
       std::vector<uint32_t> ids)
    : o_(o), w_(w), addr_(addr), addrlen_(addrlen), udp_(o.proto == "udp"), hist_(2) {
  conns_.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    conns_[i].id = ids[i];
    conns_[i].slots.resize(o.pipeline);
  }
  rx_.resize(std::max<size_t>(256 * 1024, w.wire_len + 64));
  if (o.tls) {
    std::string err;  // the same flags made o.tls already: this cannot fail but for memory
    tls_ctx_ = tls_context(o.tls_flags, &err);
    if (!tls_ctx_) std::fprintf(stderr, "loadgen: TLS context: %s\n", err.c_str());
  }
}

Worker::~Worker() { tls_context_free(tls_ctx_); }

void Worker::run() {
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) {
    t_.errors += conns_.size();
    t_.connect_errors += conns_.size();
  } else {
    connect_all();
  }
  g_ready.fetch_add(1);
  while (!g_go.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(200));
  warm_end_ = g_warm_end.load();
  end_ = g_end.load();
  if (ep_ >= 0) loop();
  for (Conn& c : conns_) close_conn(c);
  if (ep_ >= 0) ::close(ep_);
}

void Worker::connect_all() {
  const uint64_t deadline = now_ns() + static_cast<uint64_t>(o_.connect_timeout_s * 1e9);
  size_t pending = 0;
  for (Conn& c : conns_) {
    int type = (udp_ ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
    c.fd = ::socket(addr_.ss_family, type, 0);
    if (c.fd < 0) {
      ++t_.errors;
      ++t_.connect_errors;
      continue;
    }
    if (!udp_) {
      int one = 1;
      ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int r = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), addrlen_);
    if (r < 0 && errno != EINPROGRESS) {
      ++t_.errors;
      ++t_.connect_errors;
      close_conn(c);
      continue;
    }
    // TLS: even a connect that completed at once waits for writability,
    // where the handshake starts.
    const bool up = r == 0 && o_.tls == nullptr;
    epoll_event ev{};
    ev.data.ptr = &c;
    ev.events = up ? EPOLLIN : EPOLLOUT;
    if (::epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) < 0) {
      ++t_.errors;
      ++t_.connect_errors;
      close_conn(c);
      continue;
    }
    if (up) {
      c.alive = true;
    } else {
      c.connecting = true;
      ++pending;
    }
  }
  std::vector<epoll_event> evs(256);
  while (pending > 0) {
    uint64_t now = now_ns();
    if (now >= deadline) break;
    int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()),
                         static_cast<int>(std::min<uint64_t>((deadline - now) / 1000000 + 1, 100)));
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
      if (!c.connecting) continue;
      if (c.ssl) {  // TLS handshake under way
        if (!tls_step(c)) --pending;
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err == 0 && o_.tls) {
        c.ssl = tls_ctx_ ? tls_new(tls_ctx_, c.fd, o_.tls_name) : nullptr;
        if (c.ssl) {
          if (!tls_step(c)) --pending;
          continue;
        }
        err = ENOMEM;
      }
      c.connecting = false;
      --pending;
      if (err != 0) {
        ++t_.errors;
        ++t_.connect_errors;
        close_conn(c);
        continue;
      }
      epoll_event ev{};
      ev.data.ptr = &c;
      ev.events = EPOLLIN;
      ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
      c.alive = true;
    }
  }
  for (Conn& c : conns_) {
    if (c.connecting) {  // timed out
      c.connecting = false;
      ++t_.errors;
      ++t_.connect_errors;
      close_conn(c);
    }
  }
}

bool Worker::tls_step(Conn& c) {
  std::string why;
  const TlsStep step = tls_handshake(c.ssl, &why);
  if (step == TlsStep::kFailed) {
    if (tls_failure_.empty()) tls_failure_ = why;
    c.connecting = false;
    ++t_.errors;
    ++t_.connect_errors;
    close_conn(c);
    return false;
  }
  epoll_event ev{};
  ev.data.ptr = &c;
  ev.events = step == TlsStep::kWantWrite ? EPOLLOUT : EPOLLIN;
  ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  if (step != TlsStep::kDone) return true;
  c.connecting = false;
  c.alive = true;
  return false;
}

size_t Worker::total_inflight() const {
  size_t n = 0;
  for (const Conn& c : conns_) {
    if (c.alive) n += c.inflight;
  }
  return n;
}

void Worker::loop() {
  tx_.resize(w_.wire_len + 64);
  uint64_t now = now_ns();
  for (Conn& c : conns_) {
    if (!c.alive || c.id >= o_.conns) continue;  // idle connections never send
    c.last_progress = now;
    if (udp_) {
      for (size_t i = 0; i < o_.pipeline && c.alive; ++i) send_udp(c, now);
    } else {
      for (size_t i = 0; i < o_.pipeline; ++i) queue_tcp(c, now);
      flush(c);
    }
  }
  std::vector<epoll_event> evs(1024);
  const uint64_t drain_deadline =
      end_ + static_cast<uint64_t>((udp_ ? std::max(o_.drain_s, o_.udp_timeout_ms / 1000 + 0.1) : o_.drain_s) * 1e9);
  uint64_t next_expire = now + 5000000;
  for (;;) {
    now = now_ns();
    if (now >= end_) {
      if (total_inflight() == 0 || now >= drain_deadline) break;
    }
    uint64_t until = now < end_ ? end_ - now : drain_deadline - now;
    int timeout_ms = static_cast<int>(std::min<uint64_t>(until / 1000000 + 1, udp_ ? 5 : 50));
    int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), timeout_ms);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
      if (!c.alive) continue;
      uint32_t e = evs[i].events;
      if (udp_) {
        if (e & (EPOLLIN | EPOLLERR)) on_udp_readable(c);
        continue;
      }
      if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_tcp_readable(c);
      if (c.alive && (e & EPOLLOUT)) flush(c);
    }
    if (udp_) {
      now = now_ns();
      if (now >= next_expire) {
        expire_udp(now, sending(now));
        next_expire = now + 5000000;
      }
    }
  }
  // Whatever is still outstanding did not come back in time.
  for (Conn& c : conns_) {
    if (!c.alive || c.inflight == 0) continue;
    if (udp_) {
      t_.lost += c.inflight;
    } else {
      t_.stalled += c.inflight;
      ++t_.errors;  // one per stalled connection
    }
  }
}

}  // namespace sluice::perf::loadgen
