#include "rudp/rtt.h"

#include <algorithm>

namespace sluice::rudp {

RttEstimator::RttEstimator(Duration initial) : smoothed_(initial), variance_(initial / 2) {}

void RttEstimator::on_sample(Duration latest, Duration ack_delay) {
  latest_ = latest;
  if (samples_++ == 0) {
    // §5.3: the first sample sets everything.
    min_ = latest;
    smoothed_ = latest;
    variance_ = latest / 2;
    return;
  }
  // §5.2: min_rtt ignores the ACK delay, so it never falls below the
  // path's true minimum because of a peer's inflated delay report.
  min_ = std::min(min_, latest);
  // §5.3: subtract the peer's ACK delay only if the result stays above
  // min_rtt.
  Duration adjusted = latest;
  if (latest >= min_ + ack_delay) adjusted = latest - ack_delay;
  const Duration diff = smoothed_ > adjusted ? smoothed_ - adjusted : adjusted - smoothed_;
  // RFC 6298 §2.3 / RFC 9002 §5.3: beta 1/4, alpha 1/8.
  variance_ = (3 * variance_ + diff) / 4;
  smoothed_ = (7 * smoothed_ + adjusted) / 8;
}

Duration RttEstimator::pto(Duration max_ack_delay) const {
  return smoothed_ + std::max<Duration>(4 * variance_, kGranularity) + max_ack_delay;
}

}  // namespace sluice::rudp
