#include "rudp/cc/cubic.h"

#include <algorithm>
#include <cmath>

namespace sluice::rudp::cc {

namespace {

double seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

Cubic::Cubic(const Config& cfg)
    : max_datagram_(cfg.max_datagram),
      min_window_(cfg.min_window_packets * cfg.max_datagram),
      use_hystart_(cfg.hystart),
      cwnd_(cfg.initial_window_packets * cfg.max_datagram) {
  if (!use_hystart_) hystart_.stop();
}

double Cubic::w_cubic(double t) const {
  const double d = t - curve_.k;
  return kC * d * d * d + curve_.origin;
}

void Cubic::on_ack(const AckEvent& ev) {
  if (ev.rtt && ev.rtt->has_sample()) srtt_ = ev.rtt->smoothed();
  if (in_recovery_for(ev.largest_sent)) {  // RFC 9002 §7.3.2
    last_ack_ = ev.now;
    return;
  }
  recovering_ = false;
  undo_.reset();
  if (ev.app_limited) {
    // RFC 9002 §7.8 / RFC 9438 §5.8: no growth on an under-used window,
    // and the time it stays under-used is not part of the curve's t.
    if (curve_.epoch_start && last_ack_) *curve_.epoch_start += ev.now - *last_ack_;
    last_ack_ = ev.now;
    return;
  }
  last_ack_ = ev.now;
  if (cwnd_ < ssthresh_) {
    uint64_t grow = ev.bytes_acked;
    if (hystart_.phase() != HystartPP::Phase::kDone) {
      if (hystart_.on_ack(ev) == HystartPP::Phase::kDone) {
        ssthresh_ = cwnd_;  // RFC 9406 §4.2: CSS is over, avoidance begins
      } else {
        grow = hystart_.growth(ev.bytes_acked);
      }
    }
    if (cwnd_ < ssthresh_) {
      cwnd_ += std::min(grow, ssthresh_ - cwnd_);
      return;
    }
  }
  avoid(ev);
}

void Cubic::avoid(const AckEvent& ev) {
  Curve& c = curve_;
  const double w = seg(cwnd_);
  if (!c.epoch_start) {
    // §4.2: a new epoch; the curve starts at the current window and
    // plateaus at W_max (at once, K = 0, when the window is already above
    // it, e.g. after HyStart++ left slow start without a loss). With
    // cwnd_epoch = beta * W_max this is K = cbrt(W_max * (1 - beta) / C).
    c.epoch_start = ev.now;
    c.origin = std::max(c.w_max, w);
    c.k = std::cbrt((c.origin - w) / kC);
    c.w_est = w;
    grow_bytes_ = 0;
  }
  const double t = seconds(ev.now - *c.epoch_start);
  const double acked = seg(ev.bytes_acked);
  // §4.3: the Reno-friendly estimate, at Reno's average rate for beta 0.7,
  // then Reno's own once it is past the window of the last reduction.
  c.w_est += (c.w_est >= c.cwnd_prior ? 1.0 : kAlpha) * acked / w;
  if (w_cubic(t) < c.w_est) {
    const auto est = static_cast<uint64_t>(c.w_est * static_cast<double>(max_datagram_));
    cwnd_ = std::max(cwnd_, est);
    return;
  }
  // §4.2 (concave and convex regions): aim at where the curve will be one
  // RTT from now, no lower than cwnd and no more than 1.5 x cwnd, and close
  // the gap over one window of ACKs.
  const double target = std::clamp(w_cubic(t + seconds(srtt_)), w, 1.5 * w);
  grow_bytes_ += (target - w) / w * static_cast<double>(ev.bytes_acked);
  const double whole = std::floor(grow_bytes_);
  cwnd_ += static_cast<uint64_t>(whole);
  grow_bytes_ -= whole;
}

void Cubic::on_loss(const LossEvent& ev) {
  // One reduction per recovery period (RFC 9002 §7.3.2).
  if (in_recovery_for(ev.largest_lost_sent)) return;
  undo_ = Undo{cwnd_, ssthresh_, curve_};
  recovering_ = true;
  hystart_.stop();  // RFC 9406 §4.2: a loss ends slow start and CSS
  Curve& c = curve_;
  const double w = seg(cwnd_);
  c.recovery_start = ev.now;
  c.cwnd_prior = w;
  // §4.7 fast convergence: a loss below the last W_max means others want
  // more of the link; plateau lower to give it to them.
  c.w_max = w < c.w_max ? w * (1 + kBeta) / 2 : w;
  // §4.6 multiplicative decrease.
  ssthresh_ = std::max(static_cast<uint64_t>(static_cast<double>(cwnd_) * kBeta), min_window_);
  cwnd_ = ssthresh_;
  c.epoch_start.reset();
}

void Cubic::on_persistent_congestion(Clock::time_point) {
  // §4.8 (RFC 9002 §7.6.2 for QUIC): the minimum window, slow start back
  // to ssthresh, and a fresh epoch after it.
  cwnd_ = min_window_;
  curve_.epoch_start.reset();
  curve_.recovery_start.reset();
  recovering_ = false;
  undo_.reset();
}

void Cubic::on_spurious(Clock::time_point) {
  // §4.9: the reduction was for nothing; restore the window, ssthresh and
  // the curve (W_max, K, epoch) as they were before it.
  if (!recovering_ || !undo_) return;
  cwnd_ = std::max(cwnd_, undo_->cwnd);
  ssthresh_ = undo_->ssthresh;
  curve_ = undo_->curve;
  recovering_ = false;
  undo_.reset();
}

uint64_t Cubic::pacing_rate() const {
  if (srtt_ <= Duration::zero()) return 0;
  // As NewReno (Linux, quiche): 2 x cwnd/RTT below ssthresh, 1.25 x above.
  const double factor = cwnd_ < ssthresh_ ? 2.0 : 1.25;
  return static_cast<uint64_t>(factor * static_cast<double>(cwnd_) / seconds(srtt_));
}

std::string_view Cubic::state() const {
  if (recovering_) return "recovery";
  if (cwnd_ >= ssthresh_) return "congestion_avoidance";
  return hystart_.phase() == HystartPP::Phase::kCss ? "css" : "slow_start";
}

}  // namespace sluice::rudp::cc
