// Session, receiving: packets, ACK frames (RTT, loss detection after
// RFC 9002 §6), the peer's stream (reassembly, flow control) and its
// unreliable messages.
#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "core/event_loop.h"
#include "rudp/node_pool.h"
#include "rudp/session.h"

namespace sluice::rudp {

namespace {

// RFC 9002 §7.6.1. The loss thresholds of §6.1 start at 3 packets and
// 9/8 RTT (session.h) and adapt to reordering, up to these.
constexpr uint64_t kMaxPacketThreshold = 64;
constexpr uint32_t kMaxTimeThresholdEighths = 16;
constexpr int kPersistentCongestionThreshold = 3;
// Received packet numbers kept as ranges (older ones count as duplicates),
// and the most ranges one ACK frame reports.
constexpr size_t kMaxRecvRanges = 64;
constexpr size_t kMaxLostKept = 4096;

}  // namespace

void Session::on_packet(std::string_view body, uint8_t ecn) {
  if (state_ == State::kDone) return;
  Reader r(body);
  uint64_t pn = 0;
  if (!r.u64(&pn)) return;
  OpScope op(*this);
  const Clock::time_point now = time();
  if (state_ == State::kDraining) {
    // RFC 9000 §10.2.1: a closing endpoint answers late packets with its
    // CLOSE (or RESET) again, at most once per probe timeout.
    if ((sent_close_ || sent_reset_) && now - last_close_sent_ >= pto_base()) {
      close_wanted_ = sent_close_;
      reset_wanted_ = sent_reset_;
      send_packets();
    }
    return;
  }
  if (pn < recv_floor_ || recv_pns_.contains(pn)) {
    ++stats_.duplicates;
    return;
  }
  bool eliciting = false;
  const WireError err = for_each_frame(r.rest(), ack_scratch_, [&](const Frame& f) {
    if (state_ == State::kDraining || state_ == State::kDone) return;
    if (f.type != FrameType::kAck && f.type != FrameType::kAckEcn &&
        f.type != FrameType::kClose && f.type != FrameType::kReset) {
      eliciting = true;
    }
    switch (f.type) {
      case FrameType::kPing: break;
      case FrameType::kAck: on_ack(*f.ack_ranges, f.ack_delay_us, nullptr); break;
      case FrameType::kAckEcn: on_ack(*f.ack_ranges, f.ack_delay_us, &f.ecn); break;
      case FrameType::kStream:
      case FrameType::kStreamFin: on_stream(f.offset, f.data, f.type == FrameType::kStreamFin); break;
      case FrameType::kMaxData:
        if (f.offset > peer_max_data_) {
          peer_max_data_ = f.offset;
          schedule_flush();
        }
        break;
      case FrameType::kUnreliable: on_unreliable(f.offset, f.data); break;
      case FrameType::kClose:
        peer_closed_ = true;
        if (state_ == State::kClosing) {
          maybe_finish_close();
        } else if (conn_ && !eof_delivered_) {
          // The peer finished both ways: everything it sent is here.
          deliver();
        }
        break;
      case FrameType::kReset:
        spdlog::debug("rudp {:08x}: reset by peer (code {})", local_id_, f.offset);
        fail(f.offset == static_cast<uint64_t>(ResetCode::kRefused) ? -ECONNREFUSED
                                                                     : -ECONNRESET);
        break;
    }
  });
  if (err != WireError::kNone) {
    ++stats_.malformed;
    return;  // not recorded: never acknowledged
  }
  if (state_ == State::kDone) return;
  last_recv_ = now;
  ++stats_.packets_received;
  switch (ecn & 3) {
    case io::kEct0: ++recv_ecn_.ect0; break;
    case io::kEct1: ++recv_ecn_.ect1; break;
    case io::kCe:
      ++recv_ecn_.ce;
      ++stats_.ecn_ce_received;
      ack_now_ = true;  // RFC 9000 §13.2.1: report CE at once
      break;
    default: break;
  }
  if (recv_pns_.empty() || pn > largest_recv_) {
    // A gap before it: acknowledge at once, so the peer sees the hole
    // (RFC 9000 §13.2.1).
    if (!recv_pns_.empty() && pn > largest_recv_ + 1) ack_now_ = true;
    largest_recv_ = pn;
    largest_recv_at_ = now;
  } else {
    ack_now_ = true;  // it filled a hole
  }
  recv_pns_.add(pn, pn + 1);
  while (recv_pns_.count() > kMaxRecvRanges) {
    recv_floor_ = recv_pns_.front().high;
    recv_pns_.pop_front();
  }
  if (eliciting && state_ != State::kDraining) {
    if (!ack_needed_) ack_due_ = now + opts_.max_ack_delay;
    ack_needed_ = true;
    if (++unacked_eliciting_ >= 2) ack_now_ = true;
  }
  if (ack_now_ || max_data_dirty_) schedule_flush();
  arm_timer();
}

void Session::on_ack(const std::vector<AckRange>& ranges, uint64_t delay_us,
                     const EcnCounts* ecn) {
  const uint64_t largest = ranges[0].high;
  if (largest >= next_pn_) {
    protocol_error("ACK of a packet never sent");
    return;
  }
  const Clock::time_point now = time();
  uint64_t bytes_acked = 0;
  const uint64_t prior_in_flight = bytes_in_flight_;
  rate_.begin_ack();
  bool largest_newly = false;
  Clock::time_point largest_sent{};
  uint64_t newly_ect = 0;
  for (const AckRange& r : ranges) {
    acked_pns_.add(r.low, r.high + 1);
    // Declared lost, yet it arrived: the loss was spurious (reordering or
    // a delay spike, not congestion).
    for (auto it = lost_pns_.lower_bound(r.low); it != lost_pns_.end() && it->first <= r.high;) {
      ++stats_.spurious;
      cc_->on_spurious(now);
      // The path reorders more than the thresholds allow: widen them
      // (RFC 9002 §6.1.1 and §6.1.2 allow adaptive thresholds; Linux's
      // RACK does the same with its reordering window).
      if (it->second.by_time) {
        time_threshold_eighths_ =
            std::min(kMaxTimeThresholdEighths, time_threshold_eighths_ + 2);
      } else {
        packet_threshold_ = std::min(
            kMaxPacketThreshold,
            std::max(packet_threshold_, it->second.largest_acked - it->first + 1));
      }
      it = lost_pns_.erase(it);
    }
    for (auto it = sent_.lower_bound(r.low); it != sent_.end() && it->first <= r.high;) {
      const SentPacket& p = it->second;
      if (it->first == largest) {
        largest_newly = true;
        largest_sent = p.sent;
      }
      bytes_in_flight_ -= p.bytes;
      bytes_acked += p.bytes;
      if (p.ect) ++newly_ect;
      rate_.on_acked(now, p.sent, p.bytes, p.rate);
      if (p.len) acked_.add(p.offset, p.offset + p.len);
      if (p.fin && !fin_acked_) {
        fin_acked_ = true;
        fin_acked_at_ = now;
      }
      it = NodePool<std::map<uint64_t, SentPacket>>::erase(sent_, it);
    }
  }
  if (acked_pns_.count() > 256) acked_pns_.pop_front();
  const bool largest_raised = !largest_acked_ || largest > *largest_acked_;
  if (largest_raised) {
    largest_acked_ = largest;
    if (largest_newly) largest_acked_sent_ = largest_sent;
  }
  if (bytes_acked == 0) return;  // nothing new: RFC 9002 §6.1 acts on new acks only
  if (largest_newly) {
    // RFC 9002 §5.1: a sample from the largest newly acknowledged packet,
    // the peer's ACK delay capped at the max_ack_delay it announced.
    // Capped in integers first: a hostile delay field must not overflow
    // the conversion to nanoseconds.
    const uint64_t cap_us = peer_params_.max_ack_delay_ms * 1000;
    const Duration ack_delay = std::chrono::microseconds(std::min(delay_us, cap_us));
    rtt_.on_sample(now - largest_sent, ack_delay);
  }
  // Acknowledged bytes at the front free the send buffer.
  while (!acked_.empty() && acked_.front().low <= sbase_) {
    const uint64_t hi = acked_.front().high;
    acked_.pop_front();
    if (hi > sbase_) {
      sbuf_.drop_front(hi - sbase_);
      sbase_ = hi;
    }
  }
  retx_.remove(0, sbase_);
  pto_count_ = 0;  // RFC 9002 §6.2.1
  probes_ = 0;
  // RFC 9000 §13.4.2.1: counts are read only from an ACK that raises the
  // largest acknowledged (an older, reordered one may carry smaller ones).
  if (largest_raised && largest_newly) process_ecn(ecn, newly_ect, largest_sent);
  detect_lost();
  cc::AckEvent ev;
  ev.now = now;
  ev.bytes_acked = bytes_acked;
  ev.prior_in_flight = prior_in_flight;
  ev.bytes_in_flight = bytes_in_flight_;
  ev.largest_sent = largest_newly ? largest_sent : largest_acked_sent_;
  ev.has_rtt_sample = largest_newly;
  ev.rtt_sample = rtt_.latest();
  ev.rtt = &rtt_;
  ev.delivered = rate_.delivered();
  ev.rate = rate_.finish(rtt_.min());
  if (ev.rate.delivery_rate != 0) last_delivery_rate_ = ev.rate.delivery_rate;
  ev.app_limited = rate_.app_limited();
  cc_->on_ack(ev);
  take_output();  // room in the send buffer
  maybe_finish_close();
  schedule_flush();
}

void Session::process_ecn(const EcnCounts* ecn, uint64_t newly_ect,
                          Clock::time_point largest_sent) {
  if (ecn && !ecn_counts_advance(peer_ecn_, *ecn)) return fail_ecn("ECN counts went backwards");
  if (!ecn_marking_) {
    if (ecn) peer_ecn_ = *ecn;
    return;
  }
  if (newly_ect > 0 && !ecn) return fail_ecn("ECT packets acknowledged without ECN counts");
  if (!ecn) return;
  const EcnCounts before = peer_ecn_;
  peer_ecn_ = *ecn;
  // We send ECT(0) only: ECT(1) reports mean the path (or the peer)
  // mangles the bits; and every newly acknowledged ECT(0) packet must show
  // up as ECT(0) or CE (a path that bleaches the bits fails here).
  if (ecn->ect1 > before.ect1) return fail_ecn("our ECT(0) packets reported as ECT(1)");
  if ((ecn->ect0 - before.ect0) + (ecn->ce - before.ce) < newly_ect) {
    return fail_ecn("ECN counts grew less than the ECT(0) packets acknowledged");
  }
  if (ecn->ce > before.ce) {
    stats_.ecn_ce += ecn->ce - before.ce;
    cc::LossEvent ev;
    ev.now = time();
    ev.bytes_lost = 0;
    ev.bytes_in_flight = bytes_in_flight_;
    ev.largest_lost_sent = largest_sent;
    ev.delivered = rate_.delivered();
    cc_->on_ecn_ce(ev);
  }
}

void Session::fail_ecn(const char* why) {
  if (!ecn_marking_) return;
  ecn_marking_ = false;
  stats_.ecn_failed = true;
  spdlog::debug("rudp {:08x}: ECN validation failed ({}): loss-based only from now on", local_id_,
                why);
  host_.ecn_failed(*this);
}

void Session::detect_lost() {
  // RFC 9002 §6.1 (Appendix A.10's DetectAndRemoveLostPackets).
  loss_time_.reset();
  if (!largest_acked_) return;
  const Clock::time_point now = time();
  const Duration loss_delay =
      std::max<Duration>(std::max(rtt_.latest(), rtt_.smoothed()) * time_threshold_eighths_ / 8,
                         RttEstimator::kGranularity);
  const Clock::time_point lost_before = now - loss_delay;
  uint64_t bytes_lost = 0;
  std::optional<uint64_t> first_lost, last_lost;
  Clock::time_point first_sent{}, last_sent{};
  for (auto it = sent_.begin(); it != sent_.end() && it->first <= *largest_acked_;) {
    const SentPacket& p = it->second;
    const bool by_count = *largest_acked_ >= it->first + packet_threshold_;
    if (p.sent <= lost_before || by_count) {
      if (!first_lost) {
        first_lost = it->first;
        first_sent = p.sent;
      }
      last_lost = it->first;
      last_sent = p.sent;
      bytes_lost += p.bytes;
      auto next = std::next(it);
      declare_lost(it, !by_count);
      it = next;
    } else {
      const Clock::time_point when = p.sent + loss_delay;
      if (!loss_time_ || when < *loss_time_) loss_time_ = when;
      ++it;
    }
  }
  if (bytes_lost == 0) return;
  cc::LossEvent ev;
  ev.now = now;
  ev.bytes_lost = bytes_lost;
  ev.bytes_in_flight = bytes_in_flight_;
  ev.largest_lost_sent = last_sent;
  ev.delivered = rate_.delivered();
  cc_->on_loss(ev);
  // RFC 9002 §7.6: persistent congestion when the lost packets span more
  // than three PTOs (without backoff) and nothing sent between the first
  // and the last was acknowledged.
  if (rtt_.has_sample() && *last_lost != *first_lost) {
    const Duration span = kPersistentCongestionThreshold * pto_base();
    RangeSet::Range r{};
    const bool acked_between =
        acked_pns_.next_above(*first_lost, &r) != nullptr && r.low < *last_lost;
    if (last_sent - first_sent > span && !acked_between) {
      ++stats_.persistent_congestion;
      cc_->on_persistent_congestion(now);
    }
  }
  schedule_flush();
}

void Session::declare_lost(std::map<uint64_t, SentPacket>::iterator it, bool by_time) {
  const SentPacket& p = it->second;
  bytes_in_flight_ -= p.bytes;
  rate_.on_lost(p.bytes);
  ++stats_.packets_lost;
  if (p.len) retx_.add(p.offset, p.offset + p.len);
  if (p.fin) fin_resend_ = true;
  if (p.max_data) max_data_dirty_ = true;
  lost_pns_.emplace(it->first, LostInfo{*largest_acked_, by_time});
  if (lost_pns_.size() > kMaxLostKept) lost_pns_.erase(lost_pns_.begin());
  NodePool<std::map<uint64_t, SentPacket>>::erase(sent_, it);
}

void Session::on_stream(uint64_t offset, std::string_view data, bool fin) {
  const uint64_t end = offset + data.size();
  if (fin) {
    if (peer_fin_at_ && *peer_fin_at_ != end) return protocol_error("stream end moved");
    // RFC 9000 §4.5: an end below bytes already received is a lie too.
    if (end < recv_max_) return protocol_error("stream end below data received");
    peer_fin_at_ = end;
  }
  if (peer_fin_at_ && end > *peer_fin_at_) return protocol_error("data past the stream end");
  recv_max_ = std::max(recv_max_, end);
  // RFC 9000 §4.1: a peer that exceeds the advertised limit is broken.
  if (end > max_data_sent_) return protocol_error("flow control limit exceeded");
  const uint64_t contig = rbase_ + rready_.readable();
  if (end > contig) {
    if (offset > contig) {
      store_out_of_order(offset, data);
    } else {
      data.remove_prefix(contig - offset);
      if (conn_ && conn_->want_read() && rready_.empty() && rooo_.empty() && !delivering_) {
        // In order, nothing waiting: straight from the datagram.
        rbase_ += data.size();
        delivering_ = true;
        conn_->on_input(data);
        delivering_ = false;
      } else {
        rready_.append(data);
      }
      // Out-of-order bytes that now join up.
      uint64_t have = rbase_ + rready_.readable();
      while (!rooo_.empty() && rooo_.begin()->first <= have) {
        auto it = rooo_.begin();
        const uint64_t seg_end = it->first + it->second.size();
        if (seg_end > have) {
          rready_.append(it->second.data() + (have - it->first), seg_end - have);
          have = seg_end;
        }
        rooo_ranges_.remove(it->first, seg_end);
        rooo_.erase(it);
      }
    }
  }
  deliver();
  maybe_finish_close();
}

void Session::store_out_of_order(uint64_t offset, std::string_view data) {
  // Keep only the bytes not held already: entries stay disjoint, and the
  // total stays below the window (every byte is under max_data_sent_).
  const uint64_t end = offset + data.size();
  uint64_t cur = offset;
  while (cur < end) {
    RangeSet::Range r{};
    const bool found = rooo_ranges_.next_above(cur, &r) != nullptr;
    if (found && r.low <= cur) {
      cur = r.high;
      continue;
    }
    const uint64_t stop = found ? std::min(r.low, end) : end;
    rooo_.emplace(cur, std::string(data.substr(cur - offset, stop - cur)));
    rooo_ranges_.add(cur, stop);
    cur = stop;
  }
}

void Session::deliver() {
  if (delivering_) return;
  delivering_ = true;
  if (!conn_ && state_ != State::kOpen) {
    // Closing: nothing takes input any more; acknowledge and forget it.
    rbase_ += rready_.readable();
    rready_.retrieve_all();
  }
  while (conn_ && conn_->want_read() && !rready_.empty()) {
    // The connection takes the whole view (it keeps an incomplete
    // message's tail itself), so rready_ empties in one call.
    const size_t n = rready_.readable();
    rbase_ += n;
    conn_->on_input(rready_.view());
    rready_.retrieve(n);
  }
  if (rready_.empty()) rready_.release();
  delivering_ = false;
  if (conn_ && !eof_delivered_ && rready_.empty() &&
      ((peer_fin_at_ && rbase_ >= *peer_fin_at_) || peer_closed_)) {
    eof_delivered_ = true;
    conn_->on_eof();
  }
  maybe_open_window();
}

void Session::maybe_open_window() {
  // RFC 9000 §4.2: raise the limit once half the window is used, so the
  // sender never stalls on a window the reader has already freed.
  if (state_ != State::kOpen && state_ != State::kClosing) return;
  if (max_data_sent_ - rbase_ > opts_.window / 2) return;
  max_data_sent_ = rbase_ + opts_.window;
  max_data_dirty_ = true;
  schedule_flush();
}

void Session::on_unreliable(uint64_t seq, std::string_view data) {
  // Never twice, never after a later one: only a higher sequence passes.
  if (any_unreliable_ && seq <= last_unreliable_) {
    ++stats_.unreliable_dropped;
    return;
  }
  any_unreliable_ = true;
  last_unreliable_ = seq;
  if (!conn_ || !conn_->want_read()) {
    ++stats_.unreliable_dropped;  // paused: unreliable input is not kept
    return;
  }
  const io::Datagram d{peer_addr(), peer_len_, data};
  conn_->on_datagram(d);
}

}  // namespace sluice::rudp
