// The world's scheduler: virtual clock, event queue, wait(), and routing
// of back-end calls by channel kind (streams: sim_stream.cc, datagrams:
// sim_datagram.cc).
#include "io/sim_world.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>

#include "io/sim_backend.h"
#include "io/sim_internal.h"
#include "io/sim_peer.h"

namespace sluice::sim {

World::World(uint64_t seed, SimFaults faults)
    : seed_(seed), faults_(faults), rng_(seed) {}

World::~World() {
  for (auto& p : streams_) {
    if (p->world_fd_ >= 0) ::close(p->world_fd_);
  }
}

std::unique_ptr<io::Backend> World::backend() {
  // Two back ends on one world would interleave two loop threads' calls:
  // neither deterministic nor safe (the world is not synchronized).
  if (has_backend_) {
    std::fprintf(stderr, "sim::World: one back end per world\n");
    std::abort();
  }
  has_backend_ = true;
  return std::make_unique<SimBackend>(*this);
}

void World::after(SimClock::duration d, std::function<void()> fn) {
  at(now_ + d, std::move(fn));
}

void World::at(SimClock::time_point when, std::function<void()> fn) {
  if (when < now_) when = now_;
  events_.push(Event{when, next_seq_++, std::move(fn)});
}

SimClock::duration World::delay() {
  return std::chrono::microseconds(rng_.range(0, static_cast<uint64_t>(faults_.max_delay.count())));
}

StreamPeer* World::connect(uint16_t port) {
  streams_.push_back(std::unique_ptr<StreamPeer>(new StreamPeer(*this, streams_.size() + 1)));
  StreamPeer* p = streams_.back().get();
  p->window_ = rng_.range(faults_.min_window, faults_.max_window);
  after(delay(), [this, p, port] { syn_arrives(p, port); });
  if (rng_.chance(faults_.reset)) {
    const auto when = std::chrono::microseconds(rng_.range(
        0, std::chrono::duration_cast<std::chrono::microseconds>(faults_.reset_within).count()));
    after(when, [p] {
      // A reset once the core is done with the stream would only cut the
      // peer's reading short; the fault is meant for live connections.
      if (!p->dead_ && !p->core_gone_) p->die(-ECONNRESET, -ECONNRESET);
    });
  }
  return p;
}

DatagramPeer* World::datagram_peer() {
  const size_t port = kFirstPeerPort + dpeers_.size();
  if (port >= 1024) {
    std::fprintf(stderr, "sim::World: at most %d datagram peers\n", 1024 - kFirstPeerPort);
    std::abort();
  }
  dpeers_.push_back(
      std::unique_ptr<DatagramPeer>(new DatagramPeer(*this, static_cast<uint16_t>(port))));
  return dpeers_.back().get();
}

int World::run_until(SimClock::time_point t) {
  int n = 0;
  while (!events_.empty() && events_.top().at <= t) {
    // top() is const; the event is popped before it runs (it may push).
    Event ev = std::move(const_cast<Event&>(events_.top()));
    events_.pop();
    if (ev.at > now_) now_ = ev.at;
    ++stats_.events;
    ++n;
    ev.fn();
  }
  if (t > now_) now_ = t;
  return n;
}

int World::settle(SimClock::duration limit) {
  return run_until(now_ + limit);
}

SimClock::duration World::stalled_between(SimClock::time_point from,
                                          SimClock::time_point to) const {
  SimClock::duration total{};
  for (const auto& [b, e] : stalls_) {
    const auto lo = std::max(b, from);
    const auto hi = std::min(e, to);
    if (hi > lo) total += hi - lo;
  }
  return total;
}

bool World::take_wakeup() {
  std::lock_guard<std::mutex> lock(mu_);
  const bool w = woken_;
  woken_ = false;
  return w;
}

void World::block() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return woken_; });
  woken_ = false;
}

