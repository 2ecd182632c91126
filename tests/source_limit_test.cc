// SourceLimiter without sockets, on virtual time: the cap and its release,
// the bucket's burst and refill, prefixes, IPv4-mapped addresses, the
// bounded table under a spoofed flood, and option checks.
#include "core/source_limit.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

#include <gtest/gtest.h>

namespace sluice {
namespace {

using namespace std::chrono_literals;
using Tp = SourceLimiter::Clock::time_point;

PeerAddr v4(const char* s, uint16_t port = 1000) {
  PeerAddr p;
  p.family = AF_INET;
  p.port = port;
  EXPECT_EQ(inet_pton(AF_INET, s, p.addr), 1) << s;
  return p;
}

PeerAddr v6(const char* s, uint16_t port = 1000) {
  PeerAddr p;
  p.family = AF_INET6;
  p.port = port;
  EXPECT_EQ(inet_pton(AF_INET6, s, p.addr), 1) << s;
  return p;
}

const Tp t0 = Tp{} + 1000s;

TEST(SourceLimit, CapHoldsUntilRelease) {
  SourceLimiter lim({.max_conns = 3});
  const PeerAddr a = v4("10.0.0.1"), b = v4("10.0.0.2");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kOverCap);
  // Another source is not affected, nor is the port part of the source.
  EXPECT_EQ(lim.admit(b, t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(v4("10.0.0.1", 2000), t0, true), SourceVerdict::kOverCap);
  lim.release(a);
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.stats().over_cap, 2u);
  // Without a bucket, a source that holds nothing is forgotten.
  for (int i = 0; i < 3; ++i) lim.release(a);
  lim.release(b);
  EXPECT_EQ(lim.stats().tracked, 0u);
  lim.release(a);  // unknown now: ignored, no underflow
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kAdmit);
}

TEST(SourceLimit, BucketBurstThenRate) {
  SourceLimiter lim({.rate = 10, .burst = 5});
  const PeerAddr a = v4("10.0.0.1");
  int admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += lim.admit(a, t0, false) == SourceVerdict::kAdmit;
  EXPECT_EQ(admitted, 5);  // the burst
  EXPECT_EQ(lim.admit(a, t0 + 50ms, false), SourceVerdict::kOverRate);  // half a token
  EXPECT_EQ(lim.admit(a, t0 + 100ms, false), SourceVerdict::kAdmit);   // one earned
  EXPECT_EQ(lim.admit(a, t0 + 100ms, false), SourceVerdict::kOverRate);
  // Over a long time the rate, not more: 10/s for 10 s (+ the burst).
  admitted = 0;
  for (int ms = 200; ms <= 10200; ms += 1) {
    admitted += lim.admit(a, t0 + std::chrono::milliseconds(ms), false) == SourceVerdict::kAdmit;
  }
  EXPECT_GE(admitted, 99);
  EXPECT_LE(admitted, 101);
  // A long pause refills to the burst, not beyond.
  admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += lim.admit(a, t0 + 60s, false) == SourceVerdict::kAdmit;
  EXPECT_EQ(admitted, 5);
}

TEST(SourceLimit, CapAndRateTogether) {
  SourceLimiter lim({.max_conns = 2, .rate = 1, .burst = 4});
  const PeerAddr a = v4("10.0.0.1");
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kOverCap);  // a refusal costs no token
  lim.release(a);
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kAdmit);
  lim.release(a);
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kAdmit);  // the 4th token
  lim.release(a);
  EXPECT_EQ(lim.admit(a, t0, true), SourceVerdict::kOverRate);
  EXPECT_EQ(lim.stats().over_rate, 1u);
}

