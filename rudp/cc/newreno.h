// NewReno as RFC 9002 §7 and Appendix B describe it for QUIC: slow start
// (cwnd += bytes acked) up to ssthresh, congestion avoidance (one datagram
// per window acknowledged), one halving per recovery period, the minimum
// window after persistent congestion, and no growth while the application
// leaves the window under-used (§7.8).
//
// Thread rules: one per connection, its loop thread.
#pragma once

#include <optional>

#include "rudp/cc/controller.h"

namespace sluice::rudp::cc {

class NewReno final : public Controller {
 public:
  explicit NewReno(const Config& cfg);
  std::string_view name() const override { return "newreno"; }
  void on_sent(Clock::time_point, uint64_t, uint64_t) override {}
  void on_ack(const AckEvent& ev) override;
  void on_loss(const LossEvent& ev) override;
  void on_persistent_congestion(Clock::time_point now) override;
  void on_spurious(Clock::time_point now) override;
  uint64_t cwnd() const override { return cwnd_; }
  uint64_t pacing_rate() const override;
  std::string_view state() const override;

  uint64_t ssthresh() const { return ssthresh_; }

  static constexpr double kLossReductionFactor = 0.5;  // §7.3.2

 private:
  // §7.3.2: a packet sent at or before the recovery period began cannot
  // start another one, nor grow the window.
  bool in_recovery_for(Clock::time_point sent) const {
    return recovery_start_ && sent <= *recovery_start_;
  }

  uint64_t max_datagram_;
  uint64_t min_window_;
  uint64_t cwnd_;
  uint64_t ssthresh_ = UINT64_MAX;
  // Bytes acknowledged in congestion avoidance not yet turned into window:
  // cwnd grows by one datagram per cwnd bytes, exactly (RFC 3465's ABC).
  uint64_t ca_acked_ = 0;
  std::optional<Clock::time_point> recovery_start_;
  bool recovering_ = false;  // no packet sent after recovery_start_ acked yet
  Duration srtt_{};          // 0: no RTT sample yet
  // What the last reduction replaced, for on_spurious.
  struct Undo {
    uint64_t cwnd;
    uint64_t ssthresh;
    std::optional<Clock::time_point> recovery_start;
  };
  std::optional<Undo> undo_;
};

}  // namespace sluice::rudp::cc
