// The link model of linkem on virtual time (no IO): every option's effect,
// and the option parsing. Statistical checks are seeded and use tolerances
// of several standard deviations, so they are deterministic and not flaky.
#include "perf/linkem_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "perf/linkem_config.h"

namespace sluice::perf::linkem {
namespace {

constexpr int64_t kMs = 1'000'000;

// A packet of `size` bytes whose first 4 bytes carry `id`.
Bytes packet(uint32_t id, size_t size = 100) {
  Bytes b(size, 0);
  for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(id >> (8 * i));
  return b;
}
uint32_t id_of(const Bytes& b) {
  uint32_t id = 0;
  for (int i = 0; i < 4; ++i) id |= static_cast<uint32_t>(b[i]) << (8 * i);
  return id;
}

struct Delivery {
  uint32_t id;
  int64_t at_ns;
};

// Offers `n` packets, one every `gap_ns` from t = 0, and runs the model to
// completion, releasing each packet exactly at its release time.
std::vector<Delivery> run(LinkModel& m, int n, int64_t gap_ns, size_t size = 100) {
  std::vector<Delivery> out;
  Bytes b;
  auto drain = [&](int64_t until) {
    for (int64_t t = m.next_release_ns(); t >= 0 && t <= until; t = m.next_release_ns())
      while (m.pop_due(t, b)) out.push_back({id_of(b), t});
  };
  for (int i = 0; i < n; ++i) {
    const int64_t now = i * gap_ns;
    drain(now);
    m.offer(now, packet(static_cast<uint32_t>(i), size));
  }
  drain(INT64_MAX);
  return out;
}

TEST(LinkemModel, DelayIsExact) {
  LinkParams p;
  p.delay_ns = 30 * kMs;
  LinkModel m(p, 1, 0);
  const auto d = run(m, 100, 7 * kMs);
  ASSERT_EQ(d.size(), 100u);
  for (const auto& x : d) EXPECT_EQ(x.at_ns, x.id * 7 * kMs + 30 * kMs);
  EXPECT_EQ(m.stats().delivered, 100);
  EXPECT_EQ(m.stats().out_of_order, 0);
  EXPECT_EQ(m.in_flight(), 0u);
}

TEST(LinkemModel, NothingDueBeforeRelease) {
  LinkParams p;
  p.delay_ns = 5 * kMs;
  LinkModel m(p, 1, 0);
  m.offer(0, packet(1));
  Bytes b;
  EXPECT_FALSE(m.pop_due(5 * kMs - 1, b));
  EXPECT_EQ(m.next_release_ns(), 5 * kMs);
  EXPECT_TRUE(m.pop_due(5 * kMs, b));
  EXPECT_EQ(id_of(b), 1u);
  EXPECT_EQ(m.next_release_ns(), -1);
}

TEST(LinkemModel, JitterWithinBoundsAndNeverReorders) {
  LinkParams p;
  p.delay_ns = 40 * kMs;
  p.jitter_ns = 16 * kMs;
  LinkModel m(p, 7, 0);
  // Packets 1 ms apart, jitter 16 ms: unconstrained they would reorder a lot.
  const auto d = run(m, 5000, 1 * kMs);
  ASSERT_EQ(d.size(), 5000u);
  int64_t prev = -1, min_delay = INT64_MAX, max_delay = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    EXPECT_EQ(d[i].id, i) << "jitter reordered packets";
    EXPECT_GE(d[i].at_ns, prev);
    prev = d[i].at_ns;
    const int64_t delay = d[i].at_ns - d[i].id * kMs;
    min_delay = std::min(min_delay, delay);
    max_delay = std::max(max_delay, delay);
  }
  EXPECT_GE(min_delay, 24 * kMs);
  EXPECT_LE(max_delay, 56 * kMs);
  EXPECT_EQ(m.stats().out_of_order, 0);
}

TEST(LinkemModel, JitterSparseTrafficIsUniform) {
  // Packets far apart (gap > 2 * jitter): the monotonic rule never binds,
  // so delays are the plain uniform distribution, mean = delay.
  LinkParams p;
  p.delay_ns = 46 * kMs;
  p.jitter_ns = 16 * kMs;
  LinkModel m(p, 3, 0);
  const auto d = run(m, 20000, 40 * kMs);
  double sum = 0;
  int64_t lo = INT64_MAX, hi = 0;
  for (const auto& x : d) {
    const int64_t delay = x.at_ns - x.id * 40 * kMs;
    sum += static_cast<double>(delay);
    lo = std::min(lo, delay);
    hi = std::max(hi, delay);
  }
  EXPECT_NEAR(sum / static_cast<double>(d.size()) / kMs, 46.0, 0.3);
  EXPECT_LT(lo, 31 * kMs);  // both ends of [30, 62] ms are reached
  EXPECT_GT(hi, 61 * kMs);
  EXPECT_GE(lo, 30 * kMs);
  EXPECT_LE(hi, 62 * kMs);
}

TEST(LinkemModel, JitterOrderPerFlow) {
  // 50 flows taking turns 0.5 ms apart (each flow: one packet per 25 ms),
  // jitter +-16 ms: each flow stays in order, the flows pass each other,
  // and the delay keeps its uniform mean, where one order for the whole
  // link pushes it towards delay + jitter.
  LinkParams p;
  p.delay_ns = 46 * kMs;
  p.jitter_ns = 16 * kMs;
  p.order_per_flow = true;
  LinkModel m(p, 21, 0);
  const int n = 20000, flows = 50;
  const int64_t gap = kMs / 2;
  for (int i = 0; i < n; ++i) m.offer(i * gap, packet(static_cast<uint32_t>(i)), /*flow=*/i % flows + 100);
  std::vector<Delivery> d;
  Bytes b;
  for (int64_t t = m.next_release_ns(); t >= 0; t = m.next_release_ns())
    while (m.pop_due(t, b)) d.push_back({id_of(b), t});
  ASSERT_EQ(d.size(), static_cast<size_t>(n));
  std::vector<int64_t> last_id(flows, -1);
  double sum = 0;
  for (const auto& x : d) {
    EXPECT_GT(static_cast<int64_t>(x.id), last_id[x.id % flows]) << "a flow was reordered";
    last_id[x.id % flows] = x.id;
    sum += static_cast<double>(x.at_ns - x.id * gap);
  }
  EXPECT_GT(m.stats().out_of_order, 0);  // across flows
  const double per_flow_mean = sum / n / kMs;
  EXPECT_NEAR(per_flow_mean, 46.0, 0.5);

  p.order_per_flow = false;
  LinkModel link(p, 21, 0);
  double link_sum = 0;
  for (const auto& x : run(link, n, gap)) link_sum += static_cast<double>(x.at_ns - x.id * gap);
  EXPECT_GT(link_sum / n / kMs, 55.0);  // the price of one order for the link
}

TEST(LinkemModel, FlowKey) {
  // IPv4 TCP 10.0.0.1:1000 -> 10.0.0.2:80.
  Bytes v4(40, 0);
  v4[0] = 0x45;
  v4[9] = 6;
  const uint8_t src[] = {10, 0, 0, 1}, dst[] = {10, 0, 0, 2};
  std::copy(src, src + 4, v4.begin() + 12);
  std::copy(dst, dst + 4, v4.begin() + 16);
  v4[20] = 1000 >> 8;
  v4[21] = 1000 & 0xff;
  v4[23] = 80;
  const uint64_t k = flow_key(v4.data(), v4.size());
  EXPECT_NE(k, 0u);
  Bytes same = v4;
  same[30] = 0x55;  // payload bytes do not matter
  EXPECT_EQ(flow_key(same.data(), same.size()), k);
  Bytes other_port = v4;
  other_port[21] = 1001 & 0xff;
  EXPECT_NE(flow_key(other_port.data(), other_port.size()), k);
  Bytes other_proto = v4;
  other_proto[9] = 17;
  EXPECT_NE(flow_key(other_proto.data(), other_proto.size()), k);
  EXPECT_EQ(flow_key(v4.data(), 10), 0u);  // truncated
  Bytes v6(60, 0);
  v6[0] = 0x60;
  v6[6] = 17;
  v6[40] = 0x12;
  const uint64_t k6 = flow_key(v6.data(), v6.size());
  v6[41] = 0x34;
  EXPECT_NE(flow_key(v6.data(), v6.size()), k6);
}

TEST(LinkemModel, RandomLossRate) {
  LinkParams p;
  p.loss = 0.05;
  LinkModel m(p, 11, 0);
  const int n = 100000;
  const auto d = run(m, n, kMs);
  const auto& s = m.stats();
  // sd of the count = sqrt(n p (1-p)) ~ 69; allow 5 sd.
  EXPECT_NEAR(static_cast<double>(s.lost_random), n * 0.05, 350);
  EXPECT_EQ(s.lost_ge, 0);
  EXPECT_EQ(s.delivered + s.lost_random, n);
  EXPECT_EQ(static_cast<int64_t>(d.size()), s.delivered);
}

TEST(LinkemModel, GilbertElliottBurstLength) {
  LinkParams p;
  p.ge_p = 0.01;
  p.ge_r = 0.25;  // mean burst 4 packets; stationary loss p/(p+r) = 1/26
  LinkModel m(p, 5, 0);
  const int n = 200000;
  const auto d = run(m, n, kMs);
  std::vector<bool> got(n, false);
  for (const auto& x : d) got[x.id] = true;
  int64_t bursts = 0, lost = 0;
  for (int i = 0; i < n; ++i) {
    if (!got[i]) {
      ++lost;
      if (i == 0 || got[i - 1]) ++bursts;
    }
  }
  ASSERT_GT(bursts, 500);
  const double mean_burst = static_cast<double>(lost) / static_cast<double>(bursts);
  EXPECT_NEAR(mean_burst, 1 / p.ge_r, 0.25);
  EXPECT_NEAR(static_cast<double>(lost) / n, p.ge_p / (p.ge_p + p.ge_r), 0.006);
  EXPECT_EQ(m.stats().lost_ge, lost);
  EXPECT_EQ(m.stats().lost_random, 0);
}

TEST(LinkemModel, GilbertElliottPlusRandomLossCountedApart) {
  LinkParams p;
  p.ge_p = 0.01;
  p.ge_r = 0.5;
  p.loss = 0.02;
  LinkModel m(p, 9, 0);
  run(m, 50000, kMs);
  const auto& s = m.stats();
  EXPECT_GT(s.lost_ge, 0);
  EXPECT_GT(s.lost_random, 0);
  EXPECT_EQ(s.delivered + s.lost_ge + s.lost_random, 50000);
}

TEST(LinkemModel, Duplication) {
  LinkParams p;
  p.dup = 0.1;
  p.delay_ns = 2 * kMs;
  LinkModel m(p, 13, 0);
  const int n = 20000;
  const auto d = run(m, n, kMs);
  const auto& s = m.stats();
  EXPECT_NEAR(static_cast<double>(s.duplicated), n * 0.1, 250);
  EXPECT_EQ(s.delivered, n + s.duplicated);
  EXPECT_EQ(static_cast<int64_t>(d.size()), s.delivered);
  // A duplicate arrives right behind its original.
  int64_t adjacent = 0;
  for (size_t i = 1; i < d.size(); ++i) adjacent += d[i].id == d[i - 1].id;
  EXPECT_EQ(adjacent, s.duplicated);
}

TEST(LinkemModel, ReorderingHappens) {
  LinkParams p;
  p.delay_ns = 10 * kMs;
  p.reorder = 0.05;
  p.reorder_ns = 5 * kMs;
  LinkModel m(p, 17, 0);
  const int n = 10000;
  const auto d = run(m, n, kMs);
  const auto& s = m.stats();
  EXPECT_NEAR(static_cast<double>(s.reordered), n * 0.05, 120);
  ASSERT_EQ(d.size(), static_cast<size_t>(n));
  int64_t inversions = 0;
  for (size_t i = 1; i < d.size(); ++i) inversions += d[i].id < d[i - 1].id;
  EXPECT_GT(inversions, n * 0.03);
  // Every adjacent inversion is a packet delivered behind a later one.
  EXPECT_GE(s.out_of_order, inversions);
  for (const auto& x : d) {
    const int64_t delay = x.at_ns - x.id * kMs;
    EXPECT_TRUE(delay == 10 * kMs || delay == 15 * kMs) << delay;
  }
}

TEST(LinkemModel, RateSerializationIsExact) {
  LinkParams p;
  p.rate_bps = 8'000'000;  // 1 byte/us: a 1000-byte packet takes 1 ms
  p.delay_ns = 20 * kMs;
  LinkModel m(p, 1, 0);
  // A burst of 10 packets at t = 0: they leave 1 ms apart.
  for (uint32_t i = 0; i < 10; ++i) m.offer(0, packet(i, 1000));
  EXPECT_EQ(m.stats().max_queue_packets, 10);
  EXPECT_EQ(m.stats().max_queue_bytes, 10000);
  Bytes b;
  for (uint32_t i = 0; i < 10; ++i) {
    const int64_t t = (i + 1) * kMs + 20 * kMs;
    EXPECT_FALSE(m.pop_due(t - 1, b));
    EXPECT_EQ(m.next_release_ns(), t);
    ASSERT_TRUE(m.pop_due(t, b));
    EXPECT_EQ(id_of(b), i);
  }
  // An idle link: the next packet serializes from when it arrives.
  m.offer(100 * kMs, packet(99, 500));
  EXPECT_EQ(m.next_release_ns(), 100 * kMs + kMs / 2 + 20 * kMs);
}

// One-way delay statistics: release - offer of delivered packets only
// (queueing + serialization + propagation), not of lost or pending ones.
TEST(LinkemModel, OneWayDelayStatistics) {
  LinkParams p;
  p.rate_bps = 8'000'000;  // 1000 B = 1 ms
  p.delay_ns = 20 * kMs;
  LinkModel m(p, 1, 0);
  EXPECT_EQ(m.delay().count, 0);
  EXPECT_EQ(m.delay().p95_ms, 0);
  // A burst of 10 at t = 0: packet i waits i ms in the queue, takes 1 ms to
  // serialize and 20 ms to cross: 21, 22, ..., 30 ms.
  for (uint32_t i = 0; i < 10; ++i) m.offer(0, packet(i, 1000));
  Bytes b;
  // Popped late (at 1 s): the delay is the model's, not the caller's.
  while (m.pop_due(1000 * kMs, b)) {
  }
  const DelaySummary d = m.delay();
  EXPECT_EQ(d.count, 10);
  EXPECT_NEAR(d.mean_ms, 25.5, 1e-9);
  EXPECT_NEAR(d.p50_ms, 25.0, 0.25);  // 2 significant digits: within 1%
  EXPECT_NEAR(d.p95_ms, 30.0, 0.3);
  EXPECT_NEAR(d.p99_ms, 30.0, 0.3);
  EXPECT_EQ(d.max_ms, 30.0);
  // A packet still in flight is not counted; nor is a lost one.
  m.offer(2000 * kMs, packet(10, 1000));
  EXPECT_EQ(m.delay().count, 10);

  LinkParams lossy;
  lossy.loss = 1;
  lossy.delay_ns = 5 * kMs;
  LinkModel l(lossy, 1, 0);
  l.offer(0, packet(0));
  while (l.pop_due(INT64_MAX, b)) {
  }
  EXPECT_EQ(l.delay().count, 0);
}

TEST(LinkemModel, RateRoundsSerializationUp) {
  LinkParams p;
  p.rate_bps = 3;  // 1 byte = 8/3 s
  LinkModel m(p, 1, 0);
  m.offer(0, packet(0, 4));
  EXPECT_EQ(m.next_release_ns(), (32'000'000'000 + 2) / 3);
}

TEST(LinkemModel, DropTailByPackets) {
  LinkParams p;
  p.rate_bps = 8'000'000;
  p.queue_packets = 4;
  LinkModel m(p, 1, 0);
  for (uint32_t i = 0; i < 10; ++i) m.offer(0, packet(i, 1000));
  EXPECT_EQ(m.stats().queue_drops, 6);
  EXPECT_EQ(m.stats().queue_drop_bytes, 6000);
  EXPECT_EQ(m.stats().max_queue_packets, 4);
  // At 1 ms the first has left the serializer: room for exactly one more.
  m.offer(kMs, packet(10, 1000));
  m.offer(kMs, packet(11, 1000));
  EXPECT_EQ(m.stats().queue_drops, 7);
  std::vector<uint32_t> ids;
  Bytes b;
  while (m.pop_due(INT64_MAX, b)) ids.push_back(id_of(b));
  EXPECT_EQ(ids, (std::vector<uint32_t>{0, 1, 2, 3, 10}));
}

TEST(LinkemModel, DropTailByBytes) {
  LinkParams p;
  p.rate_bps = 8'000'000;
  p.queue_packets = 0;
  p.queue_bytes = 2500;
  LinkModel m(p, 1, 0);
  m.offer(0, packet(0, 1000));
  m.offer(0, packet(1, 1000));
  m.offer(0, packet(2, 1000));  // 3000 > 2500: dropped
  m.offer(0, packet(3, 500));   // 2500: fits exactly
  m.offer(0, packet(4, 100));   // dropped
  EXPECT_EQ(m.stats().queue_drops, 2);
  EXPECT_EQ(m.stats().queue_drop_bytes, 1100);
  EXPECT_EQ(m.stats().max_queue_bytes, 2500);
  EXPECT_EQ(m.stats().max_queue_packets, 3);
}

TEST(LinkemModel, ThroughputMatchesRateUnderOverload) {
  LinkParams p;
  p.rate_bps = 10'000'000;
  p.queue_packets = 50;
  LinkModel m(p, 1, 0);
  // Offer 20 Mbit/s of 1250-byte packets (one every 0.5 ms) for 1 s.
  const auto d = run(m, 2000, kMs / 2, 1250);
  const int64_t last = d.back().at_ns;
  const double mbit = static_cast<double>(m.stats().bytes_delivered) * 8 / (static_cast<double>(last) / 1e9) / 1e6;
  EXPECT_NEAR(mbit, 10.0, 0.05);
  EXPECT_NEAR(static_cast<double>(m.stats().queue_drops), 1000, 60);
}

TEST(LinkemModel, ReproducibleBySeedAndIndependentStreams) {
  LinkParams p;
  p.loss = 0.1;
  p.jitter_ns = 3 * kMs;
  p.delay_ns = 10 * kMs;
  p.dup = 0.05;
  p.reorder = 0.05;
  LinkModel a(p, 42, 0), b(p, 42, 0), c(p, 43, 0), other_dir(p, 42, 1);
  const auto da = run(a, 5000, kMs), db = run(b, 5000, kMs), dc = run(c, 5000, kMs),
             dd = run(other_dir, 5000, kMs);
  ASSERT_EQ(da.size(), db.size());
  for (size_t i = 0; i < da.size(); ++i) {
    EXPECT_EQ(da[i].id, db[i].id);
    EXPECT_EQ(da[i].at_ns, db[i].at_ns);
  }
  auto ids = [](const std::vector<Delivery>& d) {
    std::vector<uint32_t> v;
    for (const auto& x : d) v.push_back(x.id);
    return v;
  };
  EXPECT_NE(ids(da), ids(dc));
  EXPECT_NE(ids(da), ids(dd));

  // The same seed loses the same packets whether or not jitter is on.
  LinkParams q = p;
  q.jitter_ns = 0;
  q.dup = 0;
  q.reorder = 0;
  LinkParams r = q;
  r.jitter_ns = 8 * kMs;
  LinkModel e(q, 42, 0), f(r, 42, 0);
  auto sorted_ids = [&](const std::vector<Delivery>& d) {
    auto v = ids(d);
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted_ids(run(e, 5000, kMs)), sorted_ids(run(f, 5000, kMs)));
}

TEST(LinkemModel, Validate) {
  LinkParams p;
  EXPECT_EQ(validate(p), "");
  p.loss = 1.5;
  EXPECT_NE(validate(p), "");
  p.loss = 0;
  p.ge_p = 0.1;
  p.ge_r = 0;
  EXPECT_NE(validate(p), "");
  p.ge_r = 0.5;
  p.rate_bps = 1000;
  p.queue_packets = 0;
  EXPECT_NE(validate(p), "");
  p.queue_bytes = 10000;
  EXPECT_EQ(validate(p), "");
}

TEST(LinkemConfig, ParseRate) {
  std::string err;
  EXPECT_EQ(parse_rate("100mbit", &err), 100'000'000);
  EXPECT_EQ(parse_rate("100Mbit", &err), 100'000'000);
  EXPECT_EQ(parse_rate("1.5gbit", &err), 1'500'000'000);
  EXPECT_EQ(parse_rate("64kbit", &err), 64'000);
  EXPECT_EQ(parse_rate("2000000", &err), 2'000'000);
  EXPECT_EQ(parse_rate("12.5mbps", &err), 100'000'000);
  EXPECT_EQ(parse_rate("0", &err), 0);
  EXPECT_EQ(parse_rate("100 mbit", &err), -1);
  EXPECT_NE(err.find("bad rate"), std::string::npos);
  EXPECT_EQ(parse_rate("fast", &err), -1);
  EXPECT_EQ(parse_rate("10mb", &err), -1);
  EXPECT_EQ(parse_rate("", &err), -1);
  EXPECT_EQ(parse_rate("-5mbit", &err), -1);
  EXPECT_EQ(parse_rate("2tbit", &err), -1);
}

TEST(LinkemConfig, ParamSpecs) {
  auto apply = [](const char* name, const std::string& v, LinkParams& p) {
    for (const auto& s : param_specs())
      if (std::string(s.name) == name) return s.apply(p, v);
    return std::string("no such option");
  };
  LinkParams p;
  EXPECT_EQ(apply("delay-ms", "30.5", p), "");
  EXPECT_EQ(p.delay_ns, 30'500'000);
  EXPECT_EQ(apply("loss", "0.05", p), "");
  EXPECT_EQ(p.loss, 0.05);
  EXPECT_NE(apply("loss", "1.2", p), "");
  EXPECT_NE(apply("loss", "5%", p), "");
  EXPECT_NE(apply("delay-ms", "-1", p), "");
  EXPECT_NE(apply("delay-ms", "abc", p), "");
  EXPECT_EQ(apply("rate", "10mbit", p), "");
  EXPECT_EQ(p.rate_bps, 10'000'000);
  EXPECT_NE(apply("rate", "10 furlongs", p), "");
  EXPECT_EQ(apply("queue-bytes", "65536", p), "");
  EXPECT_EQ(p.queue_bytes, 65536);
  EXPECT_NE(apply("queue-packets", "1.5", p), "");
  EXPECT_EQ(apply("order", "flow", p), "");
  EXPECT_TRUE(p.order_per_flow);
  EXPECT_NE(apply("order", "stream", p), "");
}

TEST(LinkemConfig, Subnet) {
  Subnet s;
  std::string err;
  ASSERT_TRUE(parse_subnet("10.201.0.0", &s, &err));
  EXPECT_EQ(s.near_addr(), "10.201.0.1");
  EXPECT_EQ(s.far_addr(), "10.201.0.2");
  ASSERT_TRUE(parse_subnet("10.9.8.7", &s, &err));  // any address in the /30
  EXPECT_EQ(s.near_addr(), "10.9.8.5");
  EXPECT_FALSE(parse_subnet("10.201.0", &s, &err));
  EXPECT_FALSE(parse_subnet("127.0.0.0", &s, &err));
}

}  // namespace
}  // namespace sluice::perf::linkem
