// Congestion controllers end to end on the simulated bottleneck
// (tests/rudp_cc_sim.h): real rudp sessions, a simulated link, virtual
// time. Each controller shows its textbook behaviour; flows of one
// controller share the link fairly.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace sluice::rudptest
