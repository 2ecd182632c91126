// CUBIC (RFC 9438): after a loss the window follows a cubic of the time
// since the congestion-avoidance epoch began, concave up to the window
// where the loss came (W_max), flat there, then convex while probing for
// more; below a Reno-friendly estimate it grows like Reno instead. Slow
// start uses HyStart++ (rudp/cc/hystart.h) when Config::hystart is set.
// Recovery periods, app-limited ACKs and persistent congestion are handled
// as in NewReno (RFC 9002 §7).
//
// Windows in the formulas are in segments (bytes / max_datagram) and time
// in seconds, as the RFC writes them; cwnd() is bytes.
//
// Thread rules: one per connection, its loop thread.
#pragma once

#include <optional>

#include "rudp/cc/controller.h"
#include "rudp/cc/hystart.h"

namespace sluice::rudp::cc {

class Cubic final : public Controller {
 public:
  explicit Cubic(const Config& cfg);
  std::string_view name() const override { return "cubic"; }
  void on_sent(Clock::time_point, uint64_t, uint64_t) override {}
  void on_ack(const AckEvent& ev) override;
  void on_loss(const LossEvent& ev) override;
  void on_persistent_congestion(Clock::time_point now) override;
  void on_spurious(Clock::time_point now) override;
  uint64_t cwnd() const override { return cwnd_; }
  uint64_t pacing_rate() const override;
  std::string_view state() const override;

  // For tests and traces.
  uint64_t ssthresh() const { return ssthresh_; }
  double w_max() const { return curve_.w_max; }  // segments; 0 before any loss
  double k() const { return curve_.k; }          // seconds
  // W_cubic(t) (§4.2, eq. 1), segments, t in seconds from the epoch start.
  double w_cubic(double t) const;

  static constexpr double kC = 0.4;          // §5.1
  static constexpr double kBeta = 0.7;       // §4.6 beta_cubic
  static constexpr double kAlpha = 3 * (1 - kBeta) / (1 + kBeta);  // §4.3

 private:
  // The cubic's state: with cwnd and ssthresh, what a spurious loss puts
  // back (§4.9).
  struct Curve {
    double w_max = 0;       // §4.6/§4.7: where the last loss came
    double origin = 0;      // the curve's plateau: max(W_max, cwnd_epoch)
    double k = 0;           // §4.2 eq. 2
    double w_est = 0;       // §4.3
    double cwnd_prior = 0;  // cwnd before the last reduction (§4.3's alpha switch)
    std::optional<Clock::time_point> epoch_start;
    std::optional<Clock::time_point> recovery_start;
  };

  bool in_recovery_for(Clock::time_point sent) const {
    return curve_.recovery_start && sent <= *curve_.recovery_start;
  }
  double seg(uint64_t bytes) const {
    return static_cast<double>(bytes) / static_cast<double>(max_datagram_);
  }
  void avoid(const AckEvent& ev);

  uint64_t max_datagram_;
  uint64_t min_window_;
  bool use_hystart_;
  HystartPP hystart_;
  uint64_t cwnd_;
  uint64_t ssthresh_ = UINT64_MAX;
  Curve curve_;
  double grow_bytes_ = 0;  // cubic growth below one byte, carried
  bool recovering_ = false;
  struct Undo {
    uint64_t cwnd;
    uint64_t ssthresh;
    Curve curve;
  };
  std::optional<Undo> undo_;
  std::optional<Clock::time_point> last_ack_;
  Duration srtt_{};
};

}  // namespace sluice::rudp::cc
