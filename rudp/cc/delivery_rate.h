// Delivery-rate estimation, after draft-cheng-iccrg-delivery-rate-estimation
// (the algorithm of Linux's tcp_rate.c, which BBR runs on): each packet
// remembers how much had been delivered, and when, at the moment it was
// sent; when it is acknowledged, the data delivered since then over the
// time elapsed is one sample of the path's delivery rate. The interval is
// the longer of the send and the ACK intervals, so ACK compression cannot
// inflate a sample (§3.3).
//
// Application-limited periods (§3.4): when the sender has nothing to send
// and the window has room, everything in flight then is marked, and the
// samples those packets produce say is_app_limited.
//
// Units are bytes (whole datagrams). Thread rules: owned by one session,
// its loop thread.
#pragma once

#include <cstdint>

#include "rudp/cc/controller.h"

namespace sluice::rudp::cc {

class DeliveryRate {
 public:
  // What a packet carries from its sending to its acknowledgement (§3.2).
  struct PacketState {
    Clock::time_point delivered_time{};   // C.delivered_time when sent
    Clock::time_point first_sent_time{};  // C.first_sent_time when sent
    uint64_t delivered = 0;               // C.delivered when sent
    uint64_t tx_in_flight = 0;            // bytes in flight, this one included
    bool is_app_limited = false;
  };

  // A packet of `bytes` goes out now; `in_flight_before` excludes it.
  PacketState on_sent(Clock::time_point now, uint64_t in_flight_before, uint64_t bytes);
  // The sender ran out of data with the window open (§3.4's
  // OnApplicationLimited).
  void on_app_limited(uint64_t bytes_in_flight);

  // One ACK frame: begin, then on_acked for each newly acknowledged packet
  // (`sent`: its send time), then finish for the sample.
  void begin_ack();
  void on_acked(Clock::time_point now, Clock::time_point sent, uint64_t bytes,
                const PacketState& p);
  // Packets declared lost (they count in the next sample's newly_lost).
  void on_lost(uint64_t bytes) { lost_ += bytes; lost_total_ += bytes; }
  RateSample finish(Duration min_rtt);

  uint64_t delivered() const { return delivered_; }
  uint64_t lost() const { return lost_total_; }
  bool app_limited() const { return app_limited_until_ != 0; }

 private:
  uint64_t delivered_ = 0;
  Clock::time_point delivered_time_{};
  Clock::time_point first_sent_time_{};
  uint64_t app_limited_until_ = 0;  // C.app_limited: the delivered mark ending the period
  uint64_t lost_ = 0;               // since the last sample
  uint64_t lost_total_ = 0;
  // The sample being built (§3.3's rs), from the newest packet acked.
  bool have_prior_ = false;
  uint64_t prior_delivered_ = 0;
  Clock::time_point prior_time_{};
  Duration send_elapsed_{};
  Duration ack_elapsed_{};
  Duration rtt_{};
  uint64_t tx_in_flight_ = 0;
  bool sample_app_limited_ = false;
};

}  // namespace sluice::rudp::cc
