// Fixed window: the first controller, and the baseline the others are
// measured against. The window never moves, whatever ACKs and losses say;
// pacing, when configured, is a constant rate. Loss recovery still works
// (retransmission is the sender's job), so on a link whose capacity is
// below window/RTT it over-drives the bottleneck queue: that is the point
// of comparing it with real controllers.
#pragma once

#include "rudp/cc/controller.h"

namespace sluice::rudp::cc {

class Fixed final : public Controller {
 public:
  explicit Fixed(const Config& cfg);
  std::string_view name() const override { return "fixed"; }
  void on_sent(Clock::time_point, uint64_t, uint64_t) override {}
  void on_ack(const AckEvent&) override {}
  void on_loss(const LossEvent&) override {}
  void on_persistent_congestion(Clock::time_point) override {}
  uint64_t cwnd() const override { return window_; }
  uint64_t pacing_rate() const override { return rate_; }

 private:
  uint64_t window_;
  uint64_t rate_;
};

}  // namespace sluice::rudp::cc
