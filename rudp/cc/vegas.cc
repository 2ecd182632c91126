#include "rudp/cc/vegas.h"

#include <algorithm>

namespace sluice::rudp::cc {

Vegas::Vegas(const Config& cfg)
    : mss_(cfg.max_datagram),
      min_window_packets_(cfg.min_window_packets),
      alpha_(static_cast<double>(cfg.vegas_alpha)),
      beta_(static_cast<double>(cfg.vegas_beta)),
      cwnd_(cfg.initial_window_packets * cfg.max_datagram) {}

std::string_view Vegas::state() const {
  if (in_recovery_) return "recovery";
  return slow_start_ ? "slow_start" : "vegas";
}

// cwnd per smoothed RTT, with headroom (2 in slow start, which must reach
// the doubled window within the round; 1.25 after) so pacing smooths
// bursts without becoming the limit.
uint64_t Vegas::pacing_rate() const {
  if (srtt_ <= Duration::zero()) return 0;
  const double gain = slow_start_ && !in_recovery_ ? 2.0 : 1.25;
  return static_cast<uint64_t>(gain * static_cast<double>(cwnd_) * 1e9 /
                               static_cast<double>(srtt_.count()));
}

void Vegas::on_ack(const AckEvent& ev) {
  if (ev.rtt->has_sample()) srtt_ = ev.rtt->smoothed();
  Duration rtt = ev.rate.rtt;
  if (rtt <= Duration::zero() && ev.has_rtt_sample) rtt = ev.rtt_sample;
  if (rtt > Duration::zero()) {
    if (base_rtt_ == Duration::zero() || rtt < base_rtt_) base_rtt_ = rtt;
    if (round_samples_ == 0 || rtt < round_min_rtt_) round_min_rtt_ = rtt;
    ++round_samples_;
  }
  round_app_limited_ = round_app_limited_ || ev.app_limited;
  // RFC 9002 §7.3.2: recovery ends with the ACK of a packet sent after
  // it began.
  if (in_recovery_ && ev.largest_sent > recovery_start_) in_recovery_ = false;

  if (ev.rate.delivered > 0 && ev.rate.prior_delivered >= next_round_delivered_) {
    next_round_delivered_ = ev.delivered;
    on_round_end();
    round_samples_ = 0;
    round_app_limited_ = false;
    return;
  }
  // Slow start's growing round: each ACK adds what it acknowledged, so the
  // window doubles over the round (RFC 9002 §7.3.1), up to ssthresh.
  if (slow_start_ && grow_round_ && !in_recovery_ && !ev.app_limited) {
    cwnd_ = std::min(cwnd_ + ev.bytes_acked, std::max(ssthresh_, min_window()));
    if (cwnd_ >= ssthresh_) slow_start_ = false;
  }
}

// Once per round trip: Linux's tcp_vegas_cong_avoid.
void Vegas::on_round_end() {
  if (in_recovery_) return;  // the window is NewReno's until recovery ends
  if (round_samples_ <= 2 || base_rtt_ <= Duration::zero()) {
    // Too few RTT samples to tell queueing from noise (Linux: cntRTT <= 2):
    // Reno's behaviour, slow start or one packet per round.
    if (slow_start_) {
      grow_round_ = true;
    } else if (!round_app_limited_) {
      cwnd_ += mss_;
    }
    return;
  }
  const double rtt = static_cast<double>(round_min_rtt_.count());
  const double base = static_cast<double>(base_rtt_.count());
  const double cwnd_pkts = static_cast<double>(cwnd_) / static_cast<double>(mss_);
  // Expected minus actual rate, times BaseRTT: our packets in the queue.
  const double diff = rtt > 0 ? cwnd_pkts * (rtt - base) / rtt : 0;
  last_diff_ = diff;
  if (slow_start_) {
    if (diff > kGamma) {
      // The queue is building: leave slow start with the window that
      // would keep about gamma queued (Linux: the expected-rate window
      // plus one packet).
      const uint64_t target = static_cast<uint64_t>(static_cast<double>(cwnd_) * base / rtt);
      cwnd_ = std::min(cwnd_, target + mss_);
      ssthresh_ = std::min(ssthresh_, cwnd_ > mss_ ? cwnd_ - mss_ : mss_);
      slow_start_ = false;
    } else {
      grow_round_ = !grow_round_;
    }
  } else if (diff > beta_) {
    cwnd_ = cwnd_ > mss_ ? cwnd_ - mss_ : 0;
    ssthresh_ = std::min(ssthresh_, cwnd_ > mss_ ? cwnd_ - mss_ : mss_);
  } else if (diff < alpha_ && !round_app_limited_) {
    // RFC 9002 §7.8: an under-used window must not grow.
    cwnd_ += mss_;
  }
  cwnd_ = std::max(cwnd_, min_window());
}

// NewReno's response (RFC 9002 §7.3.2, Appendix B.5/B.6): halve once per
// recovery period; losses of packets sent before it began are the same
// congestion event.
void Vegas::on_loss(const LossEvent& ev) {
  if (in_recovery_ && ev.largest_lost_sent <= recovery_start_) return;
  in_recovery_ = true;
  recovery_start_ = ev.now;
  cwnd_ = std::max(cwnd_ / 2, min_window());
  ssthresh_ = cwnd_;
  slow_start_ = false;
}

// RFC 9002 §7.6.2: the minimum window, then slow start to ssthresh.
void Vegas::on_persistent_congestion(Clock::time_point now) {
  (void)now;
  cwnd_ = min_window();
  in_recovery_ = false;
  slow_start_ = true;
  grow_round_ = true;
}

}  // namespace sluice::rudp::cc
