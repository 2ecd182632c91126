#include "rudp/range_set.h"

#include "rudp/node_pool.h"

#include <algorithm>
#include <iterator>
#include <vector>

namespace sluice::rudp {

namespace {

using Pool = NodePool<std::map<uint64_t, uint64_t>>;

void emplace(std::map<uint64_t, uint64_t>& m, uint64_t low, uint64_t high) {
  Pool::emplace(m, low, high);
}

std::map<uint64_t, uint64_t>::iterator erase(std::map<uint64_t, uint64_t>& m,
                                            std::map<uint64_t, uint64_t>::iterator it) {
  return Pool::erase(m, it);
}

}  // namespace

uint64_t RangeSet::add(uint64_t low, uint64_t high) {
  if (low >= high) return 0;
  // The common case, in place: extending the range that ends at `low` (the
  // next packet number, the next acknowledged bytes) without touching the
  // one after it.
  if (!map_.empty()) {
    auto last = std::prev(map_.end());
    if (last->second == low) {
      last->second = high;
      return high - low;
    }
  }
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
    it = erase(map_, it);
  }
  emplace(map_, low, high);
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
    it = erase(map_, it);
    if (a < low) emplace(map_, a, low);
    if (b > high) {
      emplace(map_, high, b);
      break;
    }
  }
}

void RangeSet::pop_front() { erase(map_, map_.begin()); }

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
