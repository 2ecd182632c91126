#include "rudp/range_set.h"

#include <algorithm>
#include <iterator>

namespace sluice::rudp {

uint64_t RangeSet::add(uint64_t low, uint64_t high) {
  if (low >= high) return 0;
  uint64_t fresh = high - low;
  // The first range that could touch [low, high): the one starting at or
  // before low (if it reaches low), else the first starting after it.
  auto it = map_.upper_bound(low);
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= low) it = prev;
  }
  while (it != map_.end() && it->first <= high) {
    // Overlap (not mere adjacency) was already counted as fresh: take it back.
    const uint64_t ol = std::max(low, it->first);
    const uint64_t oh = std::min(high, it->second);
    if (oh > ol) fresh -= oh - ol;
    low = std::min(low, it->first);
    high = std::max(high, it->second);
    it = map_.erase(it);
  }
  map_.emplace(low, high);
  return fresh;
}

void RangeSet::remove(uint64_t low, uint64_t high) {
  if (low >= high) return;
  auto it = map_.upper_bound(low);
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second > low) it = prev;
  }
  while (it != map_.end() && it->first < high) {
    const uint64_t a = it->first, b = it->second;
    it = map_.erase(it);
    if (a < low) map_.emplace(a, low);
    if (b > high) {
      map_.emplace(high, b);
      break;
    }
  }
}

bool RangeSet::contains(uint64_t v) const {
  auto it = map_.upper_bound(v);
  if (it == map_.begin()) return false;
  return std::prev(it)->second > v;
}

const RangeSet::Range* RangeSet::next_above(uint64_t v, Range* out) const {
  auto it = map_.upper_bound(v);
  if (it != map_.begin() && std::prev(it)->second > v) it = std::prev(it);
  if (it == map_.end()) return nullptr;
  *out = {it->first, it->second};
  return out;
}

}  // namespace sluice::rudp
