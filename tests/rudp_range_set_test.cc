// rudp/range_set.{h,cc}: every operation checked against a plain
// std::set of the values over many seeded random operations in a small
// universe (where overlaps, adjacency and splits happen all the time),
// plus the representation's invariants and the edges of uint64.
#include "rudp/range_set.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <utility>
#include <vector>

namespace sluice::rudp {
namespace {

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

Ranges ranges_of(const RangeSet& s) {
  Ranges desc;
  s.for_each_desc([&](uint64_t lo, uint64_t hi) {
    desc.emplace_back(lo, hi);
    return true;
  });
  return Ranges(desc.rbegin(), desc.rend());
}

// The maximal runs of consecutive values: what the ranges must be exactly.
Ranges runs_of(const std::set<uint64_t>& m) {
  Ranges out;
  for (uint64_t v : m) {
    if (!out.empty() && out.back().second == v) {
      ++out.back().second;
    } else {
      out.emplace_back(v, v + 1);
    }
  }
  return out;
}

void expect_matches(const RangeSet& s, const std::set<uint64_t>& model, uint64_t universe) {
  const Ranges got = ranges_of(s);
  // Disjoint, non-empty, non-adjacent, ascending (for_each_desc reversed):
  // equal to the model's maximal runs says all of that at once.
  ASSERT_EQ(got, runs_of(model));
  ASSERT_EQ(s.count(), got.size());
  ASSERT_EQ(s.empty(), model.empty());
  if (!model.empty()) {
    EXPECT_EQ(s.front().low, got.front().first);
    EXPECT_EQ(s.front().high, got.front().second);
    EXPECT_EQ(s.back().low, got.back().first);
    EXPECT_EQ(s.back().high, got.back().second);
  }
  for (uint64_t v = 0; v < universe + 2; ++v) {
    ASSERT_EQ(s.contains(v), model.count(v) == 1) << v;
    // next_above(v): the first range that ends above v.
    RangeSet::Range r{};
    const RangeSet::Range* p = s.next_above(v, &r);
    const std::pair<uint64_t, uint64_t>* want = nullptr;
    for (const auto& g : got) {
      if (g.second > v) {
        want = &g;
        break;
      }
    }
    if (want == nullptr) {
      ASSERT_EQ(p, nullptr) << v;
    } else {
      ASSERT_EQ(p, &r) << v;
      ASSERT_EQ(r.low, want->first) << v;
      ASSERT_EQ(r.high, want->second) << v;
    }
  }
}

TEST(RudpRangeSet, RandomOperationsMatchAReferenceModel) {
  constexpr uint64_t kUniverse = 64;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937_64 rng(seed);
    RangeSet s;
    std::set<uint64_t> model;
    for (int op = 0; op < 500; ++op) {
      uint64_t lo = rng() % (kUniverse + 1);
      uint64_t hi = rng() % (kUniverse + 1);
      // Mostly well-formed, small intervals; sometimes empty or reversed.
      if (rng() % 8 != 0 && lo > hi) std::swap(lo, hi);
      if (rng() % 2 == 0) hi = std::min<uint64_t>(lo + rng() % 6, kUniverse);
      const int kind = static_cast<int>(rng() % 10);
      if (kind < 6) {
        uint64_t fresh = 0;
        for (uint64_t v = lo; v < hi; ++v) fresh += model.insert(v).second ? 1 : 0;
        ASSERT_EQ(s.add(lo, hi), fresh) << "add " << lo << ", " << hi;
      } else if (kind < 9) {
        for (uint64_t v = lo; v < hi; ++v) model.erase(v);
        s.remove(lo, hi);
      } else if (!model.empty() && rng() % 4 == 0) {
        const Ranges r = ranges_of(s);
        for (uint64_t v = r.front().first; v < r.front().second; ++v) model.erase(v);
        s.pop_front();
      } else if (rng() % 16 == 0) {
        model.clear();
        s.clear();
      }
      expect_matches(s, model, kUniverse);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(RudpRangeSet, AddCountsOnlyNewValues) {
  RangeSet s;
  EXPECT_EQ(s.add(10, 20), 10u);
  EXPECT_EQ(s.add(10, 20), 0u);
  EXPECT_EQ(s.add(12, 15), 0u);
  EXPECT_EQ(s.add(5, 12), 5u);    // overlaps the front
  EXPECT_EQ(s.add(18, 25), 5u);   // overlaps the back
  EXPECT_EQ(s.add(30, 40), 10u);  // separate
  EXPECT_EQ(s.add(0, 50), 50u - 20u - 10u);  // swallows both, fills the gaps
  EXPECT_EQ(ranges_of(s), (Ranges{{0, 50}}));
  EXPECT_EQ(s.add(7, 7), 0u);  // empty
  EXPECT_EQ(s.add(9, 3), 0u);  // reversed: nothing
  EXPECT_EQ(ranges_of(s), (Ranges{{0, 50}}));
}

TEST(RudpRangeSet, AdjacentRangesMerge) {
  RangeSet s;
  EXPECT_EQ(s.add(10, 20), 10u);
  EXPECT_EQ(s.add(20, 30), 10u);  // touches the end
  EXPECT_EQ(ranges_of(s), (Ranges{{10, 30}}));
  EXPECT_EQ(s.add(5, 10), 5u);  // touches the start
  EXPECT_EQ(ranges_of(s), (Ranges{{5, 30}}));
  EXPECT_EQ(s.add(31, 40), 9u);  // one value apart: stays separate
  EXPECT_EQ(ranges_of(s), (Ranges{{5, 30}, {31, 40}}));
  EXPECT_EQ(s.add(30, 31), 1u);  // fills the hole: one range
  EXPECT_EQ(ranges_of(s), (Ranges{{5, 40}}));
  // Packet numbers one at a time, out of order, as rudp adds them.
  RangeSet p;
  for (uint64_t pn : {3, 1, 2, 0, 5, 4}) EXPECT_EQ(p.add(pn, pn + 1), 1u);
  EXPECT_EQ(ranges_of(p), (Ranges{{0, 6}}));
}

TEST(RudpRangeSet, RemoveSplitsAndTrims) {
  RangeSet s;
  s.add(0, 100);
  s.remove(40, 60);
  EXPECT_EQ(ranges_of(s), (Ranges{{0, 40}, {60, 100}}));
  s.remove(30, 70);
  EXPECT_EQ(ranges_of(s), (Ranges{{0, 30}, {70, 100}}));
  s.remove(0, 1);
  s.remove(99, 200);
  EXPECT_EQ(ranges_of(s), (Ranges{{1, 30}, {70, 99}}));
  s.remove(30, 70);  // nothing there
  s.remove(50, 50);
  s.remove(80, 75);
  EXPECT_EQ(ranges_of(s), (Ranges{{1, 30}, {70, 99}}));
  s.remove(0, 1000);
  EXPECT_TRUE(s.empty());
}

TEST(RudpRangeSet, ForEachDescOrderAndStop) {
  RangeSet s;
  for (uint64_t i = 0; i < 10; ++i) s.add(i * 10, i * 10 + 3);
  std::vector<uint64_t> lows;
  s.for_each_desc([&](uint64_t lo, uint64_t hi) {
    EXPECT_EQ(hi, lo + 3);
    lows.push_back(lo);
    return true;
  });
  EXPECT_EQ(lows, (std::vector<uint64_t>{90, 80, 70, 60, 50, 40, 30, 20, 10, 0}));
  lows.clear();
  s.for_each_desc([&](uint64_t lo, uint64_t) {
    lows.push_back(lo);
    return lows.size() < 3;  // stop after the third
  });
  EXPECT_EQ(lows, (std::vector<uint64_t>{90, 80, 70}));
  RangeSet empty;
  int calls = 0;
  empty.for_each_desc([&](uint64_t, uint64_t) {
    ++calls;
    return true;
  });
  EXPECT_EQ(calls, 0);
}

TEST(RudpRangeSet, FrontBackPopAndClear) {
  RangeSet s;
  s.add(50, 60);
  s.add(10, 20);
  s.add(30, 40);
  EXPECT_EQ(s.front().low, 10u);
  EXPECT_EQ(s.front().high, 20u);
  EXPECT_EQ(s.back().low, 50u);
  EXPECT_EQ(s.back().high, 60u);
  s.pop_front();
  EXPECT_EQ(s.front().low, 30u);
  EXPECT_EQ(s.count(), 2u);
  s.clear();
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.count(), 0u);
  RangeSet::Range r{};
  EXPECT_EQ(s.next_above(0, &r), nullptr);
}

TEST(RudpRangeSet, EdgesOfUint64) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  RangeSet s;
  EXPECT_EQ(s.add(kMax - 10, kMax), 10u);
  EXPECT_EQ(s.add(kMax - 20, kMax - 10), 10u);
  EXPECT_EQ(ranges_of(s), (Ranges{{kMax - 20, kMax}}));
  EXPECT_TRUE(s.contains(kMax - 1));
  EXPECT_FALSE(s.contains(kMax));  // exclusive end: never representable
  EXPECT_FALSE(s.contains(kMax - 21));
  RangeSet::Range r{};
  ASSERT_NE(s.next_above(kMax - 1, &r), nullptr);
  EXPECT_EQ(r.low, kMax - 20);
  EXPECT_EQ(s.next_above(kMax, &r), nullptr);
  s.remove(kMax - 15, kMax);
  EXPECT_EQ(ranges_of(s), (Ranges{{kMax - 20, kMax - 15}}));
  EXPECT_EQ(s.add(0, kMax), kMax - 5);
  EXPECT_EQ(ranges_of(s), (Ranges{{0, kMax}}));
}

}  // namespace
}  // namespace sluice::rudp
