#include "perf/histogram.h"

#include <algorithm>
#include <stdexcept>

namespace sluice::perf {

Histogram::Histogram(int significant_digits) : digits_(significant_digits) {
  if (digits_ < 1 || digits_ > 5) throw std::invalid_argument("significant_digits must be 1..5");
  uint64_t largest_exact = 2;
  for (int i = 0; i < digits_; ++i) largest_exact *= 10;
  int m = 0;
  while ((uint64_t{1} << m) < largest_exact) ++m;
  half_magnitude_ = m - 1;
  half_ = uint64_t{1} << half_magnitude_;
  sub_mask_ = 2 * half_ - 1;
  // Bucket b covers values whose highest set bit is (m - 1 + b); the largest
  // 64-bit value has bit 63 set, so buckets 0 .. 64 - m.
  size_t buckets = static_cast<size_t>(64 - m + 1);
  counts_.assign(2 * half_ + (buckets - 1) * half_, 0);
}

size_t Histogram::index_of(uint64_t value) const {
  // Position of the highest set bit of (value | sub_mask) + 1.
  int pow2ceil = 64 - __builtin_clzll(value | sub_mask_);
  int bucket = pow2ceil - (half_magnitude_ + 1);  // >= 0
  uint64_t sub = value >> bucket;                 // in [half, 2*half) when bucket > 0
  if (bucket == 0) return static_cast<size_t>(sub);
  return static_cast<size_t>(2 * half_ + (static_cast<uint64_t>(bucket) - 1) * half_ + (sub - half_));
}

uint64_t Histogram::lowest_equivalent(size_t index) const {
  if (index < 2 * half_) return index;
  uint64_t rest = index - 2 * half_;
  uint64_t bucket = rest / half_ + 1;
  uint64_t sub = rest % half_ + half_;
  return sub << bucket;
}

uint64_t Histogram::highest_equivalent(size_t index) const {
  if (index < 2 * half_) return index;
  uint64_t bucket = (index - 2 * half_) / half_ + 1;
  return lowest_equivalent(index) + ((uint64_t{1} << bucket) - 1);
}

void Histogram::record_n(uint64_t value, uint64_t n) {
  if (n == 0) return;
  counts_[index_of(value)] += n;
  total_ += n;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value) * n;
}

void Histogram::merge(const Histogram& other) {
  if (other.digits_ != digits_) throw std::invalid_argument("merging histograms of different precision");
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

double Histogram::mean() const {
  return total_ ? static_cast<double>(sum_ / total_) : 0.0;
}

uint64_t Histogram::percentile(double q) const {
  if (total_ == 0) return 0;
  q = std::clamp(q, 0.0, 100.0);
  // Rank of the value we want (1-based), at least 1; rounded to nearest as
  // HdrHistogram does, so that q/100 * total landing a hair above an integer
  // through floating point does not skip to the next value.
  uint64_t rank = static_cast<uint64_t>(q / 100.0 * static_cast<double>(total_) + 0.5);
  rank = std::max<uint64_t>(rank, 1);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(highest_equivalent(i), max_);
  }
  return max_;
}

}  // namespace sluice::perf
