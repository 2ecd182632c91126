// BBR v1, after draft-cardwell-iccrg-bbr-congestion-control-00 (the
// algorithm of Linux's tcp_bbr.c): a model of the path, its bottleneck
// bandwidth (BtlBw, a windowed max of delivery-rate samples over 10
// round trips) and its round-trip propagation time (RTprop, the minimum
// RTT over 10 s), and a state machine that paces at gain x BtlBw and keeps
// about gain x BtlBw x RTprop in flight, probing now and then for more
// bandwidth (PROBE_BW's 1.25 phase) and for a lower RTT (PROBE_RTT).
//
// Loss: v1's only response is packet conservation during recovery
// (§4.2.3.4); it does not treat loss as a congestion signal, which is why
// random (non-congestive) loss costs it little. BBRv2's loss-rate bound
// (inflight_hi) is left out on purpose: v1 keeps near-full rate at 5%
// random loss (tests/rudp_cc_model_test), and a loss response would have
// to tell such background loss from congestion.
//
// § numbers name draft-00's sections; its pseudocode's function names
// (BBRInflight, BBRHandleProbeRTT, ...) are given where they help.
//
// Thread rules: as controller.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

#include "rudp/cc/controller.h"
#include "rudp/cc/windowed_filter.h"

namespace sluice::rudp::cc {

class Bbr final : public Controller {
 public:
  explicit Bbr(const Config& cfg);
  std::string_view name() const override { return "bbr"; }
  void on_sent(Clock::time_point now, uint64_t bytes, uint64_t bytes_in_flight) override;
  void on_ack(const AckEvent& ev) override;
  void on_loss(const LossEvent& ev) override;
  // BBR v1 does not react to ECN (neither does Linux's v1): a CE mark is
  // not a loss to recover from.
  void on_ecn_ce(const LossEvent&) override {}
  void on_persistent_congestion(Clock::time_point now) override;
  uint64_t cwnd() const override { return cwnd_; }
  uint64_t pacing_rate() const override { return pacing_rate_; }
  std::string_view state() const override;

  // The model, for stats and tests: bytes/s (0: no sample yet) and the
  // minimum RTT (0: none yet).
  uint64_t btl_bw() const { return btl_bw_.best(); }
  Duration rtprop() const { return has_rtprop_ ? rtprop_ : Duration::zero(); }
  // When RTprop was last measured (or confirmed by an equal sample).
  Clock::time_point rtprop_stamp() const { return rtprop_stamp_; }
  bool filled_pipe() const { return filled_pipe_; }
  uint64_t round_count() const { return round_count_; }

 private:
  enum class Mode { kStartup, kDrain, kProbeBw, kProbeRtt };

  void update_round(const AckEvent& ev);
  void update_btl_bw(const AckEvent& ev);
  void check_cycle_phase(const AckEvent& ev);
  void check_full_pipe(const AckEvent& ev);
  void check_drain(const AckEvent& ev);
  void update_rtprop(const AckEvent& ev);
  void check_probe_rtt(const AckEvent& ev);
  void handle_probe_rtt(const AckEvent& ev);
  void set_pacing_rate(double gain);
  void set_cwnd(const AckEvent& ev);

  void enter_startup();
  void enter_probe_bw(Clock::time_point now);
  void advance_cycle_phase(Clock::time_point now);
  void exit_probe_rtt(Clock::time_point now);
  // gain x BDP + the send quanta (§4.2.3.2's BBRInflight).
  uint64_t inflight(double gain) const;
  uint64_t bdp() const;
  uint64_t min_pipe_cwnd() const { return 4 * mss_; }
  void save_cwnd();
  void restore_cwnd() { cwnd_ = std::max(cwnd_, prior_cwnd_); }
  uint32_t next_random();

  const uint64_t mss_;
  const uint64_t initial_cwnd_;
  Mode mode_ = Mode::kStartup;
  double pacing_gain_ = 0;
  double cwnd_gain_ = 0;
  uint64_t cwnd_;
  uint64_t pacing_rate_ = 0;
  uint64_t prior_cwnd_ = 0;

  // §4.1.1: BtlBw, a max over kBtlBwFilterLen round trips.
  WindowedFilter<uint64_t, std::greater_equal<uint64_t>, uint64_t, uint64_t> btl_bw_;
  uint64_t round_count_ = 0;
  uint64_t next_round_delivered_ = 0;
  bool round_start_ = false;

  // §4.1.2: RTprop, a min over kRtpropFilterLen.
  Duration rtprop_{};
  bool has_rtprop_ = false;
  Clock::time_point rtprop_stamp_{};
  bool rtprop_expired_ = false;

  // §4.3.2.2: full-pipe detection.
  bool filled_pipe_ = false;
  uint64_t full_bw_ = 0;
  int full_bw_count_ = 0;

  // §4.3.4: PROBE_BW's gain cycle.
  int cycle_index_ = 0;
  Clock::time_point cycle_stamp_{};

  // §4.3.5: PROBE_RTT.
  Clock::time_point probe_rtt_done_stamp_{};
  bool probe_rtt_done_pending_ = false;  // probe_rtt_done_stamp_ is set
  bool probe_rtt_round_done_ = false;
  bool idle_restart_ = false;
  bool has_seen_rtt_ = false;

  // §4.2.3.4: loss recovery (an RFC 9002 §7.3.2 recovery period) and
  // packet conservation during its first round.
  bool in_recovery_ = false;
  Clock::time_point recovery_start_{};
  bool packet_conservation_ = false;
  uint64_t lost_since_ack_ = 0;

  uint64_t rng_;  // Config::seed (the endpoint draws one per connection)
};

}  // namespace sluice::rudp::cc