TEST(SourceLimit, PrefixGroupsAddresses) {
  SourceLimiter lim({.max_conns = 2, .prefix_v4 = 24, .prefix_v6 = 48});
  EXPECT_EQ(lim.admit(v4("192.0.2.1"), t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(v4("192.0.2.200"), t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(v4("192.0.2.77"), t0, true), SourceVerdict::kOverCap);
  EXPECT_EQ(lim.admit(v4("192.0.3.1"), t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(v6("2001:db8:1:2::1"), t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(v6("2001:db8:1:ffff::9"), t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(v6("2001:db8:1::5"), t0, true), SourceVerdict::kOverCap);
  EXPECT_EQ(lim.admit(v6("2001:db8:2::5"), t0, true), SourceVerdict::kAdmit);
  // Release through another address of the same prefix frees the slot.
  lim.release(v4("192.0.2.99"));
  EXPECT_EQ(lim.admit(v4("192.0.2.3"), t0, true), SourceVerdict::kAdmit);
}

TEST(SourceLimit, MappedV6IsItsV4Address) {
  SourceLimiter lim({.max_conns = 1});
  EXPECT_EQ(lim.admit(v4("198.51.100.7"), t0, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(v6("::ffff:198.51.100.7"), t0, true), SourceVerdict::kOverCap);
  lim.release(v6("::ffff:198.51.100.7"));
  EXPECT_EQ(lim.admit(v4("198.51.100.7"), t0, true), SourceVerdict::kAdmit);
}

// A spoofed flood from 100,000 addresses: the table stays bounded, the
// excess shares one bucket, and sources holding connections are kept.
TEST(SourceLimit, SpoofedFloodStaysBounded) {
  SourceLimiter lim({.max_conns = 4, .rate = 5, .burst = 5, .max_sources = 1000});
  const PeerAddr held = v4("10.9.9.9");
  ASSERT_EQ(lim.admit(held, t0, true), SourceVerdict::kAdmit);
  uint64_t admitted = 0;
  for (uint32_t i = 0; i < 100000; ++i) {
    PeerAddr p;
    p.family = AF_INET;
    const uint32_t a = htonl(0x0a000000u + i);  // 10.0.0.0 + i
    std::memcpy(p.addr, &a, 4);
    admitted += lim.admit(p, t0 + std::chrono::microseconds(i), false) == SourceVerdict::kAdmit;
  }
  const SourceLimitStats s = lim.stats();
  EXPECT_LE(s.tracked, 1000u);
  EXPECT_GT(s.overflow, 90000u);
  // Each of the 999 tracked sources sent once; the rest shared one bucket
  // (its burst of 5, and 5/s over the flood's 0.1 s).
  EXPECT_GE(admitted, 999u + 5);
  EXPECT_LE(admitted, 999u + 6);
  // The held source is still known: its cap still counts its connection.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(lim.admit(held, t0 + 1s, true), SourceVerdict::kAdmit);
  EXPECT_EQ(lim.admit(held, t0 + 1s, true), SourceVerdict::kOverCap);
  // Once buckets have refilled, a sweep makes room for new sources again.
  PeerAddr fresh = v4("172.16.0.1");
  EXPECT_EQ(lim.admit(fresh, t0 + 10s, false), SourceVerdict::kAdmit);
  EXPECT_LT(lim.stats().tracked, 10u);
}

TEST(SourceLimit, Validate) {
  EXPECT_EQ(SourceLimitOptions{}.validate(), "");
  EXPECT_FALSE(SourceLimitOptions{}.enabled());
  EXPECT_TRUE(SourceLimitOptions{.max_conns = 1}.enabled());
  EXPECT_NE(SourceLimitOptions{.rate = -1}.validate(), "");
  EXPECT_NE(SourceLimitOptions{.burst = 3}.validate(), "");
  EXPECT_NE(SourceLimitOptions{.prefix_v4 = 0}.validate(), "");
  EXPECT_NE(SourceLimitOptions{.prefix_v6 = 129}.validate(), "");
  EXPECT_NE(SourceLimitOptions{.max_sources = 0}.validate(), "");
  EXPECT_STREQ(to_string(SourceVerdict::kOverRate), "over-rate");
}

TEST(ListenWarnings, SyncookiesAndSomaxconn) {
  ListenOptions opts;
  opts.backlog = 4096;
  EXPECT_TRUE(listen_warnings(opts, 1, 4096, 512).empty());
  EXPECT_TRUE(listen_warnings(opts, -1, -1, -1).empty());  // unknown: no guess
  auto w = listen_warnings(opts, 0, 4096, 128);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("tcp_syncookies is 0"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("128"), std::string::npos) << w[0];
  w = listen_warnings(opts, 1, 1024, 512);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("somaxconn 1024"), std::string::npos) << w[0];
  EXPECT_EQ(listen_warnings(opts, 0, 128, 128).size(), 2u);
}

}  // namespace
}  // namespace sluice
