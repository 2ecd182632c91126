// Congestion controllers end to end on the simulated bottleneck
// (tests/rudp_cc_sim.h): real rudp sessions, a simulated link, virtual
// time. Each controller shows its textbook behaviour; flows of one
// controller share the link fairly.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>

#include "rudp/cc/registry.h"
#include "tests/rudp_cc_sim.h"

namespace sluice::rudptest {
namespace {

void print(const CcResult& r, size_t every = 50) {
  for (size_t i = 0; i < r.samples.size(); i += every) {
    const Sample& s = r.samples[i];
    std::printf("t=%6lld ms q=%7llu", static_cast<long long>(s.t.count()),
                static_cast<unsigned long long>(s.backlog));
    for (const FlowSample& f : s.flows) {
      std::printf(" | %s cwnd %llu rtt %.1f bw %.2f Mb/s rx %llu", f.state.c_str(),
                  static_cast<unsigned long long>(f.cwnd), f.srtt_us / 1000.0,
                  f.delivery_rate * 8 / 1e6, static_cast<unsigned long long>(f.received));
    }
    std::printf("\n");
  }
}

TEST(CcSim, FixedWindowOfOneBdpFillsTheLink) {
  LinkSpec link;
  FlowSpec f;
  f.cc = "fixed";
  f.config.fixed_window = bdp_bytes(link) * 1428 / 1400;
  const CcResult r = run_flows(link, {f}, Ms(5000));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  print(r, 100);
  const double util = r.goodput(0, Ms(1000), Ms(5000)) * 8 / static_cast<double>(link.bps);
  EXPECT_GT(util, 0.9);
}

// A test-only loss-based controller (this branch has only "fixed"):
// slow start (the window grows by what is acknowledged) until the first
// congestion event, then Reno's additive increase; the window halves on a
// loss or CE report, once per recovery period (RFC 9002 §7.3.2: events
// for packets sent before the reduction do not count again).
class Halving final : public rudp::cc::Controller {
 public:
  explicit Halving(const rudp::cc::Config& c)
      : mss_(c.max_datagram), cwnd_(c.initial_window_packets * c.max_datagram),
        min_(c.min_window_packets * c.max_datagram) {}
  std::string_view name() const override { return "halving"; }
  void on_sent(rudp::Clock::time_point, uint64_t, uint64_t) override {}
  void on_ack(const rudp::cc::AckEvent& ev) override {
    if (recovering_ && ev.largest_sent <= recovery_start_) return;
    recovering_ = false;
    if (!reduced_) {
      cwnd_ += ev.bytes_acked;
    } else {
      cwnd_ += std::max<uint64_t>(1, mss_ * ev.bytes_acked / cwnd_);
    }
  }
  void on_loss(const rudp::cc::LossEvent& ev) override {
    if (recovering_ && ev.largest_lost_sent <= recovery_start_) return;
    recovering_ = true;
    reduced_ = true;
    recovery_start_ = ev.now;
    cwnd_ = std::max(min_, cwnd_ / 2);
  }
  void on_persistent_congestion(rudp::Clock::time_point) override { cwnd_ = min_; }
  uint64_t cwnd() const override { return cwnd_; }
  uint64_t pacing_rate() const override { return 0; }
  std::string_view state() const override { return recovering_ ? "recovery" : "open"; }

 private:
  uint64_t mss_, cwnd_, min_;
  bool reduced_ = false, recovering_ = false;
  rudp::Clock::time_point recovery_start_{};
};

void register_halving() {
  static bool done = [] {
    rudp::cc::register_for_tests("halving", [](const rudp::cc::Config& c)
                                     -> std::unique_ptr<rudp::cc::Controller> {
      return std::make_unique<Halving>(c);
    });
    return true;
  }();
  (void)done;
}

uint64_t total_ce(const CcResult& r) {
  uint64_t n = 0;
  for (const FlowSample& f : r.samples.back().flows) n += f.ecn_ce;
  return n;
}

// A queue of 2 BDP, marked above 1/4 BDP: a reacting flow backs off at the
// marks and never fills the queue (no drops), and keeps the link busy.
TEST(CcSimEcn, MarksMakeALossBasedFlowBackOffWithoutDrops) {
  register_halving();
  LinkSpec link;
  link.queue_bdp = 2;
  link.ecn_threshold = 0.25;
  FlowSpec f;
  f.cc = "halving";
  const CcResult r = run_flows(link, {f}, Ms(4000));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  print(r, 50);
  const FlowSample& last = r.samples.back().flows[0];
  EXPECT_GT(r.bottleneck_ce_marks, 0u);
  EXPECT_GT(last.ecn_ce, 0u);  // reported back by the server's ACK_ECN
  EXPECT_LE(last.ecn_ce, r.bottleneck_ce_marks);
  EXPECT_FALSE(last.ecn_failed);
  EXPECT_EQ(r.bottleneck_drops, 0u);
  EXPECT_EQ(last.packets_lost, 0u);
  uint64_t max_backlog = 0;
  for (const Sample& s : r.samples) {
    if (s.t > Ms(1000)) max_backlog = std::max(max_backlog, s.backlog);
  }
  EXPECT_LT(max_backlog, bdp_bytes(link));  // well below the 2 BDP queue
  const double util = r.goodput(0, Ms(1000), Ms(4000)) * 8 / static_cast<double>(link.bps);
  EXPECT_GT(util, 0.8);
}

// The same link without ECN on the flow: nothing is marked, the queue
// fills and drops, and only losses slow the flow down.
TEST(CcSimEcn, WithoutEcnTheFlowLearnsFromDrops) {
  register_halving();
  LinkSpec link;
  link.queue_bdp = 2;
  link.ecn_threshold = 0.25;
  FlowSpec f;
  f.cc = "halving";
  f.ecn = false;
  const CcResult r = run_flows(link, {f}, Ms(4000));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  EXPECT_EQ(r.bottleneck_ce_marks, 0u);
  EXPECT_EQ(total_ce(r), 0u);
  EXPECT_GT(r.bottleneck_drops, 0u);
  EXPECT_GT(r.samples.back().flows[0].packets_lost, 0u);
}

// "fixed" does not react: marks are counted and reported, the window
// stays where it is.
TEST(CcSimEcn, FixedCountsMarksButKeepsItsWindow) {
  LinkSpec link;
  link.queue_bdp = 2;
  link.ecn_threshold = 0.25;
  FlowSpec f;
  f.cc = "fixed";
  f.config.fixed_window = bdp_bytes(link) * 3 / 2;
  const CcResult r = run_flows(link, {f}, Ms(2000));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  const FlowSample& last = r.samples.back().flows[0];
  EXPECT_GT(last.ecn_ce, 0u);
  EXPECT_FALSE(last.ecn_failed);
  EXPECT_EQ(last.cwnd, f.config.fixed_window);
}

}  // namespace
}  // namespace sluice::rudptest
