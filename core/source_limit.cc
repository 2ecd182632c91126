#include "core/source_limit.h"

#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <random>

namespace sluice {

namespace {

// Clears every bit of addr past the first `bits`.
void mask(unsigned char* addr, size_t len, int bits) {
  for (size_t i = 0; i < len; ++i) {
    const int keep = std::clamp(bits - static_cast<int>(i) * 8, 0, 8);
    addr[i] &= static_cast<unsigned char>(0xff00u >> keep);
  }
}

// The 64-bit finalizer of MurmurHash3: every input bit reaches every
// output bit, so keyed with a secret seed the buckets are unpredictable.
uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace

std::string SourceLimitOptions::validate() const {
  if (rate < 0 || burst < 0) return "per-source rate and burst must not be negative";
  if (rate == 0 && burst > 0) return "a per-source burst needs a per-source rate";
  if (prefix_v4 < 1 || prefix_v4 > 32) return "the IPv4 source prefix must be 1..32";
  if (prefix_v6 < 1 || prefix_v6 > 128) return "the IPv6 source prefix must be 1..128";
  if (max_sources == 0) return "max_sources must be at least 1";
  return "";
}

const char* to_string(SourceVerdict v) {
  switch (v) {
    case SourceVerdict::kAdmit: return "admit";
    case SourceVerdict::kOverCap: return "over-cap";
    case SourceVerdict::kOverRate: return "over-rate";
  }
  return "?";
}

bool SourceLimiter::Key::operator==(const Key& o) const {
  return family == o.family && std::memcmp(addr, o.addr, sizeof addr) == 0;
}

size_t SourceLimiter::KeyHash::operator()(const Key& k) const {
  uint64_t a, b;
  std::memcpy(&a, k.addr, 8);
  std::memcpy(&b, k.addr + 8, 8);
  return static_cast<size_t>(mix(mix(a ^ seed) ^ b ^ k.family));
}

SourceLimiter::SourceLimiter(const SourceLimitOptions& opts)
    : opts_(opts),
      burst_(static_cast<float>(opts.burst > 0 ? opts.burst : std::max(1.0, opts.rate))),
      table_(16, KeyHash{std::random_device{}() * 0x9e3779b97f4a7c15ULL ^ std::random_device{}()}) {
  opts_.prefix_v4 = std::clamp(opts_.prefix_v4, 1, 32);
  opts_.prefix_v6 = std::clamp(opts_.prefix_v6, 1, 128);
  opts_.max_sources = std::max<size_t>(opts_.max_sources, 1);
  if (opts_.rate < 0) opts_.rate = 0;
  overflow_.tokens = burst_;
}

SourceLimiter::Key SourceLimiter::key_of(const PeerAddr& peer) const {
  Key k;
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (peer.family == AF_INET6 && std::memcmp(peer.addr, kMapped, sizeof kMapped) == 0) {
    k.family = AF_INET;  // ::ffff:a.b.c.d from a dual-stack socket is a.b.c.d
    std::memcpy(k.addr, peer.addr + 12, 4);
  } else {
    k.family = peer.family;
    std::memcpy(k.addr, peer.addr, peer.family == AF_INET ? 4 : 16);
  }
  if (k.family == AF_INET) mask(k.addr, 4, opts_.prefix_v4);
  else if (k.family == AF_INET6) mask(k.addr, 16, opts_.prefix_v6);
  return k;
}

bool SourceLimiter::take_token(Entry& e, Clock::time_point now) const {
  if (opts_.rate <= 0) return true;
  if (now > e.last) {
    const double dt = std::chrono::duration<double>(now - e.last).count();
    e.tokens = static_cast<float>(std::min<double>(burst_, e.tokens + dt * opts_.rate));
    e.last = now;
  }
  if (e.tokens < 1) return false;
  e.tokens -= 1;
  return true;
}

void SourceLimiter::sweep(Clock::time_point now) {
  if (now < next_sweep_) return;
  // An entry's bucket is full again at most burst/rate after its last use.
  const auto refill = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(opts_.rate > 0 ? burst_ / opts_.rate : 0));
  for (auto it = table_.begin(); it != table_.end();) {
    if (it->second.conns == 0 && now - it->second.last >= refill) {
      it = table_.erase(it);
    } else {
      ++it;
    }
  }
  next_sweep_ = now + std::max<Clock::duration>(refill, std::chrono::milliseconds(100));
}

SourceVerdict SourceLimiter::admit(const PeerAddr& peer, Clock::time_point now, bool hold) {
  const Key key = key_of(peer);
  auto it = table_.find(key);
  if (it == table_.end()) {
    if (!hold && opts_.rate <= 0) {  // nothing to check or keep
      ++stats_.admitted;
      return SourceVerdict::kAdmit;
    }
    if (table_.size() >= opts_.max_sources) sweep(now);
    if (!hold && table_.size() >= opts_.max_sources) {
      ++stats_.overflow;
      if (!take_token(overflow_, now)) {
        ++stats_.over_rate;
        return SourceVerdict::kOverRate;
      }
      ++stats_.admitted;
      return SourceVerdict::kAdmit;
    }
    Entry fresh;
    fresh.tokens = burst_;
    fresh.last = now;
    it = table_.emplace(key, fresh).first;
  }
  Entry& e = it->second;
  if (hold && opts_.max_conns != 0 && e.conns >= opts_.max_conns) {
    ++stats_.over_cap;
    return SourceVerdict::kOverCap;
  }
  if (!take_token(e, now)) {
    ++stats_.over_rate;
    return SourceVerdict::kOverRate;
  }
  if (hold) ++e.conns;
  ++stats_.admitted;
  return SourceVerdict::kAdmit;
}

void SourceLimiter::release(const PeerAddr& peer) {
  auto it = table_.find(key_of(peer));
  if (it == table_.end() || it->second.conns == 0) return;
  // Without a bucket an entry means only its connections: drop it with
  // the last one (with a bucket, sweep() drops it once refilled).
  if (--it->second.conns == 0 && opts_.rate <= 0) table_.erase(it);
}

SourceLimitStats SourceLimiter::stats() const {
  SourceLimitStats s = stats_;
  s.tracked = table_.size();
  return s;
}

}  // namespace sluice
