// Reusing std::map nodes: erase() hands a node to a per-thread pool and
// emplace() takes one back, so a map that gains and loses an entry per
// packet (packets in flight, packet-number ranges) stops costing a
// malloc/free pair per packet (they showed in an echo server's profile).
// Bounded and per thread: an idle connection holds nothing extra.
//
// Thread rules: per thread; a node from one thread's pool is only reused
// on that thread (maps are owned by one loop thread).
#pragma once

#include <cstddef>
#include <iterator>
#include <utility>
#include <vector>

namespace sluice::rudp {

template <class Map>
class NodePool {
 public:
  static constexpr size_t kMax = 256;

  template <class V>
  static void emplace(Map& m, const typename Map::key_type& k, V&& v) {
    auto& spare = pool();
    if (spare.empty()) {
      m.emplace(k, std::forward<V>(v));
      return;
    }
    typename Map::node_type n = std::move(spare.back());
    spare.pop_back();
    n.key() = k;
    n.mapped() = std::forward<V>(v);
    m.insert(std::move(n));
  }

  static typename Map::iterator erase(Map& m, typename Map::iterator it) {
    auto next = std::next(it);
    auto& spare = pool();
    if (spare.size() < kMax) {
      spare.push_back(m.extract(it));
    } else {
      m.erase(it);
    }
    return next;
  }

 private:
  static std::vector<typename Map::node_type>& pool() {
    thread_local std::vector<typename Map::node_type> spare;
    return spare;
  }
};

}  // namespace sluice::rudp
