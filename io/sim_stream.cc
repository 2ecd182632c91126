// Simulated streams: a StreamPeer holds both directions of one connection
// (the peer's side and the core's "kernel" side) and the world moves bytes
// between them in order, in segments, after delays.
//
// Invariants:
//  * Each direction keeps order: a segment (or FIN) is due no earlier than
//    the one before it (last_in_ / last_out_).
//  * The core hears on_input / on_eof / on_error only from events run
//    inside wait() (deliver_to_core), never from inside update(): a
//    handler may call update() from its own callback. on_sent runs inside
//    update(), as on the reactors.
//  * ch_ is null once the core detached: events that come later touch
//    only the peer's side.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "io/sim_internal.h"
#include "io/sim_peer.h"
#include "io/sim_world.h"

namespace sluice::sim {

namespace {
// The most one on_input hands over (a reactor's read buffer).
constexpr size_t kReadChunk = 64 * 1024;
}  // namespace

// ---- the peer's calls ----

bool StreamPeer::write(std::string_view bytes) {
  if (shut_ || dead_) return false;
  World& w = world_;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t n = std::min<size_t>(bytes.size() - pos, w.rng_.range(1, w.faults_.max_segment));
    last_in_ = std::max(last_in_, w.now_ + w.delay());
    w.at(last_in_, [this, seg = std::string(bytes.substr(pos, n))] {
      if (dead_) return;  // lost with the connection
      rx_ += seg;
      deliver_to_core();
    });
    pos += n;
  }
  return true;
}

void StreamPeer::shutdown() {
  if (shut_ || dead_) return;
  shut_ = true;
  last_in_ = std::max(last_in_, world_.now_ + world_.delay());
  world_.at(last_in_, [this] {
    if (dead_) return;
    fin_in_ = true;
    deliver_to_core();
  });
}

void StreamPeer::reset() {
  if (dead_) return;
  die(-ECONNRESET, 0);
}

void StreamPeer::set_reading(bool on) {
  reading_ = on;
  if (!on) return;
  // From an event, not inline: the caller may be inside on_data.
  world_.after(SimClock::duration::zero(), [this] {
    if (dead_ || !reading_) return;
    while (reading_ && !dead_ && !unread_.empty()) {
      std::string chunk;
      chunk.swap(unread_);
      if (on_data) on_data(chunk);
    }
    if (reading_ && !dead_ && unread_.empty() && fin_pending_) {
      fin_pending_ = false;
      eof_seen_ = true;
      if (on_eof) on_eof();
    }
    if (write_blocked_) schedule_writable();
  });
}

// ---- the world's side ----

void StreamPeer::die(int err_to_core, int err_to_peer) {
  dead_ = true;
  ++world_.stats_.resets;
  world_.after(world_.delay(), [this, err_to_core] {
    rx_.clear();
    core_error_ = err_to_core;
    deliver_to_core();
  });
  if (err_to_peer != 0) {
    error_ = err_to_peer;
    unread_.clear();
    if (on_reset) on_reset(err_to_peer);
  }
}

size_t StreamPeer::window_left() const {
  const size_t used = in_flight_ + unread_.size();
  return window_ > used ? window_ - used : 0;
}

void StreamPeer::schedule_read() {
  if (read_scheduled_) return;
  read_scheduled_ = true;
  world_.after(SimClock::duration::zero(), [this] {
    read_scheduled_ = false;
    deliver_to_core();
  });
}

void StreamPeer::deliver_to_core() {
  auto alive = [this] { return ch_ != nullptr && !core_gone_ && !core_failed_; };
  if (!alive()) return;
  if (core_error_ != 0) {
    core_failed_ = true;
    ch_->on_error(core_error_);
    return;
  }
  while (alive() && ch_->want_read() && !rx_.empty()) {
    const size_t n = std::min(rx_.size(), kReadChunk);
    // A copy: the handler may make the peer write (rx_ grows) meanwhile.
    // Taking from the front of a long queue moves the rest once per chunk:
    // fine at the sizes tests queue (a few MiB while reading is paused).
    const std::string chunk = rx_.substr(0, n);
    rx_.erase(0, n);
    world_.stats_.bytes_to_core += n;
    ch_->on_input(chunk);
  }
  if (alive() && ch_->want_read() && rx_.empty() && fin_in_ && !eof_delivered_) {
    eof_delivered_ = true;
    ch_->on_eof();
  }
}

ssize_t StreamPeer::take_from_core(const char* p, size_t n) {
  World& w = world_;
  const size_t space = window_left();
  if (space == 0 || n == 0) return 0;
  size_t k = std::min(n, space);
  if (k > 1 && w.rng_.chance(w.faults_.short_send)) {
    k = w.rng_.range(1, k - 1);
    ++w.stats_.short_sends;
  }
  w.stats_.bytes_from_core += k;
  if (dead_) return static_cast<ssize_t>(k);  // into the void: the reset is on its way
  in_flight_ += k;
  last_out_ = std::max(last_out_, w.now_ + w.delay());
  w.at(last_out_, [this, bytes = std::string(p, k)] {
    in_flight_ -= bytes.size();
    arrive_at_peer(bytes);
  });
  return static_cast<ssize_t>(k);
}

void StreamPeer::arrive_at_peer(const std::string& bytes) {
  if (dead_) return;
  if (reading_ && unread_.empty()) {
    if (on_data) on_data(bytes);
  } else {
    unread_ += bytes;
  }
  if (write_blocked_ && window_left() > 0) schedule_writable();
}

