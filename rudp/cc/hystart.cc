#include "rudp/cc/hystart.h"

#include <algorithm>

namespace sluice::rudp::cc {

HystartPP::Phase HystartPP::on_ack(const AckEvent& ev) {
  if (phase_ == Phase::kDone) return phase_;
  if (!started_ || ev.rate.prior_delivered >= round_end_) {
    // A new round (§4.2: "at the start of each round").
    if (started_ && phase_ == Phase::kCss && ++css_rounds_ >= kCssRounds) {
      phase_ = Phase::kDone;  // CSS ran its rounds: the rise was real
      return phase_;
    }
    started_ = true;
    round_end_ = ev.delivered;
    last_round_min_ = current_round_min_;
    current_round_min_ = kInf;
    samples_ = 0;
  }
  if (!ev.has_rtt_sample) return phase_;
  current_round_min_ = std::min(current_round_min_, ev.rtt_sample);
  ++samples_;
  if (samples_ < kNRttSample || current_round_min_ == kInf) return phase_;
  if (phase_ == Phase::kSlowStart) {
    if (last_round_min_ == kInf) return phase_;
    const Duration thresh =
        std::max(kMinRttThresh, std::min(last_round_min_ / kMinRttDivisor, kMaxRttThresh));
    if (current_round_min_ >= last_round_min_ + thresh) {
      css_baseline_ = current_round_min_;
      css_rounds_ = 0;
      phase_ = Phase::kCss;
    }
  } else if (current_round_min_ < css_baseline_) {
    // §4.2: the RTT fell back, the rise was spurious; resume slow start.
    css_baseline_ = kInf;
    phase_ = Phase::kSlowStart;
  }
  return phase_;
}

}  // namespace sluice::rudp::cc
