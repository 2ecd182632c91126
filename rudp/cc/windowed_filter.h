// A windowed min or max filter: Kathleen Nichols' algorithm as in Linux's
// lib/win_minmax.c and Chromium's quic/core/congestion_control/
// windowed_filter.h. It keeps the best, second-best and third-best
// samples of the window, each newer than the one before, so the estimate
// moves on to the next-best when the best ages out without storing every
// sample: O(1) time and space per update.
//
// Compare(a, b) is true when a is at least as good as b
// (std::greater_equal for a max filter, std::less_equal for a min one).
// Time is whatever the caller counts in (BBR's bandwidth filter counts
// round trips); a sample older than `window` no longer counts.
//
// Thread rules: a value owned by one controller.
#pragma once

#include <functional>

namespace sluice::rudp::cc {

template <typename T, typename Compare, typename TimeT, typename DeltaT>
class WindowedFilter {
 public:
  WindowedFilter(DeltaT window, T zero) : window_(window), zero_(zero) {
    for (Sample& s : est_) s = Sample{zero, TimeT{}};
  }

  // A new sample at time `now` (never earlier than the previous one's).
  void update(T value, TimeT now) {
    // No estimate yet, a sample at least as good as the best, or the
    // best so old that everything is stale: start afresh.
    if (est_[0].value == zero_ || Compare()(value, est_[0].value) ||
        now - est_[2].time > window_) {
      reset(value, now);
      return;
    }
    if (Compare()(value, est_[1].value)) {
      est_[1] = Sample{value, now};
      est_[2] = est_[1];
    } else if (Compare()(value, est_[2].value)) {
      est_[2] = Sample{value, now};
    }
    // Age out the best; the second-best and third-best move up.
    if (now - est_[0].time > window_) {
      est_[0] = est_[1];
      est_[1] = est_[2];
      est_[2] = Sample{value, now};
      if (now - est_[0].time > window_) {
        est_[0] = est_[1];
        est_[1] = est_[2];
      }
      return;
    }
    // The best is still fresh, but the second-best has sat a quarter of
    // the window (and the third-best half of it) without being replaced:
    // take the new sample for them, so a later expiry of the best falls
    // back on something recent.
    if (est_[1].value == est_[0].value && now - est_[1].time > window_ / 4) {
      est_[1] = est_[2] = Sample{value, now};
      return;
    }
    if (est_[2].value == est_[1].value && now - est_[2].time > window_ / 2) {
      est_[2] = Sample{value, now};
    }
  }

  void reset(T value, TimeT now) { est_[0] = est_[1] = est_[2] = Sample{value, now}; }

  T best() const { return est_[0].value; }
  T second_best() const { return est_[1].value; }
  T third_best() const { return est_[2].value; }

 private:
  struct Sample {
    T value;
    TimeT time;
  };
  DeltaT window_;
  T zero_;  // "no estimate yet"
  Sample est_[3];
};

}  // namespace sluice::rudp::cc
