// perf/flood's internals (the DoS lab's bounded attack tool; flood.cc has
// the command line and the safety guard): the options, the report, the
// pacer, and the two sending loops, raw packets (flood_raw.cc) and
// connections (flood_conns.cc).
#pragma once

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "perf/flood_packets.h"

namespace sluice::perf::flood {

struct Options {
  std::string mode;           // syn ack rst udp rudp-initial connect slowloris
  uint32_t dst = 0;           // host order
  uint16_t port = 0;
  double rate = 0;            // packets (or connects) per second
  double seconds = 0;         // hard stop
  uint64_t count = 0;         // 0: no limit but time and rate
  bool spoof = false;         // sources from src (raw socket)
  Cidr src;                   // spoofed sources
  std::vector<uint32_t> bind; // connect/slowloris: local sources, round-robin
  size_t size = 64;           // udp payload bytes
  size_t conns = 1000;        // connect/slowloris: held open at most
  int64_t connect_timeout_ms = 3000;
  int64_t interval_ms = 1000;    // slowloris: one byte per connection this often
  uint32_t frame_bytes = 65536;  // slowloris: the length prefix it announces (under --max-frame)
  uint64_t seed = 0;
};

struct Report {
  uint64_t packets = 0;  // raw: packets sent; connect/slowloris: connects started
  uint64_t bytes = 0;    // IP bytes (raw), payload bytes (connections)
  uint64_t errors = 0;
  std::string first_error;
  double elapsed_s = 0;
  // connect / slowloris
  uint64_t established = 0, refused = 0, reset = 0, closed_by_server = 0, timeouts = 0;
  uint64_t open_at_end = 0, max_open = 0;
  void error(int e, const char* what);
};

// splitmix64: fast and good enough for ports, sequence numbers, addresses.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

inline double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// A token bucket holding at most 20 ms of tokens (plus one, so a slow rate
// does not lose its fractions to the cap): the rate holds over any window
// longer than that, a scheduling stall of up to 20 ms is made up, and a
// longer one is not made up for with a larger burst.
class Pacer {
 public:
  Pacer(double rate, double t0) : rate_(rate), cap_(rate * 0.02 + 1), last_(t0) {}
  // Whole tokens available now (at most `most`), taken.
  uint64_t take(double now, uint64_t most) {
    tokens_ = std::min(cap_, tokens_ + (now - last_) * rate_);
    last_ = now;
    const auto n = std::min<uint64_t>(most, static_cast<uint64_t>(tokens_));
    tokens_ -= static_cast<double>(n);
    return n;
  }
  // Seconds until the next token.
  double wait() const { return tokens_ >= 1 ? 0 : (1 - tokens_) / rate_; }

 private:
  double rate_, cap_, tokens_ = 0, last_;
};

// 0, or -errno (socket setup failed; *rep says what).
int run_raw(const Options& o, Report* rep);
int run_conns(const Options& o, Report* rep);

}  // namespace sluice::perf::flood
