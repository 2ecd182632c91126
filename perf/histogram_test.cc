#include "perf/histogram.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>

namespace sluice::perf {
namespace {

TEST(HistogramTest, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h(2);
  for (uint64_t v = 0; v < 200; ++v) {
    EXPECT_EQ(h.lowest_equivalent(h.index_of(v)), v);
    EXPECT_EQ(h.highest_equivalent(h.index_of(v)), v);
  }
}

TEST(HistogramTest, BucketsCoverValueWithinPrecision) {
  for (int digits = 1; digits <= 3; ++digits) {
    Histogram h(digits);
    double tolerance = 1.0;
    for (int i = 0; i < digits; ++i) tolerance /= 10;
    std::mt19937_64 rng(42);
    for (int i = 0; i < 100000; ++i) {
      uint64_t v = rng() >> (rng() % 64);
      size_t idx = h.index_of(v);
      uint64_t lo = h.lowest_equivalent(idx), hi = h.highest_equivalent(idx);
      ASSERT_LE(lo, v);
      ASSERT_GE(hi, v);
      ASSERT_LE(static_cast<double>(hi - lo), tolerance * static_cast<double>(v) + 1) << v;
    }
    // Extremes.
    EXPECT_LE(h.lowest_equivalent(h.index_of(UINT64_MAX)), UINT64_MAX);
    EXPECT_EQ(h.highest_equivalent(h.index_of(UINT64_MAX)), UINT64_MAX);
  }
}

TEST(HistogramTest, IndicesAreMonotonic) {
  Histogram h(2);
  size_t prev = 0;
  for (uint64_t v = 0; v < (uint64_t{1} << 22); ++v) {
    size_t idx = h.index_of(v);
    ASSERT_GE(idx, prev);
    ASSERT_LE(idx, prev + 1);
    prev = idx;
  }
}

TEST(HistogramTest, PercentilesOfUniformRange) {
  Histogram h(2);
  for (uint64_t v = 1; v <= 100000; ++v) h.record(v * 1000);  // 1 us .. 100 ms
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.min(), 1000u);
  EXPECT_EQ(h.max(), 100000000u);
  auto near = [](uint64_t got, double want) {
    return got >= want * 0.99 && got <= want * 1.01;
  };
  EXPECT_TRUE(near(h.percentile(50), 50e6)) << h.percentile(50);
  EXPECT_TRUE(near(h.percentile(99), 99e6)) << h.percentile(99);
  EXPECT_TRUE(near(h.percentile(99.9), 99.9e6)) << h.percentile(99.9);
  EXPECT_EQ(h.percentile(100), 100000000u);
  EXPECT_NEAR(h.mean(), 50000.5 * 1000, 1);
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  Histogram a(2), b(2), all(2);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 50000; ++i) {
    uint64_t v = rng() % 10000000;
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.min(), all.min());
  for (double q : {0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    EXPECT_EQ(a.percentile(q), all.percentile(q)) << q;
  }
}

TEST(HistogramTest, SingleOutlierIsMax) {
  Histogram h(2);
  h.record_n(5000, 999);
  h.record(123456789);
  EXPECT_EQ(h.percentile(50), h.highest_equivalent(h.index_of(5000)));
  EXPECT_EQ(h.percentile(99.9), h.highest_equivalent(h.index_of(5000)));
  EXPECT_EQ(h.percentile(99.95), 123456789u);
  EXPECT_EQ(h.max(), 123456789u);
}

TEST(HistogramTest, ResetClears) {
  Histogram h;
  h.record(10);
  h.reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(99), 0u);
}

}  // namespace
}  // namespace sluice::perf
