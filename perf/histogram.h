// Histogram: a log-linear latency histogram in the style of HdrHistogram.
//
// Values (nanoseconds in the load generator, but any non-negative integer
// works) are recorded with a fixed number of significant decimal digits:
// with 2 digits, every recorded value is known to within 1% of itself
// (values below 2 * 10^digits are exact). Memory is fixed and small
// (counts for [0, 2^63) at 2 digits: ~7k 8-byte counters = 57 KiB), and
// record() is a couple of shifts and an increment, so it can sit on the
// hot path of a measuring client.
//
// Layout (as HdrHistogram): bucket 0 holds [0, 2*half) with unit
// resolution; bucket b > 0 holds [half << b, half << (b+1)) with resolution
// 1 << b, where half = 2^(m-1) and 2^m is the smallest power of two
// >= 2 * 10^digits. The counts array stores bucket 0's 2*half slots and the
// upper `half` slots of each further bucket (the lower half of bucket b
// overlaps bucket b-1's range).
//
// Thread rules: not synchronised; use one per thread and merge() them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::perf {

class Histogram {
 public:
  // significant_digits in [1, 5].
  explicit Histogram(int significant_digits = 2);

  void record(uint64_t value) { record_n(value, 1); }
  void record_n(uint64_t value, uint64_t n);
  // Adds other's counts. Both must have the same significant_digits.
  void merge(const Histogram& other);
  void reset();

  uint64_t count() const { return total_; }
  uint64_t min() const { return total_ ? min_ : 0; }
  uint64_t max() const { return max_; }  // exact, not bucketed
  double mean() const;

  // Smallest recorded-bucket value v such that at least q% of the recorded
  // values are <= v, reported as the highest value equivalent to that
  // bucket (HdrHistogram's convention), clamped to max(). q in [0, 100].
  // 0 when empty.
  uint64_t percentile(double q) const;

  int significant_digits() const { return digits_; }

  // Calls f(value, count) for every non-empty bucket, with the bucket's
  // highest equivalent value: record_n(value, count) into a histogram of
  // the same digits rebuilds these counts (how processes send theirs).
  template <class F>
  void for_each_bucket(F&& f) const {
    for (size_t i = 0; i < counts_.size(); ++i) {
      if (counts_[i] != 0) f(highest_equivalent(i), counts_[i]);
    }
  }

  // Bucket arithmetic, public for tests.
  size_t index_of(uint64_t value) const;
  uint64_t lowest_equivalent(size_t index) const;
  uint64_t highest_equivalent(size_t index) const;

 private:
  int digits_;
  int half_magnitude_;   // log2(half)
  uint64_t half_;        // sub-buckets in the upper half of a bucket
  uint64_t sub_mask_;    // 2*half - 1
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace sluice::perf
