// rudp/rtt.{h,cc}: RFC 9002 §5 (first sample, EWMA with alpha 1/8 and
// beta 1/4, min_rtt, when the peer's ACK delay is subtracted) and the
// probe timeout of §6.2.1, with exact nanosecond values.
#include "rudp/rtt.h"

#include <gtest/gtest.h>

#include <chrono>

namespace sluice::rudp {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(RudpRtt, BeforeAnySample) {
  RttEstimator r;
  EXPECT_FALSE(r.has_sample());
  EXPECT_EQ(r.samples(), 0u);
  EXPECT_EQ(r.smoothed(), milliseconds(333));  // §6.2.2
  EXPECT_EQ(r.variance(), microseconds(166500));
  EXPECT_EQ(r.pto(milliseconds(0)), milliseconds(333 + 666));
  RttEstimator lan(milliseconds(10));
  EXPECT_EQ(lan.smoothed(), milliseconds(10));
  EXPECT_EQ(lan.variance(), milliseconds(5));
  EXPECT_EQ(lan.pto(milliseconds(25)), milliseconds(10 + 20 + 25));
}

TEST(RudpRtt, FirstSampleSetsEverythingAndIgnoresAckDelay) {
  RttEstimator r;
  r.on_sample(milliseconds(100), milliseconds(50));
  EXPECT_TRUE(r.has_sample());
  EXPECT_EQ(r.samples(), 1u);
  EXPECT_EQ(r.latest(), milliseconds(100));
  EXPECT_EQ(r.min(), milliseconds(100));
  EXPECT_EQ(r.smoothed(), milliseconds(100));
  EXPECT_EQ(r.variance(), milliseconds(50));
  EXPECT_EQ(r.pto(milliseconds(25)), milliseconds(100 + 200 + 25));
}

TEST(RudpRtt, SmoothingIsExact) {
  RttEstimator r;
  r.on_sample(milliseconds(100), milliseconds(0));
  // 120 >= min 100 + 10: adjusted 110. rttvar = 3/4 * 50 + 1/4 * |100 - 110|
  // = 40; srtt = 7/8 * 100 + 1/8 * 110 = 101.25.
  r.on_sample(milliseconds(120), milliseconds(10));
  EXPECT_EQ(r.latest(), milliseconds(120));
  EXPECT_EQ(r.min(), milliseconds(100));
  EXPECT_EQ(r.variance(), milliseconds(40));
  EXPECT_EQ(r.smoothed(), microseconds(101250));
  EXPECT_EQ(r.pto(milliseconds(5)), microseconds(101250 + 160000 + 5000));
  // 105 < 100 + 10: not adjusted. rttvar = 3/4 * 40 + 1/4 * 3.75 = 30.9375;
  // srtt = 7/8 * 101.25 + 1/8 * 105 = 101.71875.
  r.on_sample(milliseconds(105), milliseconds(10));
  EXPECT_EQ(r.variance(), nanoseconds(30937500));
  EXPECT_EQ(r.smoothed(), nanoseconds(101718750));
  EXPECT_EQ(r.samples(), 3u);
  // The variance uses the previous srtt, not the updated one: a sample
  // equal to srtt leaves srtt alone and shrinks rttvar by exactly 3/4.
  RttEstimator s;
  s.on_sample(milliseconds(80), milliseconds(0));
  s.on_sample(milliseconds(80), milliseconds(0));
  EXPECT_EQ(s.smoothed(), milliseconds(80));
  EXPECT_EQ(s.variance(), milliseconds(30));
}

TEST(RudpRtt, AckDelaySubtractedOnlyAboveMinPlusDelay) {
  // Exactly at min + ack_delay: subtracted (adjusted = 100 = srtt).
  RttEstimator at;
  at.on_sample(milliseconds(100), milliseconds(0));
  at.on_sample(milliseconds(110), milliseconds(10));
  EXPECT_EQ(at.smoothed(), milliseconds(100));
  EXPECT_EQ(at.variance(), microseconds(37500));
  // One millisecond below: not subtracted (adjusted = 109).
  RttEstimator below;
  below.on_sample(milliseconds(100), milliseconds(0));
  below.on_sample(milliseconds(109), milliseconds(10));
  EXPECT_EQ(below.smoothed(), microseconds(101125));
  EXPECT_EQ(below.variance(), microseconds(39750));
  // A huge reported delay never drags a sample below min_rtt.
  RttEstimator huge;
  huge.on_sample(milliseconds(100), milliseconds(0));
  huge.on_sample(milliseconds(200), milliseconds(150));
  EXPECT_EQ(huge.smoothed(), milliseconds(112) + microseconds(500));  // (700 + 200) / 8
  EXPECT_EQ(huge.min(), milliseconds(100));
}

TEST(RudpRtt, MinRttUsesTheUnadjustedSample) {
  RttEstimator r;
  r.on_sample(milliseconds(100), milliseconds(0));
  r.on_sample(milliseconds(150), milliseconds(100));  // min stays 100, not 50
  EXPECT_EQ(r.min(), milliseconds(100));
  r.on_sample(milliseconds(80), milliseconds(30));  // new min 80 (ack delay ignored)
  EXPECT_EQ(r.min(), milliseconds(80));
  EXPECT_EQ(r.latest(), milliseconds(80));
  r.on_sample(milliseconds(90), milliseconds(0));
  EXPECT_EQ(r.min(), milliseconds(80));
  // min_rtt is updated before the adjustment check: the sample that lowers
  // it is compared with the new minimum (80 + 0 <= 80: "subtracted" 0).
  RttEstimator s;
  s.on_sample(milliseconds(100), milliseconds(0));
  s.on_sample(milliseconds(60), milliseconds(0));
  EXPECT_EQ(s.min(), milliseconds(60));
  EXPECT_EQ(s.smoothed(), milliseconds(95));  // (700 + 60) / 8
  EXPECT_EQ(s.variance(), milliseconds(47) + microseconds(500));  // (150 + 40) / 4
}

TEST(RudpRtt, PtoHasAGranularityFloor) {
  RttEstimator r;
  r.on_sample(milliseconds(1), milliseconds(0));
  EXPECT_EQ(r.variance(), microseconds(500));
  EXPECT_EQ(r.pto(milliseconds(0)), milliseconds(1 + 2));  // 4 x 0.5 ms > 1 ms
  // Steady samples shrink rttvar by 3/4 each: 375, 281.25, 210.9375 us
  // (in whole nanoseconds), so 4 x rttvar falls under the granularity.
  r.on_sample(milliseconds(1), milliseconds(0));
  EXPECT_EQ(r.variance(), microseconds(375));
  EXPECT_EQ(r.pto(milliseconds(0)), milliseconds(1) + microseconds(1500));
  r.on_sample(milliseconds(1), milliseconds(0));
  EXPECT_EQ(r.variance(), nanoseconds(281250));
  EXPECT_EQ(r.pto(milliseconds(0)), milliseconds(1) + microseconds(1125));
  r.on_sample(milliseconds(1), milliseconds(0));
  EXPECT_EQ(r.variance(), nanoseconds(210937));
  EXPECT_EQ(r.pto(milliseconds(0)), milliseconds(1) + RttEstimator::kGranularity);
  EXPECT_EQ(r.pto(milliseconds(5)), milliseconds(1 + 1 + 5));
  // A zero RTT (same-host clock resolution) still gets the floor.
  RttEstimator z;
  z.on_sample(nanoseconds(0), nanoseconds(0));
  EXPECT_EQ(z.variance(), nanoseconds(0));
  EXPECT_EQ(z.pto(milliseconds(5)), milliseconds(6));
  EXPECT_EQ(RttEstimator::kGranularity, milliseconds(1));
}

TEST(RudpRtt, ConvergesToASteadyPath) {
  RttEstimator r;
  for (int i = 0; i < 200; ++i) r.on_sample(milliseconds(40), milliseconds(0));
  EXPECT_EQ(r.smoothed(), milliseconds(40));
  EXPECT_LT(r.variance(), microseconds(1));
  EXPECT_EQ(r.min(), milliseconds(40));
  EXPECT_EQ(r.samples(), 200u);
  EXPECT_EQ(r.pto(milliseconds(5)), milliseconds(46));
}

}  // namespace
}  // namespace sluice::rudp
