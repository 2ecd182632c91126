// Metrics: cheap counters and fixed-bucket histograms for loop threads, and
// a writer of the Prometheus text exposition format (version 0.0.4).
//
// Counting: a LocalCounter or LocalHistogram has ONE writer thread (a
// loop), and any number of readers (a scrape). The writer does a relaxed
// load and a relaxed store (on x86 a plain add, no lock prefix, no fence),
// so counting costs what a plain uint64_t would; the atomics only make the
// readers' concurrent loads well defined. Several writers must use
// SharedHistogram (fetch_add) instead. Nothing here allocates after
// construction.
//
// Exposition: TextWriter builds one scrape's text. Each family is begun
// once (family(): # HELP and # TYPE), then its samples follow; values are
// written as integers when they are whole, label values and help texts
// are escaped as the format requires (\\, \", \n). Histograms take
// per-bucket (non-cumulative) counts and write the cumulative _bucket
// lines, _sum and _count (= the +Inf bucket, so the two always agree even
// when the counts were read while a writer was adding).
//
// Thread rules: LocalCounter/LocalHistogram: add()/observe() from their
// one writer thread, reads from any thread. SharedHistogram: any thread.
// TextWriter: one thread (a value type).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::metrics {

// Single-writer counter: see "Counting" above.
class LocalCounter {
 public:
  void add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Upper bounds of a duration histogram, in nanoseconds, ascending; one more
// bucket (+Inf) follows the last.
inline constexpr size_t kMaxBuckets = 16;

// Loop lag and RTT share one set of bounds: 0.1 ms to 10 s.
inline constexpr uint64_t kLatencyBoundsNs[] = {
    100'000,     250'000,     500'000,       1'000'000,     2'500'000,
    5'000'000,   10'000'000,  25'000'000,    50'000'000,    100'000'000,
    250'000'000, 500'000'000, 1'000'000'000, 2'500'000'000, 10'000'000'000};
inline constexpr size_t kLatencyBuckets = std::size(kLatencyBoundsNs) + 1;  // with +Inf
static_assert(kLatencyBuckets <= kMaxBuckets);

// The bucket an observation of `ns` falls in (the first bound >= ns; the
// last index is +Inf). A linear scan: 15 compares at most, no branches
// mispredicted for steady values.
size_t latency_bucket(uint64_t ns);

// Plain values of a latency histogram: per-bucket counts (NOT cumulative)
// and the sum of the observations in nanoseconds. A fixed layout of
// uint64_t only, so it can be copied into a shared memory page.
struct LatencyCounts {
  uint64_t buckets[kLatencyBuckets] = {};
  uint64_t sum_ns = 0;
  void add(const LatencyCounts& o);
};

// Single-writer latency histogram (see "Counting").
class LocalHistogram {
 public:
  void observe_ns(uint64_t ns) {
    bump(buckets_[latency_bucket(ns)], 1);
    bump(sum_ns_, ns);
  }
  LatencyCounts read() const;

 private:
  static void bump(std::atomic<uint64_t>& a, uint64_t n) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::atomic<uint64_t> buckets_[kLatencyBuckets] = {};
  std::atomic<uint64_t> sum_ns_{0};
};

// Latency histogram with several writers (relaxed fetch_add).
class SharedHistogram {
 public:
  void observe_ns(uint64_t ns) {
    buckets_[latency_bucket(ns)].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  LatencyCounts read() const;

 private:
  std::atomic<uint64_t> buckets_[kLatencyBuckets] = {};
  std::atomic<uint64_t> sum_ns_{0};
};

enum class Type { kCounter, kGauge, kHistogram };

// name="value" pairs, in the order written.
using Labels = std::vector<std::pair<std::string, std::string>>;

class TextWriter {
 public:
  // Begins a family. `name` must be a valid metric name
  // ([a-zA-Z_:][a-zA-Z0-9_:]*; checked: an invalid one is skipped with its
  // samples, and error() says so).
  void family(std::string_view name, Type type, std::string_view help);
  // A counter's or gauge's sample of the current family.
  void value(const Labels& labels, double v);
  // A latency histogram's sample of the current family, in seconds.
  void latency(const Labels& labels, const LatencyCounts& counts);
  // The same for any bounds: bounds.size() + 1 per-bucket counts (the
  // last is +Inf) and the sum in the histogram's unit.
  void histogram(const Labels& labels, std::span<const double> bounds,
                 std::span<const uint64_t> counts, double sum);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }
  // Empty, or what was skipped and why (a programming error).
  const std::string& error() const { return error_; }

  static bool valid_name(std::string_view name);
  // Label value escaping: \ -> \\, " -> \", newline -> \n.
  static std::string escape_label(std::string_view v);
  // A sample value: integers as integers, else shortest round-trip;
  // +Inf, -Inf, NaN.
  static std::string format_value(double v);

 private:
  void sample(std::string_view suffix, const Labels& labels, const char* extra_name,
              std::string_view extra_value, double v);

  std::string out_;
  std::string name_;  // the current family; empty: none or skipped
  Type type_ = Type::kCounter;
  std::string error_;
};

// Content-Type of TextWriter's output.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace sluice::metrics
