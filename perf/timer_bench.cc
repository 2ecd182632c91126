// Timer cost at connection scale: the timing wheel (core/timer_queue) with
// 100k-500k pending timers, one per connection.
//
//   AddCancel   add a timer and cancel it (a request timeout that is met)
//   Reset       move a pending timer's deadline (eager idle re-arm)
//   FireRearm   the lazy idle pattern: the clock advances 1 ms per
//               iteration; every due timer re-arms itself from its own
//               callback (reset, no allocation). Time per fired timer.
//   HeapAddCancel  the binary heap + hash map the wheel replaced, for scale
//
// Counters: ns_per_op (per add+cancel pair, per reset, per fired timer) and
// bytes_per_timer (the wheel's node slab divided by the pending timers).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <unordered_map>
#include <vector>

#include "core/timer_queue.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

// Pending timers spread over [1 s, 61 s) from t0, like idle timeouts.
std::vector<TimerId> populate(TimerQueue& q, Clock::time_point t0, int64_t n,
                              std::mt19937_64& rng) {
  std::vector<TimerId> ids;
  ids.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    ids.push_back(q.add(t0 + 1s + std::chrono::microseconds(rng() % 60'000'000), {}, [] {}));
  }
  return ids;
}

void BM_AddCancel(benchmark::State& state) {
  const int64_t n = state.range(0);
  Clock::time_point t0{};
  TimerQueue q(t0);
  std::mt19937_64 rng(1);
  populate(q, t0, n, rng);
  std::vector<Clock::time_point> when(4096);
  for (auto& w : when) w = t0 + 1s + std::chrono::microseconds(rng() % 60'000'000);
  size_t k = 0;
  for (auto _ : state) {
    TimerId id = q.add(when[k++ & 4095], {}, [] {});
    benchmark::DoNotOptimize(id);
    q.cancel(id);
  }
  state.counters["ns_per_op"] = benchmark::Counter(
      static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["bytes_per_timer"] = static_cast<double>(q.memory_bytes()) / static_cast<double>(n);
}

void BM_Reset(benchmark::State& state) {
  const int64_t n = state.range(0);
  Clock::time_point t0{};
  TimerQueue q(t0);
  std::mt19937_64 rng(2);
  std::vector<TimerId> ids = populate(q, t0, n, rng);
  // Random order: a busy server touches connections in no particular order.
  std::vector<uint32_t> order(static_cast<size_t>(n));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<Clock::time_point> when(4096);
  for (auto& w : when) w = t0 + 1s + std::chrono::microseconds(rng() % 60'000'000);
  size_t k = 0;
  for (auto _ : state) {
    bool ok = q.reset(ids[order[k % order.size()]], when[k & 4095]);
    benchmark::DoNotOptimize(ok);
    ++k;
  }
  state.counters["ns_per_op"] = benchmark::Counter(
      static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["bytes_per_timer"] = static_cast<double>(q.memory_bytes()) / static_cast<double>(n);
}

void BM_FireRearm(benchmark::State& state) {
  const int64_t n = state.range(0);
  Clock::time_point t0{};
  TimerQueue q(t0);
  std::mt19937_64 rng(3);
  Clock::time_point now = t0;
  // Each timer re-arms itself 10 s later: a connection whose idle check
  // finds recent activity. Deadlines spread over the first 10 s.
  std::vector<TimerId> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    TimerId* self = &ids[static_cast<size_t>(i)];
    *self = q.add(t0 + std::chrono::microseconds(rng() % 10'000'000), {},
                  [&q, &now, self] { q.reset(*self, now + 10s); });
  }
  size_t fired = 0;
  for (auto _ : state) {
    now += 1ms;
    fired += q.run_expired(now);
  }
  state.counters["fired_per_iter"] =
      static_cast<double>(fired) / static_cast<double>(state.iterations());
  state.counters["ns_per_op"] = benchmark::Counter(
      static_cast<double>(fired), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["bytes_per_timer"] = static_cast<double>(q.memory_bytes()) / static_cast<double>(n);
}

// The previous design (binary heap of (deadline, id) + hash map of
// callbacks, lazy deletion), kept here only as a yardstick.
class HeapTimers {
 public:
  TimerId add(Clock::time_point when, std::function<void()> cb) {
    TimerId id = next_++;
    cbs_.emplace(id, std::move(cb));
    heap_.push_back({when, id});
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
    return id;
  }
  bool cancel(TimerId id) { return cbs_.erase(id) > 0; }
  size_t heap_size() const { return heap_.size(); }

 private:
  struct Entry {
    Clock::time_point when;
    TimerId id;
    bool operator>(const Entry& o) const { return when != o.when ? when > o.when : id > o.id; }
  };
  std::vector<Entry> heap_;
  std::unordered_map<TimerId, std::function<void()>> cbs_;
  TimerId next_ = 1;
};

void BM_HeapAddCancel(benchmark::State& state) {
  const int64_t n = state.range(0);
  Clock::time_point t0{};
  HeapTimers h;
  std::mt19937_64 rng(1);
  for (int64_t i = 0; i < n; ++i) {
    h.add(t0 + 1s + std::chrono::microseconds(rng() % 60'000'000), [] {});
  }
  std::vector<Clock::time_point> when(4096);
  for (auto& w : when) w = t0 + 1s + std::chrono::microseconds(rng() % 60'000'000);
  size_t k = 0;
  for (auto _ : state) {
    TimerId id = h.add(when[k++ & 4095], [] {});
    benchmark::DoNotOptimize(id);
    h.cancel(id);
  }
  // Lazy deletion leaves cancelled entries in the heap until they surface:
  // the heap grows by one entry per add+cancel here.
  state.counters["heap_entries"] = static_cast<double>(h.heap_size());
  state.counters["ns_per_op"] = benchmark::Counter(
      static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(BM_AddCancel)->Arg(100'000)->Arg(200'000)->Arg(500'000);
BENCHMARK(BM_Reset)->Arg(100'000)->Arg(200'000)->Arg(500'000);
BENCHMARK(BM_FireRearm)->Arg(100'000)->Arg(200'000)->Arg(500'000);
BENCHMARK(BM_HeapAddCancel)->Arg(100'000)->Arg(500'000);

}  // namespace
}  // namespace sluice
