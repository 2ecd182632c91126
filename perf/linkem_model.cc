#include "perf/linkem_model.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace sluice::perf::linkem {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}


bool prob_ok(double p) { return std::isfinite(p) && p >= 0 && p <= 1; }

// Seeds of the independent streams of one direction (see the header).
enum Stream : uint64_t { kLoss = 1, kGe, kDup, kJitter, kReorder };

uint64_t stream_seed(uint64_t seed, uint64_t direction, Stream kind) {
  uint64_t x = seed;
  uint64_t a = splitmix64(x) ^ (direction * 0x632be59bd9b4e019ULL);
  return splitmix64(a) ^ (static_cast<uint64_t>(kind) * 0xd6e8feb86659fd93ULL);
}

}  // namespace

std::string validate(const LinkParams& p) {
  if (p.delay_ns < 0) return "delay must be >= 0";
  if (p.jitter_ns < 0) return "jitter must be >= 0";
  if (!prob_ok(p.loss)) return "loss must be a probability in [0, 1]";
  if (!prob_ok(p.ge_p) || !prob_ok(p.ge_r)) return "ge-p and ge-r must be probabilities in [0, 1]";
  if (p.ge_p > 0 && p.ge_r <= 0) return "ge-r must be > 0 when ge-p > 0 (the bad state would never end)";
  if (!prob_ok(p.ge_loss_bad) || !prob_ok(p.ge_loss_good))
    return "ge-loss-bad and ge-loss-good must be probabilities in [0, 1]";
  if (!prob_ok(p.dup)) return "dup must be a probability in [0, 1]";
  if (!prob_ok(p.reorder)) return "reorder must be a probability in [0, 1]";
  if (p.reorder_ns < 0) return "reorder delay must be >= 0";
  if (p.rate_bps < 0) return "rate must be >= 0";
  if (p.queue_packets < 0 || p.queue_bytes < 0) return "queue limits must be >= 0";
  if (p.rate_bps > 0 && p.queue_packets == 0 && p.queue_bytes == 0)
    return "a rate needs a queue: queue-packets or queue-bytes must be > 0";
  return "";
}



LinkModel::LinkModel(const LinkParams& params, uint64_t seed, uint64_t stream)
    : p_(params),
      rng_loss_(stream_seed(seed, stream, kLoss)),
      rng_ge_(stream_seed(seed, stream, kGe)),
      rng_dup_(stream_seed(seed, stream, kDup)),
      rng_jitter_(stream_seed(seed, stream, kJitter)),
      rng_reorder_(stream_seed(seed, stream, kReorder)) {}

// Gilbert-Elliott first: the loss decision uses the current state, then the
// state moves (good -> bad with p, bad -> good with r). With ge_loss_bad 1
// and ge_loss_good 0, a loss burst is exactly one stay in the bad state,
// geometric with mean 1/r packets.
bool LinkModel::lose() {
  if (p_.ge_p > 0) {
    const bool lost = rng_ge_.chance(ge_bad_ ? p_.ge_loss_bad : p_.ge_loss_good);
    ge_bad_ = ge_bad_ ? !rng_ge_.chance(p_.ge_r) : rng_ge_.chance(p_.ge_p);
    if (lost) {
      ++stats_.lost_ge;
      return true;
    }
  }
  if (rng_loss_.chance(p_.loss)) {
    ++stats_.lost_random;
    return true;
  }
  return false;
}

uint64_t flow_key(const uint8_t* pkt, size_t len) {
  if (len < 1) return 0;
  const int version = pkt[0] >> 4;
  size_t l4 = 0, addr_off = 0, addr_len = 0;
  uint8_t proto = 0;
  bool ports = false;
  if (version == 4 && len >= 20) {
    l4 = static_cast<size_t>(pkt[0] & 0x0f) * 4;
    proto = pkt[9];
    addr_off = 12;
    addr_len = 8;
    const unsigned frag_offset = ((pkt[6] & 0x1f) << 8) | pkt[7];
    ports = frag_offset == 0;
  } else if (version == 6 && len >= 40) {
    l4 = 40;  // extension headers are not followed: their flow is the addresses
    proto = pkt[6];
    addr_off = 8;
    addr_len = 32;
    ports = true;
  } else {
    return 0;
  }
  uint64_t h = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(version * 256 + proto + 1);
  auto mix = [&h](uint64_t v) {
    uint64_t x = h ^ v;
    h = splitmix64(x);
  };
  for (size_t i = 0; i < addr_len; i += 4)
    mix((uint64_t{pkt[addr_off + i]} << 24) | (uint64_t{pkt[addr_off + i + 1]} << 16) |
        (uint64_t{pkt[addr_off + i + 2]} << 8) | pkt[addr_off + i + 3]);
  const bool has_ports = proto == 6 || proto == 17 || proto == 132 || proto == 136;
  if (has_ports && ports && l4 + 4 <= len)
    mix((uint64_t{pkt[l4]} << 24) | (uint64_t{pkt[l4 + 1]} << 16) | (uint64_t{pkt[l4 + 2]} << 8) | pkt[l4 + 3]);
  return h;
}

