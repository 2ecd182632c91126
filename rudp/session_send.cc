// Session, sending: taking the connection's output, building packets
// (ACK, MAX_DATA, unreliable messages, stream bytes: retransmissions
// first), the congestion window and pacing, and probe timeouts.
#include <algorithm>

#include "core/event_loop.h"
#include "rudp/node_pool.h"
#include "rudp/session.h"

namespace sluice::rudp {

namespace {

// ACK frames report at most this many ranges (the newest).
constexpr size_t kMaxAckRanges = 32;
// Packets one flush may build before yielding to the loop; the rest go in
// the next one (scheduled), so one bulk sender cannot starve the others.
constexpr int kMaxPacketsPerFlush = 128;
// Pacing lets this many full datagrams go back to back. Small: a burst
// queues at the bottleneck (ten datagrams put BBR's p95 queue past a
// quarter of the RTT on a 20 Mbit/s, 50 ms path in tests/rudp_cc_sim_test).
constexpr uint64_t kPacingBurst = 2;
constexpr Duration kPacingGranularity = std::chrono::milliseconds(1);
// What a packet needs besides its frames: header and packet number.
constexpr size_t kPacketOverhead = kHeaderSize + 8;

}  // namespace

void Session::take_output() {
  if (!conn_ || state_ != State::kOpen) return;
  Buffer& out = conn_->output();
  const uint64_t held = send_end_ - sbase_;
  const size_t room = held >= opts_.send_buffer ? 0 : opts_.send_buffer - held;
  const size_t n = std::min(out.readable(), room);
  if (n == 0) return;
  sbuf_.append(std::string_view(out.peek(), n));
  out.retrieve(n);
  if (out.empty()) out.release();
  send_end_ += n;
  schedule_flush();
  conn_->on_sent(n);  // last: the connection may close or detach from here
}

void Session::send_packets() {
  if (state_ == State::kDone) return;
  queue_full_ = false;
  paced_out_ = false;
  for (int i = 0; i < kMaxPacketsPerFlush; ++i) {
    if (host_.send_room() == 0) {
      queue_full_ = true;  // the socket is behind: try again shortly
      return;
    }
    if (!build_packet(packet_, probes_ > 0)) {
      // Out of data with the window open: the delivery-rate samples of
      // what is in flight now say app-limited (delivery-rate draft §3.4).
      if (!has_data() && bytes_in_flight_ < cc_->cwnd()) rate_.on_app_limited(bytes_in_flight_);
      return;
    }
    if (state_ == State::kDraining) return;  // one CLOSE/RESET is enough
  }
  schedule_flush();  // more may be ready: after the others had their turn
}

bool Session::build_packet(std::string& d, bool probe) {
  const Clock::time_point now = time();
  const size_t max_dgram = std::min<uint64_t>(opts_.max_datagram, peer_params_.max_datagram);
  const bool draining = state_ == State::kDraining;
  const uint64_t rate = cc_->pacing_rate();
  const bool window_ok = probe || bytes_in_flight_ < cc_->cwnd();
  const bool pace_ok = probe || rate == 0 || now >= next_send_at_;
  const bool data = has_data();
  const bool can_data = !draining && window_ok && pace_ok && data;
  if (!draining && window_ok && data && !pace_ok) paced_out_ = true;
  const bool control = close_wanted_ || reset_wanted_ ||
                       (!draining && (max_data_dirty_ || ping_wanted_ || probe));
  const bool elicit = can_data || control;
  const bool want_ack = !draining && ack_needed_ && (ack_now_ || now >= ack_due_ || elicit);
  if (!elicit && !want_ack) return false;

  begin_datagram(d, PacketType::kData, peer_id_);
  Writer(d).u64(next_pn_);
  SentPacket p;
  p.sent = now;
  p.ect = ecn_marking_;
  if (want_ack) add_ack(d, max_dgram - d.size());
  if (reset_wanted_) {
    write_reset(d, static_cast<uint64_t>(reset_code_));
    reset_wanted_ = false;
    sent_reset_ = true;
    last_close_sent_ = now;
  } else if (close_wanted_) {
    write_simple(d, FrameType::kClose);
    close_wanted_ = false;
    sent_close_ = true;
    last_close_sent_ = now;
  }
  if (!draining) {
    if (max_data_dirty_ && d.size() + 1 + 8 <= max_dgram) {
      write_max_data(d, max_data_sent_);
      max_data_dirty_ = false;
      p.max_data = true;
      p.eliciting = true;
    }
    if (can_data) {
      while (!unreliable_.empty()) {
        const std::string& m = unreliable_.front();
        if (d.size() + 1 + 8 + 4 + m.size() > max_dgram) break;
        write_unreliable(d, next_unreliable_++, m);
        unreliable_.pop_front();
        ++stats_.unreliable_sent;
        p.eliciting = true;
      }
      add_stream(d, max_dgram - d.size(), p);
    }
    if ((ping_wanted_ || probe) && !p.eliciting) {
      write_simple(d, FrameType::kPing);
      p.eliciting = true;
    }
    if (p.eliciting) ping_wanted_ = false;
  }
  if (d.size() == kPacketOverhead) return false;  // nothing fitted

  seal_datagram(d);
  if (!host_.send_datagram(*this, d)) ++stats_.local_drops;  // lost, as on a full link
  const uint64_t pn = next_pn_++;
  ++stats_.packets_sent;
  stats_.bytes_sent += d.size();
  last_send_ = now;
  if (p.eliciting) {
    p.bytes = static_cast<uint32_t>(d.size());
    p.rate = rate_.on_sent(now, bytes_in_flight_, p.bytes);
    NodePool<std::map<uint64_t, SentPacket>>::emplace(sent_, pn, p);
    bytes_in_flight_ += p.bytes;
    last_eliciting_sent_ = now;
    cc_->on_sent(now, p.bytes, bytes_in_flight_);
    if (probes_ > 0) --probes_;
    if (rate != 0) {
      // Token-bucket pacing: a burst, then one datagram every size/rate.
      // The burst is kPacingBurst datagrams, or what the rate sends in
      // kPacingGranularity if more: the loop's timers have millisecond
      // resolution, so a pacer that woke per datagram could not go faster
      // than one burst per millisecond.
      const auto burst = std::max<Duration>(
          std::chrono::nanoseconds(kPacingBurst * max_dgram * 1'000'000'000 / rate),
          kPacingGranularity);
      const auto gap = std::chrono::nanoseconds(uint64_t{p.bytes} * 1'000'000'000 / rate);
      next_send_at_ = std::max(next_send_at_, now - burst) + gap;
    }
  }
  return true;
}

bool Session::has_data() const {
  return !retx_.empty() || (next_new_ < send_end_ && next_new_ < peer_max_data_) ||
         (fin_at_ && next_new_ == *fin_at_ && (!fin_sent_ || fin_resend_)) ||
         !unreliable_.empty();
}

void Session::add_ack(std::string& d, size_t room) {
  const Clock::time_point now = time();
  ack_scratch_.clear();
  recv_pns_.for_each_desc([this](uint64_t low, uint64_t high) {
    ack_scratch_.push_back({low, high - 1});
    return ack_scratch_.size() < kMaxAckRanges;
  });
  const uint64_t delay_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(now - largest_recv_at_).count());
  // ACK_ECN once any packet arrived with an ECN codepoint (RFC 9000 §13.4.1).
  const EcnCounts* ecn = recv_ecn_.any() ? &recv_ecn_ : nullptr;
  while (ack_scratch_.size() > 1 && ack_frame_size(ack_scratch_, delay_us, ecn) > room) {
    ack_scratch_.pop_back();
  }
  if (ack_scratch_.empty() || ack_frame_size(ack_scratch_, delay_us, ecn) > room) return;
  write_ack(d, ack_scratch_, delay_us, ecn);
  ack_needed_ = false;
  ack_now_ = false;
  unacked_eliciting_ = 0;
}

bool Session::add_stream(std::string& d, size_t room, SentPacket& p) {
  constexpr size_t kMaxStreamHeader = 1 + 8 + 4;
  if (room <= kMaxStreamHeader) return false;
  const size_t max_len = room - kMaxStreamHeader;
  // Retransmissions first: the peer cannot deliver past a hole.
  while (!retx_.empty()) {
    RangeSet::Range r = retx_.front();
    if (r.high <= sbase_) {
      retx_.pop_front();
      continue;
    }
    uint64_t lo = std::max(r.low, sbase_);
    RangeSet::Range a{};
    if (acked_.next_above(lo, &a) && a.low <= lo) {
      retx_.remove(lo, a.high);  // acknowledged meanwhile (by another copy)
      continue;
    }
    uint64_t hi = std::min(r.high, next_new_);
    if (acked_.next_above(lo, &a) && a.low < hi) hi = a.low;
    if (hi <= lo) {
      retx_.remove(lo, r.high);
      continue;
    }
    const std::string_view piece =
        sbuf_.peek(lo - sbase_, std::min<uint64_t>(hi - lo, max_len));
    const uint64_t len = piece.size();
    const bool fin = fin_at_ && lo + len == *fin_at_;
    write_stream(d, lo, piece, fin);
    retx_.remove(lo, lo + len);
    stats_.retransmitted += len;
    p.offset = lo;
    p.len = static_cast<uint32_t>(len);
    p.fin = fin;
    p.eliciting = true;
    if (fin) {
      fin_sent_ = true;
      fin_resend_ = false;
    }
    return true;
  }
  const uint64_t limit = std::min(send_end_, peer_max_data_);
  if (next_new_ < limit) {
    // Small unacknowledged data rides again with the new (see
    // Options::redundant_bytes): a lost small message is then recovered
    // by the next packet, not by a retransmission a round trip later.
    uint64_t start = next_new_;
    if (next_new_ > sbase_ && next_new_ - sbase_ <= opts_.redundant_bytes &&
        next_new_ - sbase_ < max_len) {
      start = sbase_;
    }
    std::string_view piece = sbuf_.peek(start - sbase_, std::min<uint64_t>(limit - start, max_len));
    if (start + piece.size() <= next_new_) {  // a chunk boundary cut the new part off
      start = next_new_;
      piece = sbuf_.peek(start - sbase_, std::min<uint64_t>(limit - start, max_len));
    }
    const uint64_t len = piece.size();
    const bool fin = fin_at_ && start + len == *fin_at_;
    write_stream(d, start, piece, fin);
    p.offset = start;
    p.len = static_cast<uint32_t>(len);
    p.fin = fin;
    p.eliciting = true;
    stats_.redundant += next_new_ - start;
    stats_.stream_bytes_sent += start + len - next_new_;
    next_new_ = start + len;
    if (fin) {
      fin_sent_ = true;
      fin_resend_ = false;
    }
    return true;
  }
  if (fin_at_ && next_new_ == *fin_at_ && (!fin_sent_ || fin_resend_)) {
    write_stream(d, next_new_, {}, true);
    p.offset = next_new_;
    p.len = 0;
    p.fin = true;
    p.eliciting = true;
    fin_sent_ = true;
    fin_resend_ = false;
    return true;
  }
  return false;
}

void Session::on_pto() {
  // RFC 9002 §6.2.4: one or two probes past the window, carrying data if
  // any is outstanding (the oldest packet's bytes again), else a PING.
  ++pto_count_;
  ++stats_.pto_count;
  probes_ = 2;
  for (const auto& [pn, p] : sent_) {
    if (p.len) {
      retx_.add(p.offset, p.offset + p.len);
      return;
    }
    if (p.fin) {
      fin_resend_ = true;
      return;
    }
  }
  ping_wanted_ = true;
}

}  // namespace sluice::rudp
