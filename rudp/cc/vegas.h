// TCP Vegas (Brakmo & Peterson, "TCP Vegas: End to End Congestion
// Avoidance on a Global Internet", IEEE JSAC 1995; Linux's tcp_vegas.c):
// a delay-based window. BaseRTT is the smallest RTT seen; once a round
// trip, with that round's smallest RTT,
//   diff = (expected - actual) x BaseRTT = cwnd x (RTT - BaseRTT) / RTT
// is how many of our packets wait in the bottleneck queue. Congestion
// avoidance keeps it between alpha and beta packets (cwnd +-1 packet per
// round); slow start doubles cwnd every other round (the rounds between
// measure an RTT the growth has not disturbed) and ends once diff exceeds
// gamma. Loss still halves the window, NewReno-style, once per recovery
// period (RFC 9002 §7.3.2).
//
// Thread rules: as controller.h.
#pragma once

#include <cstdint>

#include "rudp/cc/controller.h"

namespace sluice::rudp::cc {

class Vegas final : public Controller {
 public:
  explicit Vegas(const Config& cfg);
  std::string_view name() const override { return "vegas"; }
  void on_sent(Clock::time_point, uint64_t, uint64_t) override {}
  void on_ack(const AckEvent& ev) override;
  void on_loss(const LossEvent& ev) override;
  void on_persistent_congestion(Clock::time_point now) override;
  uint64_t cwnd() const override { return cwnd_; }
  uint64_t pacing_rate() const override;
  std::string_view state() const override;

  // For stats and tests.
  Duration base_rtt() const { return base_rtt_; }
  uint64_t ssthresh() const { return ssthresh_; }
  double last_diff() const { return last_diff_; }  // packets, at the last round's end

 private:
  void on_round_end();
  uint64_t min_window() const { return min_window_packets_ * mss_; }

  const uint64_t mss_;
  const uint64_t min_window_packets_;
  const double alpha_;
  const double beta_;
  static constexpr double kGamma = 1;  // packets: slow start ends above it

  uint64_t cwnd_;
  uint64_t ssthresh_ = UINT64_MAX;
  bool slow_start_ = true;
  bool grow_round_ = true;  // slow start grows in every other round
  Duration base_rtt_{};     // 0: no sample yet
  Duration srtt_{};         // for pacing; 0: none yet
  double last_diff_ = 0;

  // The current round trip (controller.h's round rule).
  uint64_t next_round_delivered_ = 0;
  Duration round_min_rtt_{};
  uint64_t round_samples_ = 0;
  bool round_app_limited_ = false;

  // RFC 9002 §7.3.2's recovery period.
  bool in_recovery_ = false;
  Clock::time_point recovery_start_{};
};

}  // namespace sluice::rudp::cc