void LinkModel::offer(int64_t now_ns, Bytes packet, uint64_t flow) {
  ++stats_.packets_in;
  stats_.bytes_in += static_cast<int64_t>(packet.size());
  if (lose()) return;
  if (rng_dup_.chance(p_.dup)) {
    ++stats_.duplicated;
    Bytes copy = packet;
    admit(now_ns, std::move(packet), flow);
    admit(now_ns, std::move(copy), flow);
    return;
  }
  admit(now_ns, std::move(packet), flow);
}

void LinkModel::drain_backlog(int64_t now_ns) {
  while (!backlog_.empty() && backlog_.front().done_ns <= now_ns) {
    backlog_bytes_ -= backlog_.front().bytes;
    backlog_.pop_front();
  }
}

// The release time the next in-order packet must not precede: the link's,
// or its flow's. Flows whose last release has passed constrain nothing
// (every release is >= now), so they are forgotten when the table grows.
int64_t& LinkModel::last_release(int64_t now_ns, uint64_t flow) {
  if (!p_.order_per_flow) return last_release_ns_;
  if (flow_last_release_.size() >= 4096 && !flow_last_release_.count(flow))
    std::erase_if(flow_last_release_, [now_ns](const auto& kv) { return kv.second <= now_ns; });
  return flow_last_release_[flow];
}

void LinkModel::admit(int64_t now_ns, Bytes packet, uint64_t flow) {
  const auto size = static_cast<int64_t>(packet.size());
  int64_t done_ns = now_ns;
  if (p_.rate_bps > 0) {
    drain_backlog(now_ns);
    const bool over_packets =
        p_.queue_packets > 0 && static_cast<int64_t>(backlog_.size()) + 1 > p_.queue_packets;
    const bool over_bytes = p_.queue_bytes > 0 && backlog_bytes_ + size > p_.queue_bytes;
    if (over_packets || over_bytes) {
      ++stats_.queue_drops;
      stats_.queue_drop_bytes += size;
      return;
    }
    // Serialization time rounded up to the nanosecond; 128-bit so that a
    // 64 KiB packet at 1 bit/s does not overflow.
    const auto tx_ns = static_cast<int64_t>(
        (static_cast<__int128>(size) * 8 * 1'000'000'000 + p_.rate_bps - 1) / p_.rate_bps);
    done_ns = std::max(now_ns, tx_free_ns_) + tx_ns;
    tx_free_ns_ = done_ns;
    backlog_.push_back({done_ns, size});
    backlog_bytes_ += size;
    stats_.max_queue_packets =
        std::max(stats_.max_queue_packets, static_cast<int64_t>(backlog_.size()));
    stats_.max_queue_bytes = std::max(stats_.max_queue_bytes, backlog_bytes_);
  }

  int64_t release = done_ns + p_.delay_ns;
  if (p_.jitter_ns > 0) {
    // Uniform integer offset in [-jitter, +jitter].
    const auto span = static_cast<uint64_t>(2 * p_.jitter_ns + 1);
    release += static_cast<int64_t>(rng_jitter_.next() % span) - p_.jitter_ns;
    release = std::max(release, done_ns);
  }
  if (rng_reorder_.chance(p_.reorder)) {
    ++stats_.reordered;
    release += p_.reorder_ns;  // held back; does not hold the others back
  } else {
    int64_t& last = last_release(now_ns, flow);
    release = std::max(release, last);
    last = release;
  }
  heap_.push_back({release, next_seq_++, now_ns, std::move(packet)});
  std::push_heap(heap_.begin(), heap_.end(), Later{});
}

DelaySummary LinkModel::delay() const {
  DelaySummary d;
  d.count = static_cast<int64_t>(delay_.count());
  if (d.count == 0) return d;
  d.mean_ms = delay_.mean() / 1e6;
  d.p50_ms = static_cast<double>(delay_.percentile(50)) / 1e6;
  d.p95_ms = static_cast<double>(delay_.percentile(95)) / 1e6;
  d.p99_ms = static_cast<double>(delay_.percentile(99)) / 1e6;
  d.max_ms = static_cast<double>(delay_.max()) / 1e6;
  return d;
}

int64_t LinkModel::next_release_ns() const { return heap_.empty() ? -1 : heap_.front().release_ns; }

bool LinkModel::pop_due(int64_t now_ns, Bytes& out) {
  if (heap_.empty() || heap_.front().release_ns > now_ns) return false;
  std::pop_heap(heap_.begin(), heap_.end(), Later{});
  Pending& p = heap_.back();
  if (released_any_ && p.seq < max_released_seq_) ++stats_.out_of_order;
  max_released_seq_ = released_any_ ? std::max(max_released_seq_, p.seq) : p.seq;
  released_any_ = true;
  ++stats_.delivered;
  stats_.bytes_delivered += static_cast<int64_t>(p.data.size());
  // The model's release time, not now_ns: the caller's lateness (timer
  // wake-up) is not the link's.
  delay_.record(static_cast<uint64_t>(std::max<int64_t>(0, p.release_ns - p.offer_ns)));
  out = std::move(p.data);
  heap_.pop_back();
  return true;
}

}  // namespace sluice::perf::linkem
