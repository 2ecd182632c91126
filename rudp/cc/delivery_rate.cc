#include "rudp/cc/delivery_rate.h"

#include <algorithm>

namespace sluice::rudp::cc {

DeliveryRate::PacketState DeliveryRate::on_sent(Clock::time_point now, uint64_t in_flight_before,
                                                uint64_t bytes) {
  // §3.2: a send after an idle period (nothing in flight) starts the
  // intervals afresh, so the idle time does not count as delivery time.
  if (in_flight_before == 0) {
    first_sent_time_ = now;
    delivered_time_ = now;
  }
  PacketState p;
  p.delivered_time = delivered_time_;
  p.first_sent_time = first_sent_time_;
  p.delivered = delivered_;
  p.tx_in_flight = in_flight_before + bytes;
  p.is_app_limited = app_limited_until_ != 0;
  return p;
}

void DeliveryRate::on_app_limited(uint64_t bytes_in_flight) {
  app_limited_until_ = std::max<uint64_t>(delivered_ + bytes_in_flight, 1);
}

void DeliveryRate::begin_ack() {
  have_prior_ = false;
  rtt_ = Duration::zero();
}

void DeliveryRate::on_acked(Clock::time_point now, Clock::time_point sent, uint64_t bytes,
                            const PacketState& p) {
  delivered_ += bytes;
  delivered_time_ = now;
  // §3.3 UpdateRateSample: the sample follows the most recently sent of
  // the packets this ACK covers (the largest `delivered` when sent).
  if (!have_prior_ || p.delivered >= prior_delivered_) {
    have_prior_ = true;
    prior_delivered_ = p.delivered;
    prior_time_ = p.delivered_time;
    sample_app_limited_ = p.is_app_limited;
    send_elapsed_ = sent - p.first_sent_time;
    ack_elapsed_ = delivered_time_ - p.delivered_time;
    rtt_ = now - sent;
    tx_in_flight_ = p.tx_in_flight;
    first_sent_time_ = sent;  // the next send interval starts here
  }
}

RateSample DeliveryRate::finish(Duration min_rtt) {
  RateSample rs;
  rs.newly_lost = lost_;
  lost_ = 0;
  // §3.4: the app-limited period ends once its marked data is delivered.
  if (app_limited_until_ != 0 && delivered_ > app_limited_until_) app_limited_until_ = 0;
  if (!have_prior_) return rs;
  rs.prior_delivered = prior_delivered_;
  rs.tx_in_flight = tx_in_flight_;
  rs.rtt = rtt_;
  rs.is_app_limited = sample_app_limited_;
  rs.delivered = delivered_ - prior_delivered_;
  rs.interval = std::max(send_elapsed_, ack_elapsed_);
  // §3.3: an interval shorter than the minimum RTT is too short to
  // trust (ACK compression, a stretched ACK): no rate from it.
  if (rs.interval <= Duration::zero() || rs.interval < min_rtt) return rs;
  rs.delivery_rate = static_cast<uint64_t>(
      static_cast<double>(rs.delivered) * 1e9 / static_cast<double>(rs.interval.count()));
  return rs;
}

}  // namespace sluice::rudp::cc
