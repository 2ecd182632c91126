#include "core/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/event_loop.h"
#include "core/loop_stats.h"
#include "core/net.h"
#include "core/tls_state.h"

namespace sluice {

const char* to_string(CloseReason r) {
  switch (r) {
    case CloseReason::kPeerClosed: return "closed by peer";
    case CloseReason::kPeerReset: return "connection error";
    case CloseReason::kLocal: return "closed locally";
    case CloseReason::kFrameError: return "frame error";
    case CloseReason::kServerStop: return "server stopping";
    case CloseReason::kRefused: return "refused";
    case CloseReason::kTooSlow: return "too slow (output over the cap)";
    case CloseReason::kIdle: return "idle timeout";
  }
  return "?";
}

void Handler::on_peer_shutdown(Connection& conn) { conn.close(); }

namespace {

// The input view a connection on this thread is handling (on_input runs
// for one connection at a time per loop thread), and the part of it its
// handler sent back with send_raw() and that is not copied yet: the
// zero-copy echo. The span is sent straight from the view when on_input
// returns (Backend::send_now), and only what the kernel did not take is
// copied into output(). Thread-local rather than per connection: it costs
// connections no memory.
struct InputScope {
  const Connection* conn = nullptr;
  std::string_view view;  // on_input's data, or leftover_ with it appended
  std::string_view span;  // sent, not yet copied (empty: none)
};
thread_local InputScope t_input;

bool within(std::string_view part, std::string_view whole) {
  const auto p = reinterpret_cast<uintptr_t>(part.data());
  const auto w = reinterpret_cast<uintptr_t>(whole.data());
  return p >= w && p + part.size() <= w + whole.size();
}

}  // namespace

Connection::Connection(EventLoop& loop, int fd, uint64_t id, const Shared& shared)
    : io::Channel(fd, Kind::kStream),
      loop_(loop),
      shared_(shared),
      id_(id),
      peer_(PeerAddr::of(fd)) {}

Connection::Connection(EventLoop& loop, int fd, const PeerAddr& peer, uint64_t id,
                       const Shared& shared)
    : io::Channel(fd, Kind::kStream), loop_(loop), shared_(shared), id_(id), peer_(peer) {}

Connection::Connection(EventLoop& loop, const PeerAddr& peer, uint64_t id,
                       const Shared& shared)
    : io::Channel(-1, Kind::kStream), loop_(loop), shared_(shared), id_(id), peer_(peer) {}

Connection::~Connection() {
  stop_idle();
  if (tls_ && tls_->deadline != 0) loop_.cancel(tls_->deadline);
  if (!attached_ && state_ != State::kClosed && fd() >= 0) ::close(fd());
}

io::ChannelOps& Connection::loop_backend() { return loop_.backend(); }

int Connection::shut_write() {
  return ops().shutdown_write(*this);
}

int Connection::start() {
  int rc = shared_.tls ? tls_start() : 0;
  // Before attach: the header is awaited from the first byte on.
  proxy_pending_ = shared_.proxy != ProxyProtocol::kOff && fd() >= 0;
  if (rc == 0) rc = ops().attach(*this);
  if (rc < 0) {
    if (fd() >= 0) ::close(fd());
    state_ = State::kClosed;
    return rc;
  }
  attached_ = true;
  if (proxy_pending_) {
    // The header's deadline on the idle timer's node: idle detection
    // starts only with on_open (proxy_open() or tls_open()).
    idle_timer_ = loop_.run_after(shared_.proxy_timeout, [this] { on_proxy_deadline(); });
  }
  if (tls_) {
    // The handshake first: on_open (and idle detection) once it is done,
    // and a deadline for a peer that never finishes it.
    tls_->deadline = loop_.run_after(shared_.tls->options().handshake_timeout,
                                     [this] { on_tls_deadline(); });
    const size_t before = output().readable();
    tls_->engine->start(output());  // a client's ClientHello
    tls_wrote(before);
    return 0;
  }
  if (proxy_pending_) return 0;  // on_open once the header is in
  if (idle_on_) {
    idle_.start(idle_.options(), loop_.clock());  // the clocks start now
    arm_idle();
  }
  handler().on_open(*this);
  return 0;
}

const std::string& Connection::close_detail() const {
  static const std::string none;
  return close_detail_ ? *close_detail_ : none;
}

bool Connection::send(std::string_view payload) {
  if (!codec()) return send_raw(payload);
  if (state_ != State::kOpen || shutdown_wanted_ || !admit(payload.size())) return false;
  // Bytes sent earlier from the input view go first.
  if (in_input_ && !t_input.span.empty()) {
    output().append(t_input.span);
    t_input.span = {};
  }
  Buffer& out = send_queue();
  const size_t before = out.readable();
  if (!codec()->encode(payload, out)) {
    spdlog::warn("conn #{} {}: {} codec cannot frame a {}-byte message; not sent",
                 id_, peer(), codec()->name(), payload.size());
    return false;
  }
  queued(out.readable() - before);
  if (LoopStats* st = shared_.stats) st->messages_out.add();
  return true;
}

bool Connection::send_unreliable(std::string_view payload) {
  if (state_ != State::kOpen || shutdown_wanted_ || !attached_) return false;
  if (!ops().send_unreliable(*this, payload)) return false;
  if (LoopStats* st = shared_.stats) st->messages_out.add();
  return true;
}

void Connection::on_datagram(const io::Datagram& d) {
  if (state_ != State::kOpen) return;
  if (idle_on_) idle_.on_read(loop_.clock());
  if (LoopStats* st = shared_.stats) {
    st->bytes_in.add(d.data.size());
    st->messages_in.add();
  }
  handler().on_message(*this, d.data);
}

bool Connection::send_raw(std::string_view bytes) {
  // A message transport: the bytes are one message, framed like send()'s.
  if (shared_.ops && codec()) return send(bytes);
  if (state_ != State::kOpen || shutdown_wanted_ || !admit(bytes.size())) return false;
  if (LoopStats* st = shared_.stats) st->messages_out.add();
  if (bytes.empty()) return true;
  if (tls_) {  // plaintext waits for the handshake and the next flush
    tls_->plain.append(bytes);
    queued(bytes.size());
    return true;
  }
  if (in_input_ && t_input.conn == this) {
    // Bytes of the input being handled, with nothing else owed: leave them
    // where they are; flush_span() sends them from there when the handler
    // returns (t_input). With 4 KiB messages at pipeline 8, copying them
    // (32 KiB per read) was most of what separated sluice from a
    // hand-written echo server.
    if (t_input.span.empty() && pending_ == 0 && output().empty() &&
        within(bytes, t_input.view)) {
      t_input.span = bytes;
      queued(bytes.size());
      return true;
    }
    if (!t_input.span.empty()) {  // keep the order: the span goes first
      output().append(t_input.span);
      t_input.span = {};
    }
  }
  output().append(bytes);
  queued(bytes.size());
  return true;
}

bool Connection::send_raw_now(std::string_view bytes) {
  // Many sends to one connection in one task would each be a syscall
  // here; send_raw() batches them into one flush. So this path is only for
  // a lone message to a connection that owes nothing.
  if (in_input_ || pending_ != 0 || !attached_ || bytes.empty() || tls_) return send_raw(bytes);
  if (state_ != State::kOpen || shutdown_wanted_ || !admit(bytes.size())) return false;
  const ssize_t n = ops().send_now(*this, bytes);
  // A failure (n < 0) is left for update(), which meets it again and
  // reports it the usual way (on_error), as flush_span() does.
  const size_t done = n > 0 ? static_cast<size_t>(n) : 0;
  if (LoopStats* st = shared_.stats) {  // never queued, so progress() does not see it
    st->messages_out.add();
    st->bytes_out.add(done);
  }
  if (done > 0 && idle_on_) idle_.on_write(loop_.clock());
  if (done == bytes.size()) return true;
  output().append(bytes.substr(done));
  queued(bytes.size() - done);
  return true;
}

// The hard cap (ConnectionLimits::max_output): may n more bytes be owed?
// Never calls the handler: with OutputPolicy::kClose the abort is deferred
// to the end of the callback (send() must not re-enter the handler).
bool Connection::admit(size_t n) {
  if (overflowed_) return false;
  if (limits().max_output == 0 || pending_ + n <= limits().max_output) return true;
  const size_t cap = output_cap();  // the floor is worked out only here, off the fast path
  if (pending_ + n <= cap) return true;
  if (limits().output_policy == OutputPolicy::kRefuse) return false;
  overflowed_ = true;
  close_detail_ = std::make_unique<std::string>(
      fmt::format("{} bytes owed would pass the {}-byte output cap", pending_ + n, cap));
  // `this` stays valid: connections are only destroyed through
  // EventLoop::destroy_later, which runs after every deferred task.
  loop_.defer([this] {
    if (alive()) close_with(CloseReason::kTooSlow, 0, true);
  });
  return false;
}

size_t Connection::output_cap() const {
  const size_t cap = limits().max_output;
  if (cap == 0) return SIZE_MAX;
  // Backpressure already lets a server that answers requests queue
  // high_water plus its replies to one read (up to one largest frame and a
  // 64 KiB read buffer's worth of small ones) behind the send in flight,
  // and on a proactor (io_uring, blocking) that send can itself hold as
  // much: the cap never cuts that. (With the floor at one times this, the
  // blocking back end's 16 MiB-frame echo was cut off in conformance_test.)
  const size_t frame = codec() ? codec()->max_frame() : 0;
  return std::max(cap, 2 * (limits().high_water + frame + kReadReserve));
}

void Connection::flush_span() {
  const std::string_view span = t_input.span;
  t_input.span = {};
  if (span.empty() || !attached_ || !served()) return;  // aborted: dropped
  ssize_t n = 0;
  if (output().empty()) n = ops().send_now(*this, span);
  // A failure (n < 0) is left for update(), which meets it again and
  // reports it the usual way (on_error).
  const size_t done = n > 0 ? static_cast<size_t>(n) : 0;
  if (done < span.size()) output().append(span.substr(done));
  if (done > 0) progress(done);
}

void Connection::queued(size_t n) {
  pending_ += n;
  schedule_flush();
}

// After a flush attempt: more than high_water bytes still wait (not taken
// by the kernel, or queued behind the send in flight): pause reading. Not
// judged in send(): a burst the kernel takes at once is no sign of a slow
// peer, and send() must not call the handler back.
void Connection::check_high_water() {
  // TLS: plaintext still waiting for the handshake counts too.
  const size_t waiting = output().readable() + (tls_ ? tls_->plain.readable() : 0);
  if (backpressured_ || state_ != State::kOpen || waiting <= limits().high_water ||
      !handler_open()) {
    return;
  }
  backpressured_ = true;
  update_reading();
  handler().on_high_water(*this, pending_);
}

void Connection::flush_now() {
  if (!attached_ || !served()) return;
  if (tls_) tls_encrypt();
  ops().update(*this);
  check_high_water();
}

void Connection::shutdown() {
  if (state_ != State::kOpen || shutdown_wanted_) return;
  shutdown_wanted_ = true;
  maybe_finish();
}

void Connection::set_reading(bool on) {
  user_paused_ = !on;
  update_reading();
}

void Connection::update_reading() {
  bool want = false;
  if (state_ == State::kOpen) {
    want = !user_paused_ && !backpressured_ && !peer_shut_;
  } else if (state_ == State::kClosing || state_ == State::kLingering) {
    // Closing, input is read and discarded (it costs no memory), so a peer
    // still sending never fills our receive queue: closing with unread
    // input makes Linux reset the connection and drop what we still owe.
    // Up to linger_max_bytes per phase; then flushing pauses reading (what
    // we owe comes first) and lingering gives up (discard_input()).
    want = lingers() && !peer_shut_ && discarded_ < limits().linger_max_bytes;
  }
  if (want == want_read()) return;
  set_want_read(want);
  schedule_flush();
}

void Connection::schedule_flush() {
  if (in_input_) {
    flush_after_input_ = true;
    return;
  }
  if (flush_scheduled_ || !attached_ || !served()) return;
  flush_scheduled_ = true;
  // `this` stays valid: connections are only destroyed through
  // EventLoop::destroy_later, which runs after every deferred task.
  loop_.defer([this] {
    flush_scheduled_ = false;
    flush_now();
  });
}

void Connection::on_input(std::string_view data) {
  if (proxy_pending_) return proxy_input(data);
  if (tls_) return tls_input(data);
  plain_input(data);
}

void Connection::plain_input(std::string_view data) {
  if (LoopStats* st = shared_.stats) st->bytes_in.add(data.size());
  // Frames are decoded where they lie: in the back end's read buffer, or
  // in leftover_ when an incomplete frame was kept from an earlier read
  // (then the new bytes join it there).
  const bool joined = !leftover_.empty();
  if (joined) leftover_.append(data);
  const std::string_view view = joined ? leftover_.view() : data;
  const InputScope outer = t_input;  // on_input does not nest; be safe anyway
  t_input = {this, view, {}};
  in_input_ = true;
  const size_t used = consume_input(view);
  in_input_ = false;
  // Replies to this input go out as soon as the handler is done with it,
  // in one update() for everything it queued: no deferred task, and the
  // bytes are sent while still in cache. (A deferred flush at the end of
  // the loop iteration cost ~5% CPU per message at 1000 connections.)
  // The span first: it may point into leftover_.
  flush_span();
  t_input = outer;
  if (joined) {
    leftover_.retrieve(used);
  } else if (used < view.size()) {
    leftover_.append(view.substr(used));  // the incomplete frame's tail
  }
  if (leftover_.empty()) leftover_.release();
  if (flush_after_input_) {
    flush_after_input_ = false;
    flush_now();
  }
}

// Hands `view` to the handler (as frames, with a codec) and returns how
// many of its bytes are done with; the rest is an incomplete frame.
size_t Connection::consume_input(std::string_view view) {
  // The clock, not the loop's time: this input may have arrived while the
  // wait slept, after the loop's time was taken.
  if (idle_on_) idle_.on_read(loop_.clock());
  if (state_ != State::kOpen) {
    discard_input(view.size());  // closing: what the peer still sends is dropped
    return view.size();
  }
  LoopStats* const st = shared_.stats;
  if (!codec()) {
    if (st) st->messages_in.add();
    handler().on_message(*this, view);
    return view.size();
  }
  if (!decoder_) decoder_ = codec()->new_decoder();
  size_t used = 0;
  // Frames are counted once per read, not once per frame: the loop's
  // counter stays out of the per-frame path.
  uint64_t frames = 0;
  codec::CodecErrc err =
      codec::drain_frames(*decoder_, view, &used, [this, &frames](std::string_view frame) {
        ++frames;
        handler().on_message(*this, frame);
        return state_ == State::kOpen;
      });
  if (st) st->messages_in.add(frames);
  if (err != codec::CodecErrc::kNone) {
    if (st) st->frame_errors.add();
    // Reported to the handler (on_close with kFrameError and this detail),
    // which decides how loudly to log it: one line per dropped peer.
    close_detail_ = std::make_unique<std::string>(
        fmt::format("{} codec: {} (max frame {} bytes)", codec()->name(),
                    codec::to_string(err), codec()->max_frame()));
    spdlog::debug("conn #{} {}: {}; closing", id_, peer(), *close_detail_);
    close_with(CloseReason::kFrameError, 0, false);
    return view.size();
  }
  return state_ == State::kOpen ? used : view.size();
}

void Connection::discard_input(size_t n) {
  if (state_ != State::kClosing && state_ != State::kLingering) return;
  // Saturating: the budget is well below 4 GiB.
  discarded_ = static_cast<uint32_t>(
      std::min<uint64_t>(uint64_t{discarded_} + n, UINT32_MAX));
  if (discarded_ < limits().linger_max_bytes) {
    // The peer's segments usually carry the ACK of our FIN: look now
    // rather than at the next timer tick.
    if (state_ == State::kLingering && tcp_fin_acked(fd()) != 0) {
      end_linger(LingerEvent::kFinAcked);
    }
    return;
  }
  if (state_ == State::kLingering) {
    spdlog::debug("conn #{} {}: peer sent {} bytes while lingering; closing now",
                  id_, peer(), discarded_);
    end_linger(LingerEvent::kByteLimit);
  } else {
    update_reading();  // flushing: stop reading, what we owe comes first
  }
}

void Connection::on_sent(size_t n) { progress(n); }

// n bytes owed went to the kernel (on_sent, or sent inline by flush_span).
void Connection::progress(size_t n) {
  if (LoopStats* st = shared_.stats) st->bytes_out.add(n);
  if (idle_on_) idle_.on_write(loop_.clock());
  pending_ -= n;
  if (backpressured_ && pending_ <= limits().low_water) {
    backpressured_ = false;
    update_reading();
    handler().on_drain(*this);
  }
  if (pending_ == 0) maybe_finish();
}

void Connection::on_eof() {
  if (tls_ && peer_shut_) return;  // its close_notify came first
  if (tls_) tls_check_truncation();
  peer_shut_ = true;
  update_reading();
  // A peer that closes before its PROXY header is done; one that sent
  // nothing at all (a balancer's TCP health check) is not worth a line.
  if (proxy_pending_ && state_ == State::kOpen) {
    proxy_fail("peer closed before the header was complete", leftover_.empty(), false);
  }
  // TLS: a peer that gives up half way through the handshake is a failed
  // one (after peer_shut_: nothing to linger for).
  if (tls_ && !tls_->opened && !tls_->failed && state_ == State::kOpen) {
    tls_fail("peer closed during the handshake", TlsEvent::kFailed, false);
  }
  if (!leftover_.empty()) {
    spdlog::debug("conn #{} {}: peer closed with {} bytes of an incomplete "
                  "frame",
                  id_, peer(), leftover_.readable());
    leftover_.retrieve_all();
  }
  leftover_.release();
  if (state_ == State::kOpen && handler_open()) {
    reason_ = CloseReason::kPeerClosed;
    handler().on_peer_shutdown(*this);
  }
  maybe_finish();
}

void Connection::on_error(int err) {
  spdlog::debug("conn #{} {}: socket error: {}", id_, peer(), std::strerror(-err));
  if (!close_detail_) close_detail_ = std::make_unique<std::string>(std::strerror(-err));
  close_with(CloseReason::kPeerReset, err, true);
}

void Connection::close_with(CloseReason reason, int err, bool drop_output) {
  if (state_ == State::kOpen) {
    state_ = State::kClosing;
    // A peer that already closed made this an orderly close whoever calls
    // close() in response.
    reason_ = (peer_shut_ && reason == CloseReason::kLocal) ? CloseReason::kPeerClosed
                                                            : reason;
    error_ = err;
    update_reading();
  } else if (state_ != State::kClosing && state_ != State::kLingering) {
    return;
  }
  if (drop_output) {
    if (err) {
      reason_ = reason;
      error_ = err;
    }
    detach_now();
    return;
  }
  maybe_finish();
}

void Connection::maybe_finish() {
  if (pending_ != 0) return;
  // TLS: close_notify before the FIN; finish once it is sent.
  if (tls_ && tls_notify()) return;
  if (state_ == State::kClosing) {
    // The peer's EOF came first (the common case): no more input can
    // arrive, so close() sends an orderly FIN at once. Else linger.
    if (peer_shut_ || !lingers()) {
      detach_now();
    } else {
      start_linger();
    }
    return;
  }
  if (state_ == State::kLingering) {
    if (peer_shut_) end_linger(LingerEvent::kPeerEof);
    return;
  }
  if (state_ == State::kOpen && shutdown_wanted_ && !write_shut_) {
    write_shut_ = true;
    shut_write();
    if (peer_shut_) close_with(CloseReason::kPeerClosed, 0, false);
  }
}

void Connection::detach_now() {
  if (!served()) return;
  const bool closed_already = state_ == State::kLingering;  // on_close ran
  state_ = State::kDetaching;
  stop_idle();  // the idle timer, or the linger timer
  if (tls_ && tls_->deadline != 0) {
    loop_.cancel(tls_->deadline);
    tls_->deadline = 0;
  }
  if (!closed_already && handler_open()) handler().on_close(*this, reason_, error_);
  ops().detach(*this);
}

void Connection::on_detached() {
  state_ = State::kClosed;
  if (fd() >= 0) ::close(fd());
  shared_.owner.release(*this);
}

}  // namespace sluice
