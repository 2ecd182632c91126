// RttEstimator: smoothed RTT, RTT variance and minimum RTT from ACKs, as
// RFC 9002 §5 (which refines RFC 6298 §2 with the peer's ACK delay and a
// minimum RTT), and the probe timeout derived from them (§6.2.1).
//
// Thread rules: a value owned by one connection; its loop thread.
#pragma once

#include <chrono>

namespace sluice::rudp {

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;

class RttEstimator {
 public:
  // RFC 9002 §6.2.2: 333 ms before any sample. Tests and LANs may pick less.
  explicit RttEstimator(Duration initial = std::chrono::milliseconds(333));

  // A sample: the time from sending the newly largest acknowledged,
  // ack-eliciting packet to its ACK, and the delay the peer reports it
  // held the ACK (capped at its max_ack_delay by the caller).
  void on_sample(Duration latest, Duration ack_delay);

  bool has_sample() const { return samples_ > 0; }
  Duration latest() const { return latest_; }
  Duration smoothed() const { return smoothed_; }
  Duration variance() const { return variance_; }
  Duration min() const { return min_; }
  uint64_t samples() const { return samples_; }
  // smoothed + max(4 x variance, granularity) + max_ack_delay, not backed
  // off (§6.2.1); the sender doubles it per consecutive probe timeout.
  Duration pto(Duration max_ack_delay) const;

  static constexpr Duration kGranularity = std::chrono::milliseconds(1);

 private:
  Duration latest_{};
  Duration smoothed_;
  Duration variance_;
  Duration min_{};
  uint64_t samples_ = 0;
};

}  // namespace sluice::rudp
