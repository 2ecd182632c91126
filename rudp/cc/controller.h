// The congestion-control seam: what a sender tells its controller, and the
// two things it asks (how much may be in flight; how fast to send).
// Controllers (fixed, newreno, cubic, bbr, vegas) are chosen by name
// through rudp/cc/registry.h.
//
// Events follow RFC 9002 §7 and Appendix B's names: on_sent for every
// packet that counts in flight, on_ack once per ACK frame that newly
// acknowledges something, on_loss once per batch of packets declared lost,
// on_persistent_congestion when a loss spans the persistent-congestion
// period (§7.6), on_ecn_ce when the peer reports more CE marks (§7.1,
// Appendix B.7). Spurious losses (a packet declared lost, then
// acknowledged) are reported through on_spurious so a controller can undo
// its reduction.
//
// Every AckEvent carries a delivery-rate sample (rudp/cc/delivery_rate.h,
// after draft-cheng-iccrg-delivery-rate-estimation), which BBR runs on and
// which tells the others when a round trip ends: a round is over when a
// packet sent after the round began is acknowledged, i.e. when
// rate.prior_delivered reaches the `delivered` count the round began at.
//
// Units: bytes, bytes per second, and the sender's clock (virtual in the
// simulator). Windows count whole datagrams' bytes (headers included).
//
// Thread rules: one controller per connection, called on its loop thread
// only; it never calls back.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "rudp/rtt.h"

namespace sluice::rudp::cc {

// One delivery-rate sample (delivery-rate draft §3.3): the data acknowledged
// over the interval between sending the newest acknowledged packet (and
// the ACK that came before it was sent) and now.
struct RateSample {
  uint64_t delivery_rate = 0;    // bytes per second; 0: no valid sample
  uint64_t delivered = 0;        // bytes delivered over the interval
  Duration interval{};           // max(send interval, ack interval)
  uint64_t prior_delivered = 0;  // `delivered` when the newest acked packet was sent
  uint64_t tx_in_flight = 0;     // bytes in flight when it was sent (BBRv2's inflight)
  Duration rtt{};                // its RTT (no ACK-delay correction); 0: none
  uint64_t newly_lost = 0;       // bytes declared lost since the previous ACK event
  // The interval had idle gaps on the sender's side (nothing to send): the
  // rate may be below the path's and must not lower a bandwidth estimate.
  bool is_app_limited = false;
};

struct AckEvent {
  Clock::time_point now;
  uint64_t bytes_acked = 0;      // newly acknowledged, in-flight bytes
  uint64_t prior_in_flight = 0;  // before removing them
  uint64_t bytes_in_flight = 0;  // after removing them (and any newly lost)
  // Sent time of the largest newly acknowledged packet (for recovery
  // periods: acks of packets sent before recovery began do not grow cwnd).
  Clock::time_point largest_sent;
  bool has_rtt_sample = false;
  Duration rtt_sample{};         // latest_rtt, when has_rtt_sample
  const RttEstimator* rtt = nullptr;  // never null in an event
  uint64_t delivered = 0;        // bytes acknowledged in total, this ACK's included
  RateSample rate;
  // The sender had nothing more to send when the window still had room
  // (RFC 9002 §7.8: an under-used window must not grow).
  bool app_limited = false;
};

struct LossEvent {
  Clock::time_point now;
  uint64_t bytes_lost = 0;
  uint64_t bytes_in_flight = 0;         // after removing them
  Clock::time_point largest_lost_sent;  // sent time of the newest lost packet
  uint64_t delivered = 0;               // bytes acknowledged in total so far
};

class Controller {
 public:
  virtual ~Controller() = default;
  virtual std::string_view name() const = 0;
  virtual void on_sent(Clock::time_point now, uint64_t bytes, uint64_t bytes_in_flight) = 0;
  virtual void on_ack(const AckEvent& ev) = 0;
  virtual void on_loss(const LossEvent& ev) = 0;
  virtual void on_persistent_congestion(Clock::time_point now) = 0;
  virtual void on_spurious(Clock::time_point now) { (void)now; }
  // The peer's ACK_ECN reported new CE marks (RFC 9002 §7.1, B.7): a
  // congestion event like a loss, with nothing lost. ev.bytes_lost is 0
  // and ev.largest_lost_sent is the sent time of the largest newly
  // acknowledged packet, so a controller's recovery period (no second
  // reduction for packets sent before it began) applies as for losses.
  virtual void on_ecn_ce(const LossEvent& ev) { on_loss(ev); }
  // Bytes allowed in flight.
  virtual uint64_t cwnd() const = 0;
  // Bytes per second to pace at; 0: no pacing (send as the window allows).
  virtual uint64_t pacing_rate() const = 0;
  // The controller's state in a word or two, for stats and traces
  // ("slow_start", "recovery", "probe_bw", ...).
  virtual std::string_view state() const { return ""; }
};

struct Config {
  uint64_t max_datagram = 1400;
  // Window at the start and at its smallest, in datagrams (RFC 9002 §7.2:
  // 10 and 2).
  uint64_t initial_window_packets = 10;
  uint64_t min_window_packets = 2;
  // Fixed window: the window (0: 64 x max_datagram) and an optional pacing
  // rate in bytes/s (0: unpaced).
  uint64_t fixed_window = 0;
  uint64_t fixed_pacing_rate = 0;
  // Vegas: packets kept queued at the bottleneck, at least alpha and at
  // most beta (TCP Vegas' 2 and 4).
  uint64_t vegas_alpha = 2;
  uint64_t vegas_beta = 4;
  // CUBIC: HyStart++ (RFC 9406) in slow start.
  bool hystart = true;
  // Seeds a controller's random choices (BBR's first gain phase, so flows
  // do not probe in step). 0 in Options: the endpoint draws one per
  // connection; set it to replay a run exactly.
  uint64_t seed = 0;
};

}  // namespace sluice::rudp::cc
