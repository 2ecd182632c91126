// Congestion controllers end to end on the simulated bottleneck
// (tests/rudp_cc_sim.h): real rudp sessions, a simulated link, virtual
// time. Each controller shows its textbook behaviour; flows of one
// controller share the link fairly.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

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


constexpr double kWire = 1428.0 / 1400.0;  // a datagram's bytes on the wire per payload byte

double utilisation(const CcResult& r, const LinkSpec& link, size_t flow, Ms from, Ms to) {
  return r.goodput(flow, from, to) * 8 / static_cast<double>(link.bps);
}

// Percentile of the bottleneck queue (bytes) over samples in [from, to).
double backlog_percentile(const CcResult& r, Ms from, Ms to, double p) {
  std::vector<double> v;
  for (const Sample& s : r.samples) {
    if (s.t >= from && s.t < to) v.push_back(static_cast<double>(s.backlog));
  }
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double backlog_mean(const CcResult& r, Ms from, Ms to) {
  double sum = 0;
  size_t n = 0;
  for (const Sample& s : r.samples) {
    if (s.t >= from && s.t < to) {
      sum += static_cast<double>(s.backlog);
      ++n;
    }
  }
  return n ? sum / static_cast<double>(n) : 0;
}

// The sample index where flow 0 first reports a loss at or after `from`.
size_t first_loss(const CcResult& r, size_t from = 1) {
  for (size_t i = std::max<size_t>(from, 1); i < r.samples.size(); ++i) {
    if (r.samples[i].flows[0].packets_lost > r.samples[i - 1].flows[0].packets_lost) return i;
  }
  return r.samples.size();
}

class SlowStart : public ::testing::TestWithParam<const char*> {};

// Slow start doubles the window every round trip (RFC 9002 §7.3.1; BBR's
// startup grows at least as fast), while the path is not yet full.
TEST_P(SlowStart, DoublesPerRoundTrip) {
  LinkSpec link{100'000'000, Ms(100), 1, 0};
  FlowSpec f;
  f.cc = GetParam();
  const CcResult r = run_flows(link, {f}, Ms(1500), Ms(10));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  // From the first window past the initial one, while below half a BDP.
  size_t i = 0;
  while (i < r.samples.size() && r.samples[i].flows[0].cwnd <= 14000) ++i;
  ASSERT_LT(i, r.samples.size());
  int rounds = 0;
  for (size_t j = i; j + 10 < r.samples.size(); j += 10) {  // 10 samples = 100 ms = 1 RTT
    const double a = static_cast<double>(r.samples[j].flows[0].cwnd);
    const double b = static_cast<double>(r.samples[j + 10].flows[0].cwnd);
    if (b > static_cast<double>(bdp_bytes(link)) / 2) break;
    std::printf("%s: cwnd %.0f -> %.0f (x%.2f)\n", GetParam(), a, b, b / a);
    EXPECT_GT(b / a, 1.7) << "round " << rounds;
    EXPECT_LT(b / a, 3.0) << "round " << rounds;
    ++rounds;
  }
  EXPECT_GE(rounds, 3);
}

// BBR's startup is not a window doubling (its pacing gain 2/ln2 doubles
// the delivery rate per round; BbrFindsTheBottleneck checks where it
// ends), and Vegas doubles every other round.
INSTANTIATE_TEST_SUITE_P(Cc, SlowStart, ::testing::Values("newreno", "cubic"));

// The multiplicative decrease: NewReno halves (RFC 9002 §7.3.2), CUBIC
// keeps 0.7 (RFC 9438 §4.6).
TEST(CcSim, ReductionOnLossIsHalfForNewRenoAndSevenTenthsForCubic) {
  for (auto [cc, beta] : {std::pair{"newreno", 0.5}, std::pair{"cubic", 0.7}}) {
    LinkSpec link{20'000'000, Ms(50), 1, 0};
    FlowSpec f;
    f.cc = cc;
    const CcResult r = run_flows(link, {f}, Ms(6000), Ms(1));
    ASSERT_TRUE(r.violations.empty()) << r.violations[0];
    const size_t i = first_loss(r);
    ASSERT_LT(i, r.samples.size()) << cc << ": no loss";
    const double before = static_cast<double>(r.samples[i - 1].flows[0].cwnd);
    const double after = static_cast<double>(r.samples[i].flows[0].cwnd);
    std::printf("%s: first loss at %lld ms: cwnd %.0f -> %.0f (x%.3f)\n", cc,
                static_cast<long long>(r.samples[i].t.count()), before, after, after / before);
    EXPECT_NEAR(after / before, beta, 0.03) << cc;
  }
}

// CUBIC's window after a loss follows W(t) = C (t - K)^3 + W_max (RFC 9438
// §4.2): concave up to a plateau at W_max, reached K after the epoch
// began, K = cbrt((W_max - cwnd_epoch) / C). A loss below the previous
// W_max sets W_max to 0.85 of the window (fast convergence, §4.7): the
// plateau then lies below the loss point, where it can be seen (without
// fast convergence it coincides with the queue's limit and the next loss).
TEST(CcSim, CubicFollowsItsCurveToAPlateauAtWmax) {
  LinkSpec link{20'000'000, Ms(100), 1, 0};
  FlowSpec f;
  f.cc = "cubic";
  const CcResult r = run_flows(link, {f}, Ms(40000), Ms(10));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  auto cwnd = [&](size_t i) { return static_cast<double>(r.samples[i].flows[0].cwnd); };
  // Reductions out of congestion avoidance, and the epochs between them.
  std::vector<size_t> cuts;
  for (size_t i = 1; i < r.samples.size(); ++i) {
    if (cwnd(i) < 0.9 * cwnd(i - 1) && r.samples[i - 1].flows[0].state == "congestion_avoidance") {
      cuts.push_back(i);
    }
  }
  ASSERT_GE(cuts.size(), 3u);
  int checked = 0;
  for (size_t e = 0; e + 1 < cuts.size(); ++e) {
    const size_t a = cuts[e], b = cuts[e + 1];
    const double w_loss = cwnd(a - 1), w_epoch = cwnd(a);
    EXPECT_NEAR(w_epoch / w_loss, 0.7, 0.01);
    // The plateau: where the window grows slowest (over +-0.5 s); a real
    // one grows less than 2% there.
    size_t p = 0;
    double slowest = 1e18;
    for (size_t i = a + 100; i + 50 < b; ++i) {
      const double g = cwnd(i + 50) - cwnd(i - 50);
      if (g < slowest) {
        slowest = g;
        p = i;
      }
    }
    if (p == 0 || slowest > 0.02 * cwnd(p)) continue;  // no fast convergence: W_max is at the queue's limit
    const double w_p = cwnd(p);
    const double k = std::cbrt((w_p - w_epoch) / 1400 / 0.4);
    const double t_p = static_cast<double>((r.samples[p].t - r.samples[a].t).count()) / 1000;
    const double half = cwnd(a + static_cast<size_t>(k * 50));  // samples are 10 ms apart
    std::printf("cubic epoch at %.1f s: loss at %.0f B, plateau %.0f B (%.3f of it) %.2f s in; "
                "K %.2f s; W(K/2) %.0f B\n",
                static_cast<double>(r.samples[a].t.count()) / 1000, w_loss, w_p, w_p / w_loss,
                t_p, k, half);
    EXPECT_NEAR(w_p / w_loss, 0.85, 0.03);
    EXPECT_NEAR(t_p, k, 0.2 * k + 0.3);
    // W(K/2) = W_max - (W_max - cwnd_epoch) / 8: concave, most of the way there.
    EXPECT_GT(half, w_p - (w_p - w_epoch) / 8 - 0.02 * w_p);
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

// BBR measures the bottleneck (delivery rate and min RTT), then drains
// the queue it built in startup and keeps it near empty.
TEST(CcSim, BbrFindsTheBottleneckAndDrainsTheQueue) {
  LinkSpec link{20'000'000, Ms(50), 1, 0};
  FlowSpec f;
  f.cc = "bbr";
  const CcResult r = run_flows(link, {f}, Ms(20000), Ms(10));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  print(r, 200);
  std::vector<std::string> states;
  for (const Sample& s : r.samples) {
    const std::string& st = s.flows[0].state;
    if (!st.empty() && (states.empty() || states.back() != st)) states.push_back(st);
  }
  ASSERT_GE(states.size(), 3u);
  EXPECT_EQ(states[0], "startup");
  EXPECT_EQ(states[1], "drain");
  EXPECT_EQ(states[2], "probe_bw");
  const Sample& end = r.samples.back();
  const double min_rtt_ms = static_cast<double>(end.flows[0].min_rtt_us) / 1000;
  EXPECT_GT(min_rtt_ms, 50);
  EXPECT_LT(min_rtt_ms, 55);
  // The estimate, seen through the pacing rate at gain 1 (6 of 8 phases).
  std::vector<double> pacing;
  for (const Sample& s : r.samples) {
    if (s.t >= Ms(5000) && s.flows[0].state == "probe_bw") {
      pacing.push_back(static_cast<double>(s.flows[0].pacing_rate) * 8 * kWire);
    }
  }
  ASSERT_FALSE(pacing.empty());
  std::sort(pacing.begin(), pacing.end());
  const double median = pacing[pacing.size() / 2];
  const double q95 = backlog_percentile(r, Ms(5000), Ms(20000), 0.95);
  const double util = utilisation(r, link, 0, Ms(2000), Ms(20000)) * kWire;
  std::printf("bbr: min_rtt %.2f ms, median pacing %.2f Mbit/s, queue p95 %.0f B (%.2f BDP), "
              "utilisation %.3f\n",
              min_rtt_ms, median / 1e6, q95, q95 / static_cast<double>(bdp_bytes(link)), util);
  EXPECT_NEAR(median / static_cast<double>(link.bps), 1.0, 0.1);
  EXPECT_LE(q95, 0.25 * static_cast<double>(bdp_bytes(link)));
  EXPECT_GE(util, 0.9);
}

// Vegas holds alpha..beta packets in the bottleneck's queue.
TEST(CcSim, VegasKeepsAlphaToBetaPacketsQueued) {
  LinkSpec link{20'000'000, Ms(50), 1, 0};
  FlowSpec f;
  f.cc = "vegas";
  const CcResult r = run_flows(link, {f}, Ms(20000), Ms(10));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  print(r, 200);
  const double mean_pkts = backlog_mean(r, Ms(5000), Ms(20000)) / 1428;
  const double util = utilisation(r, link, 0, Ms(2000), Ms(20000)) * kWire;
  std::printf("vegas: mean queue %.2f packets, utilisation %.3f\n", mean_pkts, util);
  EXPECT_GE(mean_pkts, 1.0);
  EXPECT_LE(mean_pkts, 5.0);
  EXPECT_GE(util, 0.9);
}

class CleanLink : public ::testing::TestWithParam<const char*> {};

// Every controller fills a clean link with a 1-BDP queue after startup.
TEST_P(CleanLink, UsesNinetyPercentOfTheLink) {
  LinkSpec link{20'000'000, Ms(50), 1, 0};
  FlowSpec f;
  f.cc = GetParam();
  const CcResult r = run_flows(link, {f}, Ms(20000), Ms(10));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  const double util = utilisation(r, link, 0, Ms(3000), Ms(20000)) * kWire;
  const double q95 = backlog_percentile(r, Ms(3000), Ms(20000), 0.95);
  std::printf("%s: utilisation %.3f, queue p95 %.2f BDP\n", GetParam(), util,
              q95 / static_cast<double>(bdp_bytes(link)));
  EXPECT_GE(util, 0.9);
}

INSTANTIATE_TEST_SUITE_P(Cc, CleanLink, ::testing::Values("newreno", "cubic", "bbr", "vegas"));

class Fairness : public ::testing::TestWithParam<const char*> {};

// Two flows of one controller, the second 2 s late, share the link.
TEST_P(Fairness, TwoFlowsShareTheLink) {
  LinkSpec link{20'000'000, Ms(40), 1, 0};
  FlowSpec a, b;
  a.cc = b.cc = GetParam();
  b.start = Ms(2000);
  const CcResult r = run_flows(link, {a, b}, Ms(40000), Ms(10));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  const double x = r.goodput(0, Ms(10000), Ms(40000)), y = r.goodput(1, Ms(10000), Ms(40000));
  const double j = jain({x, y});
  const double util = (x + y) * 8 * kWire / static_cast<double>(link.bps);
  std::printf("%s: %.2f and %.2f Mbit/s, Jain %.3f, utilisation %.3f\n", GetParam(), x * 8 / 1e6,
              y * 8 / 1e6, j, util);
  // The loss-based controllers converge (both see the same losses). Vegas
  // favours the late flow: it measures its base RTT with the first flow's
  // queue already in it, so it wants more queued than it thinks; BBR v1's
  // flows probe in turn and settle less evenly.
  const std::string cc = GetParam();
  EXPECT_GE(j, cc == "newreno" || cc == "cubic" ? 0.95 : 0.9);
  EXPECT_GE(util, 0.85);
}

INSTANTIATE_TEST_SUITE_P(Cc, Fairness, ::testing::Values("newreno", "cubic", "bbr", "vegas"));

// RTT fairness: flows of 20 and 80 ms through one bottleneck. NewReno's
// window grows one segment per RTT, so the short flow takes far more;
// CUBIC's growth runs on real time, which narrows the gap (RFC 9438 §1).
// BBR v1 leans the other way: its window is 2 x bandwidth x its own min
// RTT, so the long flow keeps more in flight (printed, not a target).
TEST(CcSim, CubicIsFairerThanNewRenoAcrossRtts) {
  std::map<std::string, double> ratio;
  for (const char* cc : {"newreno", "cubic", "bbr"}) {
    LinkSpec link{20'000'000, Ms(20), 1, 0};
    FlowSpec a, b;
    a.cc = b.cc = cc;
    b.extra_rtt = Ms(60);
    const CcResult r = run_flows(link, {a, b}, Ms(40000), Ms(10));
    ASSERT_TRUE(r.violations.empty()) << r.violations[0];
    const double x = r.goodput(0, Ms(10000), Ms(40000)), y = r.goodput(1, Ms(10000), Ms(40000));
    ratio[cc] = x / y;
    std::printf("%s: 20 ms flow %.2f Mbit/s, 80 ms flow %.2f Mbit/s: ratio %.2f\n", cc,
                x * 8 / 1e6, y * 8 / 1e6, x / y);
  }
  EXPECT_GT(ratio["newreno"], 3);
  EXPECT_LT(ratio["cubic"], 0.6 * ratio["newreno"]);
}

// Random loss is not congestion: at 1% loss, the loss-based controllers
// keep cutting their windows (Mathis: rate ~ 1.22 MSS / (RTT sqrt(p))),
// while BBR, which ignores loss below its threshold, keeps the link busy.
TEST(CcSim, RandomLossCollapsesLossBasedControllersButNotBbr) {
  std::map<std::string, double> util;
  for (const char* cc : {"newreno", "cubic", "bbr"}) {
    LinkSpec link{20'000'000, Ms(50), 1, 0.01};
    FlowSpec f;
    f.cc = cc;
    const CcResult r = run_flows(link, {f}, Ms(20000), Ms(10));
    ASSERT_TRUE(r.violations.empty()) << r.violations[0];
    util[cc] = utilisation(r, link, 0, Ms(3000), Ms(20000)) * kWire;
    std::printf("%s at 1%% random loss: utilisation %.3f\n", cc, util[cc]);
  }
  EXPECT_GE(util["bbr"], 0.8);
  EXPECT_LT(util["newreno"], 0.6);
  EXPECT_GT(util["bbr"], 1.5 * util["cubic"]);
}

// At 5% random loss on a 100 Mbit/s path a loss arrives every few
// hundred microseconds: BBR's recovery periods follow each other without a
// gap, and each must still end (restoring the window) before the next
// cuts it, or the window and the estimate spiral down.
TEST(CcSim, BbrKeepsHalfTheLinkAtFivePercentLoss) {
  LinkSpec link{100'000'000, Ms(50), 1, 0.05};
  FlowSpec f;
  f.cc = "bbr";
  const CcResult r = run_flows(link, {f}, Ms(10000), Ms(10));
  ASSERT_TRUE(r.violations.empty()) << r.violations[0];
  print(r, 100);
  const double util = utilisation(r, link, 0, Ms(2000), Ms(10000)) * kWire;
  std::printf("bbr at 5%% random loss, 100 Mbit/s: utilisation %.3f\n", util);
  EXPECT_GE(util, 0.5);
}

uint64_t total_ce(const CcResult& r) {
  uint64_t n = 0;
  for (const FlowSample& f : r.samples.back().flows) n += f.ecn_ce;
  return n;
}

// A queue of 2 BDP, marked above 1/4 BDP: NewReno backs off at the
// marks (RFC 9002 §7.1: a CE report is a congestion event) and never fills the queue (no drops), and keeps the link busy.
TEST(CcSimEcn, MarksMakeALossBasedFlowBackOffWithoutDrops) {
  LinkSpec link;
  link.queue_bdp = 2;
  link.ecn_threshold = 0.25;
  FlowSpec f;
  f.cc = "newreno";
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
  LinkSpec link;
  link.queue_bdp = 2;
  link.ecn_threshold = 0.25;
  FlowSpec f;
  f.cc = "newreno";
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
