#include "core/backoff.h"

#include <algorithm>

namespace sluice {

Backoff::Backoff(duration initial, duration max, uint64_t seed)
    : initial_(std::max(initial, duration(1))), max_(std::max(max, initial_)), rng_(seed) {}

Backoff::duration Backoff::ceiling(int attempt) const {
  duration d = initial_;
  for (int i = 0; i < attempt && d < max_; ++i) d *= 2;  // stops before overflow
  return std::min(d, max_);
}

Backoff::duration Backoff::next() {
  const duration d = ceiling(attempt_);
  if (attempt_ < 62) ++attempt_;
  const int64_t half = d.count() / 2;
  std::uniform_int_distribution<int64_t> jitter(0, d.count() - half);
  return duration(half + jitter(rng_));
}

}  // namespace sluice
