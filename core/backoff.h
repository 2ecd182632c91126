// Backoff: capped exponential delays with jitter, for reconnect loops.
//
// Attempt n (0-based) waits a random time in [d/2, d] with
// d = min(max, initial * 2^n) ("equal jitter"): the delay still grows
// geometrically, but clients that lost the same server at the same moment
// spread out instead of reconnecting in lock-step.
//
// Thread rules: not synchronised; one owner thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace sluice {

class Backoff {
 public:
  using duration = std::chrono::nanoseconds;

  Backoff(duration initial, duration max, uint64_t seed);

  // The delay before the next attempt; counts the attempt.
  duration next();
  // After a success: the next failure starts from `initial` again.
  void reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }
  // The cap for attempt n before jitter (for tests and logs).
  duration ceiling(int attempt) const;

 private:
  duration initial_;
  duration max_;
  int attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace sluice