int World::wait(std::chrono::milliseconds timeout) {
  poll_core_shutdowns();
  int n = run_until(now_);
  const bool woken = take_wakeup();
  if (paused_) {
    // The clock stands still: only real time (a wakeup) moves things on.
    if (n == 0 && !woken && timeout.count() != 0) {
      if (parked_) {
        auto parked = std::move(parked_);
        parked_ = nullptr;
        parked();
      }
      block();
    }
    return n;
  }
  if (faults_.jump > 0 && rng_.chance(faults_.jump)) {
    // The process stalls: the clock leaps, and everything due meanwhile
    // (input included) runs in this same wait() -- before the loop's timers
    // judge absence at the time this wait began.
    ++stats_.jumps;
    const auto leap = std::chrono::microseconds(rng_.range(
        1000, std::chrono::duration_cast<std::chrono::microseconds>(faults_.max_jump).count()));
    stats_.jumped += leap;
    stalls_.emplace_back(now_, now_ + leap);
    return n + run_until(now_ + leap);
  }
  if (n > 0 || woken || timeout.count() == 0) return n;
  if (!events_.empty() &&
      (timeout.count() < 0 || events_.top().at <= now_ + timeout)) {
    return run_until(events_.top().at);
  }
  if (timeout.count() > 0) {
    now_ += timeout;
    return 0;
  }
  // Nothing scheduled and no timer: only another thread can bring work.
  block();
  return 0;
}

void World::wakeup() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

int World::attach(io::Channel& ch) {
  switch (ch.kind()) {
    case io::Channel::Kind::kListener: {
      const uint16_t port = bound_port(ch.fd());
      if (port == 0) return -EINVAL;
      listeners_[port] = Listener{&ch};
      ch.io = std::make_unique<ChanState>();
      return 0;
    }
    case io::Channel::Kind::kStream:
      return attach_stream(ch);
    case io::Channel::Kind::kDatagram:
      return attach_datagram(ch);
  }
  return -EINVAL;
}

void World::update(io::Channel& ch) {
  ChanState* st = static_cast<ChanState*>(ch.io.get());
  if (!st || !st->attached) return;
  if (ch.kind() == io::Channel::Kind::kStream) {
    update_stream(ch, *st->stream);
  } else if (ch.kind() == io::Channel::Kind::kDatagram) {
    send_datagrams(ch);
  }
}

void World::detach(io::Channel& ch) {
  ChanState* st = static_cast<ChanState*>(ch.io.get());
  if (!st || !st->attached) return;
  st->attached = false;
  switch (ch.kind()) {
    case io::Channel::Kind::kListener:
      for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
        if (it->second.ch == &ch) {
          listeners_.erase(it);
          break;
        }
      }
      break;
    case io::Channel::Kind::kStream:
      detach_stream(*st->stream);
      break;
    case io::Channel::Kind::kDatagram:
      detach_datagram(ch);
      break;
  }
  if (ch.kind() != io::Channel::Kind::kListener && rng_.chance(faults_.late_detach)) {
    // After a random delay (operations in flight take a while to end);
    // due at once while the world is paused, so a stop() still completes.
    // The channel stays valid until on_detached (io/backend.h, Ownership).
    const auto later = std::chrono::microseconds(
        rng_.range(0, static_cast<uint64_t>(faults_.max_detach_delay.count()) * 1000));
    at(paused_ ? now_ : now_ + later, [&ch] { ch.on_detached(); });
    return;
  }
  ch.on_detached();
}

ssize_t World::send_now(io::Channel& ch, std::string_view bytes) {
  ChanState* st = static_cast<ChanState*>(ch.io.get());
  if (!st || !st->attached || ch.kind() != io::Channel::Kind::kStream) return 0;
  StreamPeer& p = *st->stream;
  if (p.core_failed_ || p.write_blocked_ || !ch.output().empty()) return 0;
  return p.take_from_core(bytes.data(), bytes.size());
}

uint16_t World::bound_port(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

}  // namespace sluice::sim
