// rudp/cc/{newreno,cubic,hystart}: the loss-based controllers against the
// textbook, on a virtual clock with synthetic ACK and loss events (no
// sockets): slow start, the reductions and their recovery periods,
// app-limited ACKs, persistent congestion, spurious-loss undo, CUBIC's
// curve (RFC 9438) and HyStart++'s rounds (RFC 9406).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "rudp/cc/cubic.h"
#include "rudp/cc/newreno.h"
#include "rudp/cc/registry.h"
#include "rudp/rtt.h"

namespace sluice::rudp::cc {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr uint64_t kMss = 1400;

Config config(bool hystart = false) {
  Config c;
  c.max_datagram = kMss;
  c.hystart = hystart;
  return c;
}

// A path with a given RTT and a sender that always fills the window: each
// round sends cwnd bytes as whole datagrams at once and one RTT later gets
// one ACK per datagram, all at that instant; the next round is sent just
// after (1 us), as an ACK-clocked sender would.
struct Sim {
  explicit Sim(std::string_view name, bool hystart = false, Duration path = milliseconds(100))
      : cc(create(name, config(hystart))), rtt_path(path) {}

  // One round; the first `lost` datagrams are declared lost (one event,
  // before the first ACK, as the sender's loss detection runs first).
  void round(uint64_t lost = 0) {
    const uint64_t n = std::max<uint64_t>(cc->cwnd() / kMss, 1);
    const Clock::time_point sent = now;
    const uint64_t prior_delivered = delivered;
    uint64_t in_flight = 0;
    for (uint64_t i = 0; i < n; ++i) {
      in_flight += kMss;
      cc->on_sent(sent, kMss, in_flight);
    }
    now += rtt_path;
    if (lost) {
      in_flight -= lost * kMss;
      LossEvent l;
      l.now = now;
      l.bytes_lost = lost * kMss;
      l.bytes_in_flight = in_flight;
      l.largest_lost_sent = sent;
      l.delivered = delivered;
      cc->on_loss(l);
    }
    for (uint64_t i = lost; i < n; ++i) {
      rtt.on_sample(rtt_path, Duration::zero());
      delivered += kMss;
      AckEvent ev;
      ev.now = now;
      ev.bytes_acked = kMss;
      ev.prior_in_flight = in_flight;
      in_flight -= kMss;
      ev.bytes_in_flight = in_flight;
      ev.largest_sent = sent;
      ev.has_rtt_sample = true;
      ev.rtt_sample = rtt_path;
      ev.rtt = &rtt;
      ev.delivered = delivered;
      ev.rate.prior_delivered = prior_delivered;
      ev.rate.delivered = delivered - prior_delivered;
      ev.rate.rtt = rtt_path;
      ev.app_limited = app_limited;
      cc->on_ack(ev);
    }
    last_ack = now;
    now += microseconds(1);
  }
  // One ACK of a single datagram sent at `sent`.
  void ack(Clock::time_point sent) {
    rtt.on_sample(rtt_path, Duration::zero());
    delivered += kMss;
    AckEvent ev;
    ev.now = now;
    ev.bytes_acked = kMss;
    ev.largest_sent = sent;
    ev.has_rtt_sample = true;
    ev.rtt_sample = rtt_path;
    ev.rtt = &rtt;
    ev.delivered = delivered;
    cc->on_ack(ev);
  }
  void loss(Clock::time_point largest_lost_sent) {
    LossEvent l;
    l.now = now;
    l.bytes_lost = kMss;
    l.largest_lost_sent = largest_lost_sent;
    l.delivered = delivered;
    cc->on_loss(l);
  }
  // Rounds until cwnd reaches `bytes` (slow start).
  void grow_to(uint64_t bytes) {
    while (cc->cwnd() < bytes) round();
  }
  double segs() const { return static_cast<double>(cc->cwnd()) / kMss; }

