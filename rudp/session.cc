// Session: life cycle, the one timer, and the channel calls from the
// connection. Receiving is in session_recv.cc, sending in session_send.cc.
#include "rudp/session.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/event_loop.h"
#include "rudp/link.h"

namespace sluice::rudp {

std::string Stats::str() const {
  using std::chrono::duration;
  auto ms = [](std::chrono::nanoseconds d) { return duration<double, std::milli>(d).count(); };
  return fmt::format(
      "srtt {:.2f} ms rttvar {:.2f} ms min_rtt {:.2f} ms cc {} cwnd {} pacing {:.1f} Mbit/s "
      "bw {:.1f} Mbit/s in_flight {} sent {} pkts "
      "{} B retransmitted {} B redundant {} B lost {} spurious {} dup {} pto {} ecn_ce {}{}",
      ms(srtt), ms(rttvar), ms(min_rtt), cc, cwnd, pacing_rate * 8 / 1e6, delivery_rate * 8 / 1e6,
      bytes_in_flight, packets_sent, bytes_sent,
      retransmitted, redundant, packets_lost, spurious, duplicates, pto_count, ecn_ce,
      ecn_failed ? " (ecn failed)" : "");
}

Session::Session(SessionHost& host, const Options& opts, uint32_t local_id, uint32_t peer_id,
                 const sockaddr* peer, socklen_t peer_len, const Params& peer_params,
                 std::unique_ptr<cc::Controller> cc)
    : host_(host),
      opts_(opts),
      local_id_(local_id),
      peer_id_(peer_id),
      peer_len_(peer_len),
      peer_params_(peer_params),
      cc_(std::move(cc)),
      rtt_(opts.initial_rtt),
      peer_max_data_(peer_params.initial_window),
      max_data_sent_(opts.window) {
  ecn_marking_ = opts.ecn;
  std::memcpy(&peer_, peer, std::min<size_t>(peer_len, sizeof(peer_)));
  last_recv_ = last_send_ = next_send_at_ = loop().clock();
  arm_timer();
}

Session::~Session() {
  if (timer_ != 0) loop().cancel(timer_);
  if (conn_) {
    // The loop is going away with the connection still attached: the
    // link must not point here any more.
    if (auto* l = dynamic_cast<Link*>(conn_->io.get())) l->session = nullptr;
  }
}

EventLoop& Session::loop() { return host_.loop(); }

Clock::time_point Session::time() { return in_op_ ? op_now_ : loop().clock(); }

Session::OpScope::OpScope(Session& session) : s(session), outer(session.in_op_) {
  if (!outer) {
    s.op_now_ = s.loop().clock();
    s.in_op_ = true;
  }
}

Session::OpScope::~OpScope() {
  if (!outer) s.in_op_ = false;
}

void Session::cut(Link& l) const {
  l.last = stats();
  l.session = nullptr;
}

bool Session::same_peer(const sockaddr* a, socklen_t len) const {
  return len == peer_len_ && std::memcmp(a, &peer_, len) == 0;
}

Stats Session::stats() const {
  Stats s = stats_;
  s.srtt = rtt_.smoothed();
  s.rttvar = rtt_.variance();
  s.min_rtt = rtt_.min();
  s.cwnd = cc_->cwnd();
  s.pacing_rate = cc_->pacing_rate();
  s.delivery_rate = last_delivery_rate_;
  s.cc = std::string(cc_->name());
  if (!cc_->state().empty()) s.cc += "/" + std::string(cc_->state());
  s.bytes_in_flight = bytes_in_flight_;
  s.recv_buffered = rready_.readable();
  for (const auto& [off, bytes] : rooo_) s.recv_buffered += bytes.size();
  s.send_buffered = send_end_ - sbase_;
  return s;
}

Duration Session::pto_base() const {
  return rtt_.pto(std::chrono::milliseconds(peer_params_.max_ack_delay_ms));
}

Duration Session::idle_timeout() const {
  // The smaller of the two sides' (RFC 9000 §10.1); 0 from the peer: none.
  const uint64_t ours = static_cast<uint64_t>(opts_.idle_timeout.count());
  const uint64_t theirs = peer_params_.idle_timeout_ms ? peer_params_.idle_timeout_ms : ours;
  return std::chrono::milliseconds(std::min(ours, theirs));
}

Clock::time_point Session::pto_deadline() const {
  // RFC 9002 §6.2.1: doubled per consecutive timeout (capped: no overflow).
  return last_eliciting_sent_ + pto_base() * (1u << std::min<uint32_t>(pto_count_, 16));
}

Duration Session::drain_period() const {
  // RFC 9000 §10.2: at least three PTOs. Whose PTO: the peer retransmits
  // its FIN on its own timer, which adds OUR max_ack_delay (not its own),
  // so take the larger of the two delays. With only ours in it (a peer
  // announcing a small delay, on loopback) the drain was ~20 ms, shorter
  // than the peer's first retransmission: a peer whose CLOSE was lost then
  // met silence and idled out (found by an independent Python peer written
  // from docs/RUDP.md alone). The floor of a second covers a peer's
  // backed-off timer and a lost CLOSE or two; TIME_WAIT holds a minute.
  const auto ack_delay = std::chrono::milliseconds(
      std::max<uint64_t>(peer_params_.max_ack_delay_ms,
                         static_cast<uint64_t>(opts_.max_ack_delay.count())));
  return std::max<Duration>(3 * rtt_.pto(ack_delay), kMinDrain);
}

// ---- channel calls (from the Connection, through the Endpoint) ----

void Session::attach(io::Channel& ch) {
  conn_ = &ch;
  schedule_flush();  // anything that arrived before (it waits in rready_)
}

void Session::update(io::Channel& ch) {
  if (conn_ != &ch) return;
  take_output();
  // Reading may have resumed: hand over what waits, from the loop (never
  // inside the connection's own call).
  schedule_flush();
}

int Session::shutdown_write(io::Channel& ch) {
  if (conn_ != &ch) return -ENOTCONN;
  take_output();
  // The Connection shuts down only once everything owed was handed over.
  if (!fin_at_) fin_at_ = send_end_;
  schedule_flush();
  return 0;
}

void Session::detach(io::Channel& ch) {
  if (conn_ != &ch) return;
  conn_ = nullptr;
  if (state_ != State::kOpen) return;
  // A detached connection hands over nothing more: what was taken is
  // still delivered (a kernel socket does the same after close()), then
  // our FIN. Input that arrives from now on is acknowledged and dropped.
  if (!fin_at_) fin_at_ = send_end_;
  state_ = State::kClosing;
  rbase_ += rready_.readable();
  rready_.retrieve_all();
  rready_.release();
  unreliable_.clear();
  maybe_finish_close();
  if (state_ == State::kClosing) schedule_flush();
}

bool Session::send_unreliable(std::string_view message) {
  if (state_ != State::kOpen) return false;
  const size_t max_dgram = std::min<uint64_t>(opts_.max_datagram, peer_params_.max_datagram);
  // Header, packet number, an ACK frame's worst case we keep room for, the
  // frame's own header.
  if (message.size() + kHeaderSize + 8 + 64 + 1 + 8 + 4 > max_dgram) return false;
  if (unreliable_.size() >= opts_.unreliable_queue) {
    unreliable_.pop_front();
    ++stats_.unreliable_dropped;
  }
  unreliable_.emplace_back(message);
  schedule_flush();
  return true;
}

// ---- closing ----

void Session::maybe_finish_close() {
  if (state_ != State::kClosing) return;
  if (peer_closed_) {
    start_draining(false, false);
    return;
  }
  const bool peer_done = peer_fin_at_ && rbase_ + rready_.readable() >= *peer_fin_at_;
  if (fin_acked_ && peer_done) start_draining(true, false);
}

void Session::start_draining(bool send_close, bool send_reset, ResetCode code) {
  if (state_ == State::kDraining || state_ == State::kDone) return;
  reset_code_ = code;
  close_wanted_ = send_close;
  reset_wanted_ = send_reset;
  // Nothing more is retransmitted: the close is final.
  sent_.clear();
  bytes_in_flight_ = 0;
  loss_time_.reset();
  retx_.clear();
  rooo_.clear();
  rooo_ranges_.clear();
  state_ = State::kDraining;
  // RFC 9000 §10.2: three probe timeouts, long enough for the peer's
  // retransmissions to die out, so no late packet meets a new connection.
  drain_until_ = time() + (host_.closing() ? Duration::zero() : drain_period());
  if (send_close || send_reset) send_packets();
  arm_timer();
}

void Session::fail(int err) {
  if (state_ == State::kDone) return;
  start_draining(false, false);
  if (io::Channel* c = conn_) {
    conn_ = nullptr;
    if (auto* l = dynamic_cast<Link*>(c->io.get())) cut(*l);
    c->on_error(err);  // the connection detaches; the link is cut already
  }
}

void Session::protocol_error(const char* what) {
  spdlog::debug("rudp {:08x}: protocol error from peer: {}; resetting", local_id_, what);
  ++stats_.protocol_errors;
  if (io::Channel* c = conn_) {
    conn_ = nullptr;
    if (auto* l = dynamic_cast<Link*>(c->io.get())) cut(*l);
    start_draining(false, true, ResetCode::kProtocol);
    c->on_error(-EPROTO);
    return;
  }
  start_draining(false, true, ResetCode::kProtocol);
}

void Session::abort_now(int err, ResetCode code) {
  if (state_ == State::kDone) return;
  if (io::Channel* c = conn_) {
    conn_ = nullptr;
    if (auto* l = dynamic_cast<Link*>(c->io.get())) cut(*l);
    c->on_error(err);
  }
  if (state_ != State::kDraining) start_draining(false, true, code);
  state_ = State::kDone;
  host_.finished(*this);
}

void Session::cut_drain() {
  if (state_ != State::kDraining) return;
  drain_until_ = time();
  arm_timer();
}

// ---- the timer ----

void Session::schedule_flush() {
  if (flush_scheduled_ || state_ == State::kDone) return;
  flush_scheduled_ = true;
  // The endpoint destroys a finished session from a task it defers after
  // this one; an endpoint torn down mid-loop takes its sessions with it,
  // hence the token.
  loop().defer([this, alive = std::weak_ptr<char>(alive_)] {
    if (alive.expired()) return;
    flush_scheduled_ = false;
    if (state_ == State::kDone) return;
    OpScope op(*this);
    deliver();
    send_packets();
    arm_timer();
  });
}

void Session::arm_timer() {
  if (state_ == State::kDone) return;
  const Clock::time_point now = time();
  Clock::time_point at = Clock::time_point::max();
  auto consider = [&at](Clock::time_point t) { at = std::min(at, t); };
  if (state_ == State::kDraining) {
    consider(drain_until_);
  } else {
    consider(last_recv_ + idle_timeout());
    if (loss_time_) {
      consider(*loss_time_);
    } else if (!sent_.empty()) {
      consider(pto_deadline());
    }
    if (ack_needed_) consider(ack_due_);
    if (opts_.keepalive.count() > 0 && state_ == State::kOpen) {
      consider(std::max(last_send_, last_recv_) + opts_.keepalive);
    }
    if (paced_out_) consider(next_send_at_);
    if (queue_full_) consider(now + std::chrono::milliseconds(1));
    if (state_ == State::kClosing && fin_acked_) consider(fin_acked_at_ + opts_.close_timeout);
  }
  if (at == Clock::time_point::max()) return;
  if (timer_ != 0 && loop().reset_timer_at(timer_, at)) return;
  timer_ = loop().run_at(at, [this] {
    timer_ = 0;
    on_timer();
  });
}

void Session::on_timer() {
  OpScope op(*this);
  const Clock::time_point now = time();
  if (state_ == State::kDraining) {
    if (now >= drain_until_) {
      state_ = State::kDone;
      host_.finished(*this);
      return;
    }
    arm_timer();
    return;
  }
  const Duration idle = idle_timeout();
  if (now - last_recv_ >= idle) {
    // RFC 9000 §10.1: an idle timeout closes silently.
    spdlog::debug("rudp {:08x}: nothing from the peer for {} ms; closing", local_id_,
                  std::chrono::duration_cast<std::chrono::milliseconds>(idle).count());
    fail(-ETIMEDOUT);
    state_ = State::kDone;
    host_.finished(*this);
    return;
  }
  if (state_ == State::kClosing && fin_acked_ && now - fin_acked_at_ >= opts_.close_timeout) {
    // The peer took everything we sent but never finished its side.
    start_draining(false, true, ResetCode::kCloseTimeout);
    return;
  }
  if (loss_time_ && now >= *loss_time_) {
    detect_lost();
  } else if (!loss_time_ && !sent_.empty() && now >= pto_deadline()) {
    on_pto();
  }
  if (ack_needed_ && now >= ack_due_) ack_now_ = true;
  if (opts_.keepalive.count() > 0 && state_ == State::kOpen &&
      now - std::max(last_send_, last_recv_) >= opts_.keepalive) {
    ping_wanted_ = true;
  }
  send_packets();
  arm_timer();
}

}  // namespace sluice::rudp
