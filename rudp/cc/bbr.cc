#include "rudp/cc/bbr.h"

#include <algorithm>
#include <chrono>

namespace sluice::rudp::cc {

namespace {

// §4.3.2: 2/ln(2), the smallest gain that doubles the sending rate each
// round trip, as slow start does.
constexpr double kHighGain = 2.885390081777927;
constexpr double kDrainGain = 1 / kHighGain;  // §4.3.3
constexpr double kCwndGain = 2;               // §4.3.4
constexpr int kGainCycleLen = 8;
constexpr double kPacingMargin = 0.01;
constexpr double kPacingGainCycle[kGainCycleLen] = {1.25, 0.75, 1, 1, 1, 1, 1, 1};
constexpr uint64_t kBtlBwFilterLen = 10;  // round trips (§4.1.1)
constexpr Duration kRtpropFilterLen = std::chrono::seconds(10);       // §4.1.2
constexpr Duration kProbeRttDuration = std::chrono::milliseconds(200);  // §4.3.5
// §4.3.1: before any RTT sample the draft takes a nominal 1 ms RTT: the
// initial window then goes out in well under a millisecond, about as
// an unpaced initial window would (which RFC 9002 allows). The first RTT
// sample re-derives the rate from the real RTT (as Linux's
// bbr_init_pacing_rate_from_rtt does), so a long path is not flooded.
constexpr Duration kNominalRtt = std::chrono::milliseconds(1);

uint64_t rate_of(double gain, uint64_t bytes, Duration per) {
  if (per <= Duration::zero()) return 0;
  return static_cast<uint64_t>(gain * static_cast<double>(bytes) * 1e9 /
                               static_cast<double>(per.count()));
}

}  // namespace

Bbr::Bbr(const Config& cfg)
    : mss_(cfg.max_datagram),
      initial_cwnd_(cfg.initial_window_packets * cfg.max_datagram),
      cwnd_(initial_cwnd_),
      btl_bw_(kBtlBwFilterLen, 0) {
  rng_ = cfg.seed != 0 ? cfg.seed : 0x5bd1e9955bd1e995ULL;
  enter_startup();
  pacing_rate_ = rate_of(kHighGain, initial_cwnd_, kNominalRtt);
}

std::string_view Bbr::state() const {
  switch (mode_) {
    case Mode::kStartup: return "startup";
    case Mode::kDrain: return "drain";
    case Mode::kProbeBw: return "probe_bw";
    case Mode::kProbeRtt: return "probe_rtt";
  }
  return "";
}

void Bbr::on_sent(Clock::time_point now, uint64_t bytes, uint64_t bytes_in_flight) {
  (void)now;
  // §4.3.4.4 (restarting from idle): the first send with nothing in
  // flight. Pace at the estimated bandwidth rather than a probing or
  // draining gain, and let the idle time not count as a stale RTprop.
  if (bytes_in_flight <= bytes) {
    idle_restart_ = true;
    if (mode_ == Mode::kProbeBw) set_pacing_rate(1.0);
  }
}

void Bbr::on_ack(const AckEvent& ev) {
  // §4.2 BBRUpdateOnACK: the model and state first, then the controls.
  update_round(ev);
  update_btl_bw(ev);
  check_cycle_phase(ev);
  check_full_pipe(ev);
  check_drain(ev);
  update_rtprop(ev);
  check_probe_rtt(ev);
  if (!has_seen_rtt_ && ev.rtt->has_sample()) {
    has_seen_rtt_ = true;
    if (btl_bw() == 0 || !filled_pipe_) {
      pacing_rate_ = std::max(rate_of(kHighGain, initial_cwnd_, ev.rtt->smoothed()),
                              rate_of(pacing_gain_, btl_bw(), std::chrono::seconds(1)));
    }
  }
  set_pacing_rate(pacing_gain_);
  set_cwnd(ev);
  lost_since_ack_ = 0;
}

// §4.1.1.3: a round trip ends when a packet sent after it began is
// acknowledged.
void Bbr::update_round(const AckEvent& ev) {
  round_start_ = false;
  if (ev.rate.delivered == 0) return;  // no packet behind this sample
  if (ev.rate.prior_delivered >= next_round_delivered_) {
    next_round_delivered_ = ev.delivered;
    ++round_count_;
    round_start_ = true;
    packet_conservation_ = false;  // §4.2.3.4: one round of conservation
  }
}

// §4.1.1.5: application-limited samples may raise the estimate, never
// lower it (they say only that the path carries at least that much).
void Bbr::update_btl_bw(const AckEvent& ev) {
  const uint64_t rate = ev.rate.delivery_rate;
  if (rate == 0) return;
  if (rate >= btl_bw() || !ev.rate.is_app_limited) btl_bw_.update(rate, round_count_);
}

// §4.3.4.3 BBRIsNextCyclePhase.
void Bbr::check_cycle_phase(const AckEvent& ev) {
  if (mode_ != Mode::kProbeBw) return;
  const uint64_t prior_in_flight =
      ev.prior_in_flight != 0 ? ev.prior_in_flight : ev.bytes_in_flight + ev.bytes_acked;
  const bool full_length = ev.now - cycle_stamp_ > rtprop_;
  bool next = false;
  if (pacing_gain_ == 1) {
    next = full_length;
  } else if (pacing_gain_ > 1) {
    // Probe until the pipe holds the extra data or losses say it is full.
    next = full_length && (ev.rate.newly_lost > 0 || prior_in_flight >= inflight(pacing_gain_));
  } else {
    // Drain until the queue the probe built is gone, or one RTprop.
    next = full_length || prior_in_flight <= inflight(1.0);
  }
  if (next) advance_cycle_phase(ev.now);
}

// §4.3.2.2: the pipe is full once three rounds in a row have not raised
// BtlBw by 25%.
void Bbr::check_full_pipe(const AckEvent& ev) {
  if (filled_pipe_ || !round_start_ || ev.rate.is_app_limited) return;
  if (static_cast<double>(btl_bw()) >= static_cast<double>(full_bw_) * 1.25) {
    full_bw_ = btl_bw();
    full_bw_count_ = 0;
    return;
  }
  if (++full_bw_count_ >= 3) filled_pipe_ = true;
}

// §4.3.3: leave STARTUP for DRAIN once the pipe is full, and DRAIN once
// the queue STARTUP built is gone (in flight no more than one BDP).
void Bbr::check_drain(const AckEvent& ev) {
  if (mode_ == Mode::kStartup && filled_pipe_) {
    mode_ = Mode::kDrain;
    pacing_gain_ = kDrainGain;
    cwnd_gain_ = kHighGain;
  }
  if (mode_ == Mode::kDrain && ev.bytes_in_flight <= inflight(1.0)) enter_probe_bw(ev.now);
}

// §4.1.2.3: RTprop is the minimum RTT over 10 s; an older one gives way
// to whatever the newest sample says (and PROBE_RTT goes to measure it).
void Bbr::update_rtprop(const AckEvent& ev) {
  Duration rtt = ev.rate.rtt;
  if (rtt <= Duration::zero() && ev.has_rtt_sample) rtt = ev.rtt_sample;
  rtprop_expired_ = has_rtprop_ && ev.now > rtprop_stamp_ + kRtpropFilterLen;
  if (rtt > Duration::zero() && (!has_rtprop_ || rtt <= rtprop_ || rtprop_expired_)) {
    rtprop_ = rtt;
    rtprop_stamp_ = ev.now;
    has_rtprop_ = true;
  }
}

// §4.3.5: PROBE_RTT when RTprop has gone 10 s without a new minimum.
void Bbr::check_probe_rtt(const AckEvent& ev) {
  if (mode_ != Mode::kProbeRtt && rtprop_expired_ && !idle_restart_) {
    mode_ = Mode::kProbeRtt;
    pacing_gain_ = 1;
    cwnd_gain_ = 1;
    save_cwnd();
    probe_rtt_done_pending_ = false;
  }
  if (mode_ == Mode::kProbeRtt) handle_probe_rtt(ev);
  idle_restart_ = false;
}

// §4.3.5 BBRHandleProbeRTT: hold in flight at 4 packets for 200 ms and
// at least one round trip, so the queue drains and RTprop is measured.
// (The draft also marks the sender app-limited here; that mark lives in
// the sender's DeliveryRate, out of a controller's reach. The low samples
// PROBE_RTT yields cannot lower BtlBw within its 10-round window anyway.)
void Bbr::handle_probe_rtt(const AckEvent& ev) {
  if (!probe_rtt_done_pending_ && ev.bytes_in_flight <= min_pipe_cwnd()) {
    probe_rtt_done_stamp_ = ev.now + kProbeRttDuration;
    probe_rtt_done_pending_ = true;
    probe_rtt_round_done_ = false;
    next_round_delivered_ = ev.delivered;
  } else if (probe_rtt_done_pending_) {
    if (round_start_) probe_rtt_round_done_ = true;
    if (probe_rtt_round_done_ && ev.now > probe_rtt_done_stamp_) {
      rtprop_stamp_ = ev.now;
      restore_cwnd();
      exit_probe_rtt(ev.now);
    }
  }
}

void Bbr::exit_probe_rtt(Clock::time_point now) {
  if (filled_pipe_) {
    enter_probe_bw(now);
  } else {
    enter_startup();
  }
}

// §4.2.1: pacing at gain x BtlBw; in STARTUP the rate only goes up (a
// low early sample must not slow the start). 1% below it, as Linux's
// tcp_bbr.c does (bbr_pacing_margin_percent): BtlBw is the max of noisy
// samples, so it runs a little above the true rate, and at gain 1 that
// excess builds a standing queue the 0.75 phase does not fully drain (over
// linkem, +1% grew the queue to the full 1 BDP in 8 s).
void Bbr::set_pacing_rate(double gain) {
  if (btl_bw() == 0) return;  // keep the initial rate (§4.3.1)
  const uint64_t rate = rate_of(gain * (1 - kPacingMargin), btl_bw(), std::chrono::seconds(1));
  if (filled_pipe_ || rate > pacing_rate_) pacing_rate_ = rate;
}

// §4.2.3: cwnd grows toward gain x BDP by what is acknowledged (so a
// sudden larger target does not release a burst), with packet
// conservation in loss recovery (§4.2.3.4) and 4 packets in PROBE_RTT
// (§4.2.3.5).
void Bbr::set_cwnd(const AckEvent& ev) {
  if (in_recovery_ && ev.largest_sent > recovery_start_) {
    // Recovery is over (RFC 9002 §7.3.2): back to the window before it.
    in_recovery_ = false;
    packet_conservation_ = false;
    restore_cwnd();
  }
  const uint64_t target = inflight(cwnd_gain_);
  if (lost_since_ack_ > 0) cwnd_ = cwnd_ > lost_since_ack_ + mss_ ? cwnd_ - lost_since_ack_ : mss_;
  if (packet_conservation_) {
    cwnd_ = std::max(cwnd_, ev.bytes_in_flight + ev.bytes_acked);
  } else if (filled_pipe_) {
    cwnd_ = std::min(cwnd_ + ev.bytes_acked, target);
  } else if (cwnd_ < target || ev.delivered < initial_cwnd_) {
    cwnd_ += ev.bytes_acked;
  }
  cwnd_ = std::max(cwnd_, min_pipe_cwnd());
  if (mode_ == Mode::kProbeRtt) cwnd_ = std::min(cwnd_, min_pipe_cwnd());
}

// §4.2.3.4: entering recovery, cwnd falls to what is in flight (plus a
// packet, so the recovery can proceed), and for one round each ACK lets
// out only as much as it delivered; after that round cwnd grows again by
// what is acknowledged (less what is lost). Later losses extend the
// recovery instead of cutting again, as Chromium's QUIC BBR does: it ends
// once a packet sent after the newest loss is acknowledged. On a path with
// steady random loss a new loss comes every few packets; cutting the
// window to "in flight" for each one kept BBR cwnd-limited, unable to
// probe, and its bandwidth estimate spiralled down (100 Mbit/s at 5% loss
// over linkem: 20 Mbit/s).
void Bbr::on_loss(const LossEvent& ev) {
  if (in_recovery_) {
    lost_since_ack_ += ev.bytes_lost;
    recovery_start_ = std::max(recovery_start_, ev.now);
    return;
  }
  save_cwnd();
  in_recovery_ = true;
  recovery_start_ = ev.now;
  packet_conservation_ = true;
  next_round_delivered_ = ev.delivered;  // the conservation round starts now
  cwnd_ = std::max(ev.bytes_in_flight + mss_, min_pipe_cwnd());
}

// §4.2.3.4 (upon a retransmission timeout): one packet; the next ACK
// lifts it to the 4-packet floor.
void Bbr::on_persistent_congestion(Clock::time_point now) {
  save_cwnd();
  in_recovery_ = true;
  recovery_start_ = now;
  packet_conservation_ = false;
  cwnd_ = mss_;
}

void Bbr::enter_startup() {
  mode_ = Mode::kStartup;
  pacing_gain_ = kHighGain;
  cwnd_gain_ = kHighGain;
}

// §4.3.4: start the gain cycle at a random phase other than 0.75 (which
// would drain a queue there is none of), so flows sharing a bottleneck do
// not probe in step.
void Bbr::enter_probe_bw(Clock::time_point now) {
  mode_ = Mode::kProbeBw;
  pacing_gain_ = 1;
  cwnd_gain_ = kCwndGain;
  cycle_index_ = kGainCycleLen - 1 - static_cast<int>(next_random() % (kGainCycleLen - 1));
  advance_cycle_phase(now);
}

void Bbr::advance_cycle_phase(Clock::time_point now) {
  cycle_stamp_ = now;
  cycle_index_ = (cycle_index_ + 1) % kGainCycleLen;
  pacing_gain_ = kPacingGainCycle[cycle_index_];
}

uint64_t Bbr::bdp() const {
  return static_cast<uint64_t>(static_cast<double>(btl_bw()) *
                               static_cast<double>(rtprop_.count()) / 1e9);
}

// §4.2.3.2 BBRInflight: the initial window until there is a model; the
// three send quanta cover the sender's and receiver's batching.
uint64_t Bbr::inflight(double gain) const {
  if (!has_rtprop_ || btl_bw() == 0) return initial_cwnd_;
  return static_cast<uint64_t>(gain * static_cast<double>(bdp())) + 3 * mss_;
}

// §4.2.3.4 BBRSaveCwnd: remember the window from before recovery or
// PROBE_RTT (the larger, if one interrupts the other).
void Bbr::save_cwnd() {
  if (!in_recovery_ && mode_ != Mode::kProbeRtt) {
    prior_cwnd_ = cwnd_;
  } else {
    prior_cwnd_ = std::max(prior_cwnd_, cwnd_);
  }
}

// splitmix64 from a fixed seed: the phase is pseudo-random but every run
// replays.
uint32_t Bbr::next_random() {
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
}

}  // namespace sluice::rudp::cc