void StreamPeer::fin_at_peer() {
  if (dead_) return;
  if (reading_ && unread_.empty()) {
    eof_seen_ = true;
    if (on_eof) on_eof();
  } else {
    fin_pending_ = true;
  }
}

void StreamPeer::core_closed() {
  if (core_shut_) return;
  core_shut_ = true;
  if (dead_) return;
  last_out_ = std::max(last_out_, world_.now_ + world_.delay());
  world_.at(last_out_, [this] { fin_at_peer(); });
}

void StreamPeer::schedule_writable() {
  if (writable_scheduled_) return;
  writable_scheduled_ = true;
  world_.after(world_.delay(), [this] {
    writable_scheduled_ = false;
    write_blocked_ = false;
    if (ch_ != nullptr && !core_gone_ && !core_failed_) write_from_core(*ch_);
  });
}

void StreamPeer::write_from_core(io::Channel& ch) {
  Buffer& out = ch.output();
  while (!out.empty()) {
    if (core_gone_ || core_failed_ || ch_ == nullptr) return;
    const size_t offered = out.readable();
    const ssize_t k = take_from_core(out.peek(), offered);
    if (k <= 0) {  // window full: the peer's reading frees it
      write_blocked_ = true;
      return;
    }
    out.retrieve(static_cast<size_t>(k));
    ch.on_sent(static_cast<size_t>(k));  // may close and detach
    if (static_cast<size_t>(k) < offered) {
      write_blocked_ = true;
      // A short send with room left: retry after a while. Window full:
      // wait for the peer to read (arrive_at_peer / set_reading).
      if (window_left() > 0) schedule_writable();
      return;
    }
  }
  write_blocked_ = false;
  if (ch_ != nullptr) out.release();  // an idle stream holds no output storage
}

// ---- World: streams ----

void World::syn_arrives(StreamPeer* p, uint16_t port) {
  if (p->dead_) return;
  auto it = listeners_.find(port);
  int fds[2] = {-1, -1};
  if (it == listeners_.end() ||
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    const int err = it == listeners_.end() ? ECONNREFUSED : errno;
    p->dead_ = true;
    p->error_ = -ECONNREFUSED;
    if (p->on_reset) p->on_reset(-ECONNREFUSED);
    if (it != listeners_.end()) it->second.ch->on_accept_error(-err);
    return;
  }
  p->core_fd_ = fds[0];
  p->world_fd_ = fds[1];
  // A descriptor number the core closed before attaching it may come back
  // here: that stream is over.
  if (auto old = by_fd_.find(fds[0]); old != by_fd_.end()) {
    StreamPeer* gone = old->second;
    by_fd_.erase(old);
    gone->core_gone_ = true;
    gone->core_closed();
  }
  by_fd_[fds[0]] = p;
  ++stats_.streams;
  it->second.ch->on_accept(fds[0]);
}

void World::poll_core_shutdowns() {
  // The core's shutdown(SHUT_WR) or close() shows as EOF on the world's
  // end; no data ever flows through the pair, so a 0 from recv is exactly
  // that. (A close is also seen at detach; this catches shutdown() while
  // the stream stays open, and descriptors closed before being attached.)
  // In stream order, not descriptor order: what core_closed() draws from
  // the generator must not depend on which numbers the kernel handed out.
  for (auto& owned : streams_) {
    StreamPeer* p = owned.get();
    char c;
    if (!p->core_shut_ && p->world_fd_ >= 0 &&
        ::recv(p->world_fd_, &c, 1, MSG_DONTWAIT | MSG_PEEK) == 0) {
      p->core_closed();
      if (p->ch_ == nullptr) {  // closed without ever being attached
        p->core_gone_ = true;
        by_fd_.erase(p->core_fd_);
        ::close(p->world_fd_);
        p->world_fd_ = -1;
      }
    }
  }
}

int World::attach_stream(io::Channel& ch) {
  auto it = by_fd_.find(ch.fd());
  // Only descriptors this world handed out (not, e.g., a Client's connect).
  if (it == by_fd_.end() || it->second->ch_ != nullptr) return -ENOTSUP;
  StreamPeer* p = it->second;
  auto st = std::make_unique<ChanState>();
  st->stream = p;
  ch.io = std::move(st);
  p->ch_ = &ch;
  if (!p->rx_.empty() || p->fin_in_ || p->core_error_ != 0) p->schedule_read();
  return 0;
}

void World::update_stream(io::Channel& ch, StreamPeer& p) {
  if (p.core_failed_) return;
  if (!p.write_blocked_ && !ch.output().empty()) p.write_from_core(ch);
  if (p.ch_ == nullptr || p.core_failed_) return;
  if (ch.want_read() && (!p.rx_.empty() || (p.fin_in_ && !p.eof_delivered_) || p.core_error_)) {
    p.schedule_read();
  }
}

void World::detach_stream(StreamPeer& p) {
  by_fd_.erase(p.core_fd_);
  p.ch_ = nullptr;
  p.core_gone_ = true;
  // The core closes its descriptor once on_detached returns: whatever it
  // sent is followed by the FIN (no RST model, see the header).
  p.core_closed();
  if (p.world_fd_ >= 0) {
    ::close(p.world_fd_);
    p.world_fd_ = -1;
  }
}

}  // namespace sluice::sim