  std::unique_ptr<Controller> cc;
  Duration rtt_path;
  RttEstimator rtt{milliseconds(333)};
  Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
  Clock::time_point last_ack{};
  uint64_t delivered = 0;
  bool app_limited = false;
};

// --- registry -------------------------------------------------------------

TEST(RudpCcLoss, RegistryCreatesBothAndRejectsUnknownNames) {
  const auto names = available();
  ASSERT_GE(names.size(), 3u);
  EXPECT_EQ(names.front(), "cubic");  // the default
  EXPECT_NE(std::find(names.begin(), names.end(), "newreno"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "cubic"), names.end());
  std::string error;
  auto reno = create("newreno", Config{}, &error);
  ASSERT_TRUE(reno);
  EXPECT_EQ(reno->name(), "newreno");
  EXPECT_NE(dynamic_cast<NewReno*>(reno.get()), nullptr);
  auto cubic = create("cubic", Config{}, &error);
  ASSERT_TRUE(cubic);
  EXPECT_EQ(cubic->name(), "cubic");
  EXPECT_NE(dynamic_cast<Cubic*>(cubic.get()), nullptr);
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(create("reno", Config{}, &error), nullptr);
  EXPECT_NE(error.find("unknown congestion controller 'reno'"), std::string::npos) << error;
  EXPECT_NE(error.find("newreno"), std::string::npos) << error;
  EXPECT_NE(error.find("cubic"), std::string::npos) << error;
}

// --- both controllers -----------------------------------------------------

class BothControllers : public ::testing::TestWithParam<const char*> {
 protected:
  double beta() const { return std::string(GetParam()) == "cubic" ? 0.7 : 0.5; }
};

INSTANTIATE_TEST_SUITE_P(Loss, BothControllers, ::testing::Values("newreno", "cubic"));

TEST_P(BothControllers, InitialWindowAndSlowStartDoublesPerRtt) {
  Sim s(GetParam());
  EXPECT_EQ(s.cc->cwnd(), 10 * kMss);  // RFC 9002 §7.2
  EXPECT_EQ(s.cc->pacing_rate(), 0u);  // no RTT yet
  EXPECT_EQ(s.cc->state(), "slow_start");
  for (uint64_t w = 20; w <= 640; w *= 2) {
    s.round();
    EXPECT_EQ(s.cc->cwnd(), w * kMss);
    EXPECT_EQ(s.cc->state(), "slow_start");
  }
  // Twice cwnd per smoothed RTT while in slow start.
  EXPECT_EQ(s.cc->pacing_rate(), 2 * 640 * kMss * 10);
}

TEST_P(BothControllers, LossReducesByBetaOncePerRecoveryPeriod) {
  Sim s(GetParam());
  s.grow_to(200 * kMss);  // 160 -> 320 datagrams
  ASSERT_EQ(s.cc->cwnd(), 320 * kMss);
  const Clock::time_point before = s.now - microseconds(1);  // a packet in flight
  s.now += milliseconds(10);
  s.loss(before);
  const uint64_t w1 = static_cast<uint64_t>(320 * kMss * beta());
  EXPECT_EQ(s.cc->cwnd(), w1);
  EXPECT_EQ(s.cc->state(), "recovery");
  const Clock::time_point recovery = s.now;
  // More losses of packets sent before recovery began: the same event.
  s.now += milliseconds(10);
  s.loss(before + milliseconds(5));
  s.loss(recovery);  // sent at the instant recovery began still counts
  EXPECT_EQ(s.cc->cwnd(), w1);
  // ACKs of packets sent before it: no growth, still recovering.
  for (int i = 0; i < 50; ++i) s.ack(before);
  EXPECT_EQ(s.cc->cwnd(), w1);
  EXPECT_EQ(s.cc->state(), "recovery");
  // A loss of a packet sent after recovery began is a new event.
  s.now += milliseconds(10);
  s.loss(recovery + microseconds(1));
  const uint64_t w2 = static_cast<uint64_t>(w1 * beta());
  EXPECT_EQ(s.cc->cwnd(), w2);
  // ssthresh is the reduced window: no more slow start.
  s.now += milliseconds(100);
  s.ack(s.now - milliseconds(50));
  EXPECT_EQ(s.cc->state(), "congestion_avoidance");
  EXPECT_LT(s.cc->cwnd(), w2 + kMss);
}

TEST_P(BothControllers, RecoveryEndsWithTheFirstAckOfAPacketSentInIt) {
  Sim s(GetParam());
  s.grow_to(80 * kMss);
  s.round(1);  // loss of the first datagram, then ACKs of the rest: no growth
  const uint64_t reduced = static_cast<uint64_t>(80 * kMss * beta());
  EXPECT_EQ(s.cc->cwnd(), reduced);
  EXPECT_EQ(s.cc->state(), "recovery");
  s.round();  // sent after recovery began: recovery over, avoidance grows
  EXPECT_EQ(s.cc->state(), "congestion_avoidance");
  EXPECT_GT(s.cc->cwnd(), reduced);
  EXPECT_LE(s.cc->cwnd(), reduced + 2 * kMss);
}

TEST_P(BothControllers, NoGrowthWhenAppLimited) {
  Sim s(GetParam());
  s.app_limited = true;
  for (int i = 0; i < 5; ++i) s.round();
  EXPECT_EQ(s.cc->cwnd(), 10 * kMss);  // RFC 9002 §7.8, in slow start
  s.app_limited = false;
  s.grow_to(80 * kMss);
  s.round(1);
  s.round();
  const uint64_t w = s.cc->cwnd();
  s.app_limited = true;
  for (int i = 0; i < 20; ++i) s.round();
  EXPECT_EQ(s.cc->cwnd(), w);  // and in congestion avoidance
  s.app_limited = false;
  s.round();
  EXPECT_GT(s.cc->cwnd(), w);
}

TEST_P(BothControllers, PersistentCongestionGoesToTheMinimumWindow) {
  Sim s(GetParam());
  s.grow_to(80 * kMss);
  s.round(5);
  const uint64_t ssthresh = static_cast<uint64_t>(80 * kMss * beta());
  s.cc->on_persistent_congestion(s.now);
  EXPECT_EQ(s.cc->cwnd(), 2 * kMss);  // RFC 9002 §7.6.2
  EXPECT_EQ(s.cc->state(), "slow_start");
  // Slow start again, up to the ssthresh the loss set.
  s.round();
  EXPECT_EQ(s.cc->cwnd(), 4 * kMss);
  for (int i = 0; i < 3; ++i) s.round();  // 8, 16, 32
  EXPECT_EQ(s.cc->state(), "slow_start");
  s.round();  // 64 datagrams' worth acked: up to ssthresh, then avoidance
  EXPECT_GE(s.cc->cwnd(), ssthresh);
  EXPECT_LT(s.cc->cwnd(), ssthresh + kMss);
  EXPECT_EQ(s.cc->state(), "congestion_avoidance");
}

TEST_P(BothControllers, SpuriousLossIsUndoneWithinItsRecoveryPeriod) {
  Sim s(GetParam());
  s.grow_to(100 * kMss);  // 160 datagrams, slow start
  const uint64_t w = s.cc->cwnd();
  s.loss(s.now - microseconds(1));
  EXPECT_LT(s.cc->cwnd(), w);
  s.cc->on_spurious(s.now);
  EXPECT_EQ(s.cc->cwnd(), w);
  EXPECT_EQ(s.cc->state(), "slow_start");  // ssthresh restored too
  s.round();
  EXPECT_EQ(s.cc->cwnd(), 2 * w);
  // Once recovery is over the reduction stands.
  s.round(1);
  const uint64_t reduced = s.cc->cwnd();
  ASSERT_LT(reduced, 4 * w);
  s.round();
  s.cc->on_spurious(s.now);
  EXPECT_LT(s.cc->cwnd(), reduced + 2 * kMss);
}

// --- NewReno --------------------------------------------------------------

TEST(RudpCcLoss, NewRenoHalvesAndAddsOneDatagramPerWindow) {
  Sim s("newreno");
  s.grow_to(80 * kMss);
  s.round(1);
  auto* reno = dynamic_cast<NewReno*>(s.cc.get());
  ASSERT_NE(reno, nullptr);
  EXPECT_EQ(s.cc->cwnd(), 40 * kMss);
  EXPECT_EQ(reno->ssthresh(), 40 * kMss);
  // §7.3.3: max_datagram per cwnd of bytes acknowledged, exactly.
  for (uint64_t w = 41; w <= 60; ++w) {
    s.round();
    EXPECT_EQ(s.cc->cwnd(), w * kMss);
  }
  // 1.25 x cwnd per smoothed RTT (100 ms) in avoidance.
  EXPECT_EQ(s.cc->pacing_rate(), 60 * kMss * 10 * 5 / 4);
  // The window never goes below the minimum.
  for (int i = 0; i < 10; ++i) {
    s.now += milliseconds(200);
    s.loss(s.now - microseconds(1));
  }
  EXPECT_EQ(s.cc->cwnd(), 2 * kMss);
}

TEST(RudpCcLoss, NewRenoAckAccumulatesAcrossPartialWindows) {
  Sim s("newreno");
  s.grow_to(20 * kMss);
  s.round(1);  // 20 -> 10 datagrams
  ASSERT_EQ(s.cc->cwnd(), 10 * kMss);
  s.round();  // 10 acked: one more
  ASSERT_EQ(s.cc->cwnd(), 11 * kMss);
  // Ten single ACKs of 1400 bytes: 14000 < 15400, no growth yet...
  s.now += milliseconds(100);
  for (int i = 0; i < 10; ++i) s.ack(s.now - milliseconds(100));
  EXPECT_EQ(s.cc->cwnd(), 11 * kMss);
  s.ack(s.now - milliseconds(100));  // ...the eleventh completes the window
  EXPECT_EQ(s.cc->cwnd(), 12 * kMss);
}

// --- CUBIC ----------------------------------------------------------------

double cbrt_k(double w_max, double cwnd_epoch) { return std::cbrt((w_max - cwnd_epoch) / 0.4); }

TEST(RudpCcLoss, CubicReducesToSevenTenthsAndSetsWmaxAndK) {
  Sim s("cubic");
  auto* cubic = dynamic_cast<Cubic*>(s.cc.get());
  ASSERT_NE(cubic, nullptr);
  s.grow_to(640 * kMss);
  s.round(1);
  EXPECT_EQ(s.cc->cwnd(), 448 * kMss);  // §4.6: beta_cubic 0.7
  EXPECT_EQ(cubic->ssthresh(), 448 * kMss);
  EXPECT_DOUBLE_EQ(cubic->w_max(), 640.0);
  s.round();  // the epoch begins with avoidance
  // §4.2 eq. 2 with cwnd_epoch = 0.7 W_max: K = cbrt(W_max (1 - beta) / C).
  EXPECT_NEAR(cubic->k(), std::cbrt(640 * 0.3 / 0.4), 1e-9);
  EXPECT_NEAR(cubic->k(), 7.8297, 1e-4);
}

// After a loss at W_max = 640 datagrams on a 100 ms path, the window
// follows W(t) = C (t - K)^3 + W_max: concave up to K, flat around it,
// convex after.
TEST(RudpCcLoss, CubicFollowsTheCubicCurve) {
  Sim s("cubic");
  auto* cubic = dynamic_cast<Cubic*>(s.cc.get());
  s.grow_to(640 * kMss);
  s.round(1);
  s.round();  // first ACKs of avoidance: the epoch starts
  const Clock::time_point epoch = s.last_ack;
  const double k = cubic->k();
  const auto w = [&](double t) { return 0.4 * std::pow(t - k, 3) + 640; };
  double prev = s.segs(), prev_growth = 1e9;
  double worst = 0;
  int checked = 0;
  for (int r = 0; r < 200; ++r) {
    s.round();
    const double t = std::chrono::duration<double>(s.last_ack - epoch).count();
    const double growth = s.segs() - prev;
    prev = s.segs();
    // Within a few percent of W(t); more exactly, between W(t) and the
    // target one RTT on, W(t + RTT) (§4.2), which each round chases.
    worst = std::max(worst, std::abs(s.segs() - w(t)) / w(t));
    EXPECT_NEAR(s.segs(), w(t), 0.015 * w(t)) << "t=" << t;
    EXPECT_GE(s.segs(), w(t) - 0.5) << "t=" << t;
    EXPECT_LE(s.segs(), w(t + 0.1) + 0.5) << "t=" << t;
    if (t > 0.5 && t < k - 0.5) {
      EXPECT_LE(growth, prev_growth + 0.5) << "concave before K, t=" << t;
      ++checked;
    }
    if (std::abs(t - k) < 0.25) {
      EXPECT_NEAR(s.segs(), 640, 3) << "plateau at W_max around K";
      EXPECT_LT(growth, 1.0);
    }
    if (t > k + 0.5) {
      EXPECT_GE(growth, prev_growth - 0.5) << "convex after K, t=" << t;
    }
    prev_growth = growth;
    if (t > 2 * k) break;
  }
  EXPECT_GT(checked, 40);
  EXPECT_GT(s.segs(), 700.0);  // probing past W_max
  std::printf("cubic curve: worst relative error %.4f\n", worst);
}

TEST(RudpCcLoss, CubicFastConvergenceLowersWmax) {
  Sim s("cubic");
  auto* cubic = dynamic_cast<Cubic*>(s.cc.get());
  s.grow_to(640 * kMss);
  s.round(1);  // W_max 640, cwnd 448
  for (int i = 0; i < 20; ++i) s.round();
  const double w = s.segs();
  ASSERT_LT(w, 640.0);
  s.round(1);
  // §4.7: below the previous W_max, W_max = cwnd (1 + beta) / 2...
  EXPECT_NEAR(cubic->w_max(), w * 0.85, 1e-9);
  EXPECT_EQ(s.cc->cwnd(), static_cast<uint64_t>(w * kMss * 0.7));
  // ...so the plateau comes sooner (eq. 2: K = cbrt((W_max - cwnd_epoch) / C)).
  const double epoch_window = s.segs();
  s.round();
  EXPECT_NEAR(cubic->k(), cbrt_k(w * 0.85, epoch_window), 1e-9);
  EXPECT_LT(cubic->k(), cbrt_k(w, epoch_window) - 1.0);
  // A loss at or above W_max sets W_max to cwnd.
  Sim u("cubic");
  auto* c2 = dynamic_cast<Cubic*>(u.cc.get());
  u.grow_to(40 * kMss);
  u.round(1);
  u.now += std::chrono::seconds(10);  // far along the curve: cwnd > W_max
  for (int i = 0; i < 30; ++i) u.round();
  const double w2 = u.segs();
  ASSERT_GT(w2, 40.0);
  u.round(1);
  EXPECT_DOUBLE_EQ(c2->w_max(), w2);
}

// Short RTT, small window: the cubic barely moves in 100 rounds (K is
// 2.5 s) while Reno would add a datagram per round; §4.3's estimate wins.
TEST(RudpCcLoss, CubicRenoFriendlyRegionAtSmallBdp) {
  Sim s("cubic", false, milliseconds(1));
  auto* cubic = dynamic_cast<Cubic*>(s.cc.get());
  s.grow_to(20 * kMss);
  s.round(1);  // W_max 20, cwnd 14
  s.round();
  const Clock::time_point epoch = s.last_ack;
  for (int i = 0; i < 100; ++i) s.round();
  const double t = std::chrono::duration<double>(s.last_ack - epoch).count();
  EXPECT_LT(cubic->w_cubic(t), 16.0);
  // alpha = 3 (1 - 0.7) / (1 + 0.7) a round up to W_max (20), then 1.
  const double alpha = 0.9 / 1.7;
  const double expected = 20 + (100 - (20 - 14) / alpha);
  EXPECT_NEAR(s.segs(), expected, 2.0);
  std::printf("reno-friendly: %.2f segments, expected %.2f, cubic %.2f\n", s.segs(), expected,
              cubic->w_cubic(t));
}

// §5.8: time spent app-limited is not part of t, so the window picks up
// the curve where it left it instead of jumping ahead.
TEST(RudpCcLoss, CubicCurveTimeExcludesAppLimitedPeriods) {
  Sim s("cubic");
  s.grow_to(640 * kMss);
  s.round(1);
  for (int i = 0; i < 10; ++i) s.round();
  const uint64_t before = s.cc->cwnd();
  s.round();
  const uint64_t step = s.cc->cwnd() - before;
  s.app_limited = true;
  for (int i = 0; i < 50; ++i) s.round();  // 5 s without growth
  EXPECT_EQ(s.cc->cwnd(), before + step);
  s.app_limited = false;
  const uint64_t resumed = s.cc->cwnd();
  s.round();
  EXPECT_LE(s.cc->cwnd() - resumed, step + kMss);
}

TEST(RudpCcLoss, CubicSpuriousUndoRestoresTheCurve) {
  Sim s("cubic");
  auto* cubic = dynamic_cast<Cubic*>(s.cc.get());
  s.grow_to(640 * kMss);
  s.round(1);
  for (int i = 0; i < 10; ++i) s.round();
  const uint64_t w = s.cc->cwnd();
  const uint64_t ssthresh = cubic->ssthresh();
  const double k = cubic->k(), w_max = cubic->w_max();
  s.round(1);
  EXPECT_NE(cubic->w_max(), w_max);
  s.cc->on_spurious(s.now);  // §4.9
  EXPECT_EQ(s.cc->cwnd(), w);
  EXPECT_EQ(cubic->ssthresh(), ssthresh);
  EXPECT_DOUBLE_EQ(cubic->w_max(), w_max);
  EXPECT_DOUBLE_EQ(cubic->k(), k);
  EXPECT_EQ(s.cc->state(), "congestion_avoidance");
  // The epoch too: the next round continues the old curve.
  s.round();
  EXPECT_GT(s.cc->cwnd(), w);
  EXPECT_LT(s.cc->cwnd(), w + 20 * kMss);
}

// --- HyStart++ ------------------------------------------------------------

TEST(RudpCcLoss, HystartWithConstantRttDoublesLikeSlowStart) {
  Sim s("cubic", true);
  for (uint64_t w = 20; w <= 1280; w *= 2) {
    s.round();
    EXPECT_EQ(s.cc->cwnd(), w * kMss);
    EXPECT_EQ(s.cc->state(), "slow_start");
  }
}

// Slow start at `base`, then one round at `raised`: "css" or "slow_start".
std::string after_rise(Duration base, Duration raised) {
  Sim s("cubic", true, base);
  s.round();
  s.round();
  s.rtt_path = raised;
  s.round();
  return std::string(s.cc->state());
}

TEST(RudpCcLoss, HystartThresholdIsAnEighthOfMinRttWithin4And16Ms) {
  using std::chrono::microseconds;
  // 50 ms: an eighth is 6.25 ms.
  EXPECT_EQ(after_rise(milliseconds(50), microseconds(56249)), "slow_start");
  EXPECT_EQ(after_rise(milliseconds(50), microseconds(56250)), "css");
  // 20 ms: at least MIN_RTT_THRESH, 4 ms.
  EXPECT_EQ(after_rise(milliseconds(20), microseconds(23999)), "slow_start");
  EXPECT_EQ(after_rise(milliseconds(20), milliseconds(24)), "css");
  // 200 ms: at most MAX_RTT_THRESH, 16 ms.
  EXPECT_EQ(after_rise(milliseconds(200), microseconds(215999)), "slow_start");
  EXPECT_EQ(after_rise(milliseconds(200), milliseconds(216)), "css");
}

TEST(RudpCcLoss, HystartRisingRttGoesThroughCssToAvoidance) {
  Sim s("cubic", true, milliseconds(50));
  auto* cubic = dynamic_cast<Cubic*>(s.cc.get());
  s.round();
  s.round();  // 40 datagrams
  s.rtt_path = milliseconds(60);
  s.round();
  // Seven ACKs at full rate before N_RTT_SAMPLE (8) samples are in, then a
  // quarter (CSS_GROWTH_DIVISOR) for the other 33.
  EXPECT_EQ(s.cc->state(), "css");
  EXPECT_EQ(s.cc->cwnd(), 40 * kMss + 7 * kMss + 33 * kMss / 4);
  EXPECT_EQ(cubic->ssthresh(), UINT64_MAX);
  // That round counts as the first of CSS_ROUNDS (5); four more in CSS.
  for (int r = 0; r < 4; ++r) {
    const uint64_t before = s.cc->cwnd();
    s.round();
    EXPECT_EQ(s.cc->state(), "css") << r;
    EXPECT_EQ(s.cc->cwnd(), before + (before / kMss) * (kMss / 4)) << r;
  }
  const uint64_t end_of_css = s.cc->cwnd();
  s.round();
  EXPECT_EQ(s.cc->state(), "congestion_avoidance");
  EXPECT_EQ(cubic->ssthresh(), end_of_css);  // RFC 9406: ssthresh = cwnd
  EXPECT_LT(s.cc->cwnd(), end_of_css + 2 * kMss);
  // No W_max yet: the curve starts convex from the window (K = 0).
  EXPECT_EQ(cubic->w_max(), 0.0);
  EXPECT_EQ(cubic->k(), 0.0);
}

TEST(RudpCcLoss, HystartRttDropInCssResumesSlowStart) {
  Sim s("cubic", true, milliseconds(50));
  s.round();
  s.round();
  s.rtt_path = milliseconds(60);
  s.round();
  ASSERT_EQ(s.cc->state(), "css");
  s.rtt_path = milliseconds(55);  // below the CSS baseline (60 ms)
  s.round();
  EXPECT_EQ(s.cc->state(), "slow_start");
  const uint64_t w = s.cc->cwnd();
  s.round();
  EXPECT_EQ(s.cc->cwnd(), 2 * (w / kMss) * kMss + w % kMss);
  EXPECT_EQ(s.cc->state(), "slow_start");
}

TEST(RudpCcLoss, HystartLossInCssGoesToAvoidance) {
  Sim s("cubic", true, milliseconds(50));
  s.round();
  s.round();
  s.rtt_path = milliseconds(60);
  s.round();
  ASSERT_EQ(s.cc->state(), "css");
  const uint64_t w = s.cc->cwnd();
  s.round(1);
  EXPECT_EQ(s.cc->cwnd(), static_cast<uint64_t>(w * 0.7));
  s.round();
  EXPECT_EQ(s.cc->state(), "congestion_avoidance");
}

}  // namespace
}  // namespace sluice::rudp::cc
