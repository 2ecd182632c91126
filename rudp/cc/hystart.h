// HyStart++ (RFC 9406): leave slow start before the first loss when the
// round's minimum RTT rises (a queue is building), through a Conservative
// Slow Start (CSS) that grows at a quarter of the rate for a few rounds, in
// case the rise was noise; an RTT back below the baseline during CSS
// resumes slow start.
//
// Rounds (§4.2's windowEnd) are counted on delivered bytes, as controller.h
// describes: a round ends when an acknowledged packet was sent after it
// began (rate.prior_delivered reaching the delivered count at its start).
// The sender paces, so L (the per-ACK growth cap) is infinite (§4.3).
//
// Thread rules: part of one controller; its loop thread.
#pragma once

#include "rudp/cc/controller.h"

namespace sluice::rudp::cc {

class HystartPP {
 public:
  enum class Phase { kSlowStart, kCss, kDone };

  // §4.3's constants.
  static constexpr Duration kMinRttThresh = std::chrono::milliseconds(4);
  static constexpr Duration kMaxRttThresh = std::chrono::milliseconds(16);
  static constexpr int kMinRttDivisor = 8;
  static constexpr uint64_t kNRttSample = 8;
  static constexpr uint64_t kCssGrowthDivisor = 4;
  static constexpr int kCssRounds = 5;

  // One ACK while the window is below ssthresh; returns the phase after it
  // (kDone: enter congestion avoidance with ssthresh = cwnd).
  Phase on_ack(const AckEvent& ev);
  // Slow-start growth for `bytes_acked` in the current phase.
  uint64_t growth(uint64_t bytes_acked) const {
    return phase_ == Phase::kCss ? bytes_acked / kCssGrowthDivisor : bytes_acked;
  }
  // A loss ends slow start for good (§4.2: exit to congestion avoidance).
  void stop() { phase_ = Phase::kDone; }
  Phase phase() const { return phase_; }

 private:
  static constexpr Duration kInf = Duration::max();

  Phase phase_ = Phase::kSlowStart;
  uint64_t round_end_ = 0;  // delivered count the current round began at
  bool started_ = false;
  Duration last_round_min_ = kInf;
  Duration current_round_min_ = kInf;
  uint64_t samples_ = 0;
  Duration css_baseline_ = kInf;
  int css_rounds_ = 0;  // rounds ended in CSS
};

}  // namespace sluice::rudp::cc
