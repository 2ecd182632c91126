// The congestion-control seam: what a sender tells its controller, and the
// two things it asks (how much may be in flight; how fast to send).
// Controllers (fixed window here; NewReno, CUBIC, BBR and Vegas in the
// congestion-control issue) are chosen by name through rudp/cc/registry.h.
//
// Events follow RFC 9002 §7 and Appendix B's names: on_sent for every
// packet that counts in flight, on_ack once per ACK frame with the bytes it
// newly acknowledged, on_loss once per batch of packets declared lost,
// on_persistent_congestion when a loss spans the persistent-congestion
// period (§7.6). Spurious losses (a packet declared lost, then
// acknowledged) are reported through on_spurious so a controller can undo
// its reduction.
//
// Thread rules: one controller per connection, called on its loop thread
// only; it never calls back.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "rudp/rtt.h"

namespace sluice::rudp::cc {

struct AckEvent {
  Clock::time_point now;
  uint64_t bytes_acked = 0;      // newly acknowledged, in-flight bytes
  uint64_t bytes_in_flight = 0;  // after removing them
  // Sent time of the largest newly acknowledged packet (for recovery
  // periods: acks of packets sent before recovery began do not grow cwnd).
  Clock::time_point largest_sent;
  bool has_rtt_sample = false;
  Duration rtt_sample{};         // latest_rtt, when has_rtt_sample
  const RttEstimator* rtt = nullptr;
  // Delivery-rate inputs (BBR-style): bytes delivered so far in total and
  // whether the sender had nothing to send (app-limited).
  uint64_t delivered = 0;
  bool app_limited = false;
};

struct LossEvent {
  Clock::time_point now;
  uint64_t bytes_lost = 0;
  uint64_t bytes_in_flight = 0;
  Clock::time_point largest_lost_sent;  // sent time of the newest lost packet
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
  // Bytes allowed in flight.
  virtual uint64_t cwnd() const = 0;
  // Bytes per second to pace at; 0: no pacing (send as the window allows).
  virtual uint64_t pacing_rate() const = 0;
};

struct Config {
  uint64_t max_datagram = 1400;
  // Fixed window: the window (0: 64 x max_datagram) and an optional pacing
  // rate in bytes/s (0: unpaced).
  uint64_t fixed_window = 0;
  uint64_t fixed_pacing_rate = 0;
};

}  // namespace sluice::rudp::cc
