// SourceLimiter: admission per source address, so that one source (or one
// subnet) cannot take what the others need (docs/ROBUSTNESS.md, "Per-source
// limits"). Two checks, each off unless set:
//  * a cap on the connections one source holds open (admit(hold = true)
//    counts one until release());
//  * a token bucket per source: `rate` admissions a second, `burst` at
//    once. For a TCP server an admission is an accepted connection; for a
//    UDP server a datagram; for rudp a handshake packet (INITIAL).
// A source is an address masked to prefix_v4 / prefix_v6 bits (an
// IPv4-mapped IPv6 address counts as its IPv4 address), so "/24 is one
// source" is a setting, not a code change.
//
// Bounded memory under spoofing: an entry costs ~80 bytes with its hash
// node. Entries that hold connections always stay (they are bounded by the
// server's own connection count). Entries that only carry a bucket are
// dropped once their bucket has refilled. When max_sources entries are
// tracked and none can be dropped, new sources that do not hold a
// connection share one overflow bucket: a flood from many spoofed
// addresses then meets one shared limit instead of growing the table. The
// hash is keyed with a per-limiter random seed, so chosen addresses cannot
// pile into one bucket of the table.
//
// Thread rules: not thread-safe. One thread (a loop's), or the owner's
// lock (Server takes a mutex: its accepts run on loop 0, its closes on
// every loop).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "core/net.h"

namespace sluice {

struct SourceLimitOptions {
  size_t max_conns = 0;  // open connections per source (0: no cap)
  double rate = 0;       // admissions a second per source (0: no bucket)
  double burst = 0;      // bucket depth (0: max(1, rate))
  int prefix_v4 = 32;    // bits of an IPv4 address that name a source
  int prefix_v6 = 64;    // bits of an IPv6 address that name a source
  size_t max_sources = 65536;  // tracked sources without connections, at most

  bool enabled() const { return max_conns != 0 || rate > 0; }
  // "" when usable, else what is wrong (for a flag parser's message).
  std::string validate() const;
};

enum class SourceVerdict : uint8_t {
  kAdmit,
  kOverCap,   // the source holds max_conns connections already
  kOverRate,  // the source's bucket is empty
};
const char* to_string(SourceVerdict v);

struct SourceLimitStats {
  uint64_t admitted = 0;
  uint64_t over_cap = 0;
  uint64_t over_rate = 0;
  uint64_t overflow = 0;   // admissions judged by the shared overflow bucket
  size_t tracked = 0;      // sources in the table now
};

class SourceLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // Options must validate() (a bad one is clamped to something usable).
  explicit SourceLimiter(const SourceLimitOptions& opts);

  // A connection (hold: counts toward the cap until release()) or a
  // one-off event such as a datagram (no hold: the bucket only).
  SourceVerdict admit(const PeerAddr& peer, Clock::time_point now, bool hold);
  // A held connection from `peer` closed. Unknown sources are ignored.
  void release(const PeerAddr& peer);

  SourceLimitStats stats() const;
  const SourceLimitOptions& options() const { return opts_; }

 private:
  struct Key {
    uint8_t family = 0;
    unsigned char addr[16] = {};
    bool operator==(const Key& o) const;
  };
  struct KeyHash {
    uint64_t seed;
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    uint32_t conns = 0;
    float tokens = 0;
    Clock::time_point last{};
  };

  Key key_of(const PeerAddr& peer) const;
  // Adds what the bucket earned since e.last; true if a token was taken.
  bool take_token(Entry& e, Clock::time_point now) const;
  // Drops entries without connections whose buckets are full again; at
  // most once per refill time, so a full table costs no scan per packet.
  void sweep(Clock::time_point now);

  SourceLimitOptions opts_;
  float burst_;
  std::unordered_map<Key, Entry, KeyHash> table_;
  Entry overflow_;
  Clock::time_point next_sweep_{};
  SourceLimitStats stats_;
};

}  // namespace sluice
