// RangeSet: a set of uint64 values kept as disjoint, non-adjacent
// half-open intervals [low, high). rudp uses it for the packet numbers it
// received (its ACK ranges), the stream offsets the peer acknowledged, the
// stream bytes to send again, and the out-of-order stream bytes it holds.
//
// Thread rules: a plain value type; one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

namespace sluice::rudp {

class RangeSet {
 public:
  struct Range {
    uint64_t low;
    uint64_t high;  // exclusive
  };

  // Adds [low, high), merging with what it touches. Returns how many of
  // its values were new.
  uint64_t add(uint64_t low, uint64_t high);
  // Removes [low, high) (values not in the set are ignored).
  void remove(uint64_t low, uint64_t high);
  bool contains(uint64_t v) const;
  bool empty() const { return map_.empty(); }
  size_t count() const { return map_.size(); }  // number of ranges
  // The lowest range (the set must not be empty).
  Range front() const { return {map_.begin()->first, map_.begin()->second}; }
  Range back() const { return {map_.rbegin()->first, map_.rbegin()->second}; }
  // The first range that ends above v (null: none), for walking upward.
  const Range* next_above(uint64_t v, Range* out) const;
  void clear() { map_.clear(); }
  // Drops the lowest range.
  void pop_front();
  // Calls fn(low, high) from the highest range down; fn returns false to stop.
  template <class Fn>
  void for_each_desc(Fn&& fn) const {
    for (auto it = map_.rbegin(); it != map_.rend(); ++it) {
      if (!fn(it->first, it->second)) return;
    }
  }

 private:
  std::map<uint64_t, uint64_t> map_;  // low -> high
};

}  // namespace sluice::rudp
