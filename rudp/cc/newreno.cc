#include "rudp/cc/newreno.h"

#include <algorithm>

namespace sluice::rudp::cc {

NewReno::NewReno(const Config& cfg)
    : max_datagram_(cfg.max_datagram),
      min_window_(cfg.min_window_packets * cfg.max_datagram),
      cwnd_(cfg.initial_window_packets * cfg.max_datagram) {}

void NewReno::on_ack(const AckEvent& ev) {
  if (ev.rtt && ev.rtt->has_sample()) srtt_ = ev.rtt->smoothed();
  if (in_recovery_for(ev.largest_sent)) return;  // §7.3.2 / B.5
  // A packet sent after recovery began is acknowledged: the period is over
  // (its reduction can no longer be undone).
  recovering_ = false;
  undo_.reset();
  if (ev.app_limited) return;  // §7.8
  uint64_t bytes = ev.bytes_acked;
  if (cwnd_ < ssthresh_) {
    // §7.3.1; the part that crosses ssthresh counts as avoidance.
    const uint64_t grow = std::min(bytes, ssthresh_ - cwnd_);
    cwnd_ += grow;
    bytes -= grow;
  }
  if (bytes == 0) return;
  // §7.3.3: cwnd += max_datagram * bytes / cwnd, with the remainder kept.
  ca_acked_ += bytes;
  while (ca_acked_ >= cwnd_) {
    ca_acked_ -= cwnd_;
    cwnd_ += max_datagram_;
  }
}

void NewReno::on_loss(const LossEvent& ev) {
  // B.6: one reduction per recovery period; losses of packets sent before
  // it began are part of the same congestion event.
  if (in_recovery_for(ev.largest_lost_sent)) return;
  undo_ = Undo{cwnd_, ssthresh_, recovery_start_};
  recovery_start_ = ev.now;
  recovering_ = true;
  ssthresh_ = std::max(static_cast<uint64_t>(cwnd_ * kLossReductionFactor), min_window_);
  cwnd_ = ssthresh_;
  ca_acked_ = 0;
}

void NewReno::on_persistent_congestion(Clock::time_point) {
  // B.8: the minimum window, and the next loss starts a new period.
  cwnd_ = min_window_;
  ca_acked_ = 0;
  recovery_start_.reset();
  recovering_ = false;
  undo_.reset();
}

void NewReno::on_spurious(Clock::time_point) {
  // The loss that cut the window was not one: put back what it replaced,
  // as long as its recovery period lasts. This is Linux's undo
  // (tcp_try_undo_recovery) and RFC 4015's Eifel response.
  if (!recovering_ || !undo_) return;
  cwnd_ = std::max(cwnd_, undo_->cwnd);
  ssthresh_ = undo_->ssthresh;
  recovery_start_ = undo_->recovery_start;
  recovering_ = false;
  ca_acked_ = 0;
  undo_.reset();
}

uint64_t NewReno::pacing_rate() const {
  if (srtt_ <= Duration::zero()) return 0;
  // Linux's sk_pacing_rate and quiche: a little over cwnd per RTT so the
  // window, not the pacer, is the limit; twice that while it doubles.
  const double factor = cwnd_ < ssthresh_ ? 2.0 : 1.25;
  return static_cast<uint64_t>(factor * static_cast<double>(cwnd_) * 1e9 /
                               static_cast<double>(srtt_.count()));
}

std::string_view NewReno::state() const {
  if (recovering_) return "recovery";
  return cwnd_ < ssthresh_ ? "slow_start" : "congestion_avoidance";
}

}  // namespace sluice::rudp::cc
