// The link model of linkem (perf/linkem.cc): one direction of an emulated
// link, as a pure class with no IO. Time is explicit (nanoseconds on any
// monotonic clock, virtual in tests), so the model is driven the same way
// by the real forwarding loop and by perf/linkem_model_test.cc.
//
// A packet offered at time t goes through, in this order:
//
//   1. loss      Gilbert-Elliott (if ge_p > 0), then independent random
//                loss; a lost packet is gone (it uses no rate, no queue).
//   2. duplicate with probability dup a second copy follows it (both go
//                through the queue; the copy counts as one more packet).
//   3. queue     with a rate, a FIFO drop-tail queue in front of a
//                serializer: a packet that would take the backlog past
//                queue_packets or queue_bytes is dropped; otherwise it
//                finishes serializing at max(t, previous finish) +
//                size * 8 / rate. Without a rate it "finishes" at t.
//   4. delay     release = finish + delay + U[-jitter, +jitter] (never
//                below finish). Without reordering, releases are kept
//                monotonic per direction: a packet never overtakes the one
//                before it (release = max(sampled, previous release)).
//                With order_per_flow, only per flow (the caller's key, in
//                linkem the IP 5-tuple): packets of different flows may
//                pass each other, and a busy link does not push every
//                flow's delay towards delay + jitter.
//   5. reorder   with probability reorder a packet is held back an extra
//                reorder_ns and is exempt from the monotonic rule, so the
//                packets behind it overtake it.
//
// Every random choice draws from its own stream (seeded from the seed, the
// direction and the kind of choice), so changing one option does not change
// the others' choices: the same --seed loses the same packets with or
// without jitter.
#pragma once

#include "io/sim_rng.h"
#include "perf/histogram.h"

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice::perf::linkem {

using Bytes = std::vector<uint8_t>;

// One direction's parameters. All probabilities are in [0, 1].
struct LinkParams {
  int64_t delay_ns = 0;
  int64_t jitter_ns = 0;    // uniform in [delay - jitter, delay + jitter]
  double loss = 0;          // independent per packet
  double ge_p = 0;          // Gilbert-Elliott: good -> bad per packet (0 = off)
  double ge_r = 1;          // bad -> good per packet
  double ge_loss_bad = 1;   // loss probability in the bad state
  double ge_loss_good = 0;  // loss probability in the good state
  double dup = 0;
  double reorder = 0;             // probability a packet is held back
  int64_t reorder_ns = 10'000'000;  // how long it is held back (extra delay)
  int64_t rate_bps = 0;           // bit/s; 0 = unlimited (no queue)
  int64_t queue_packets = 1000;   // drop-tail limits of the queue (rate only);
  int64_t queue_bytes = 0;        // 0 = no limit of that kind
  bool order_per_flow = false;    // jitter keeps order per flow, not per link
};

// One-way delay of delivered packets, from a direction's histogram: release
// time minus offer time (queueing + serialization + propagation + jitter +
// reorder hold-back), in milliseconds. Percentiles are to within 1% (the
// histogram keeps 2 significant digits); mean and max are exact.
struct DelaySummary {
  int64_t count = 0;
  double mean_ms = 0, p50_ms = 0, p95_ms = 0, p99_ms = 0, max_ms = 0;
};

// Returns "" if `p` is valid, else what is wrong with it (for the CLI).
std::string validate(const LinkParams& p);

struct LinkStats {
  int64_t packets_in = 0, bytes_in = 0;
  int64_t delivered = 0, bytes_delivered = 0;
  int64_t lost_random = 0, lost_ge = 0;
  int64_t duplicated = 0;
  int64_t reordered = 0;         // packets held back by the reorder option
  int64_t out_of_order = 0;      // delivered behind a later-offered packet
  int64_t queue_drops = 0, queue_drop_bytes = 0;
  int64_t max_queue_packets = 0, max_queue_bytes = 0;
};

// A flow key for order_per_flow: a hash of the IP version, addresses,
// protocol and (TCP, UDP, SCTP, UDP-Lite; first fragment or unfragmented)
// ports of an IPv4 or IPv6 packet. Anything unparseable is flow 0.
uint64_t flow_key(const uint8_t* pkt, size_t len);

// Seeded choices: the simulator's xoshiro256** (the same on every platform).
using Rng = sim::Rng;

class LinkModel {
 public:
  // `stream` tells directions apart: two models with the same seed and
  // different streams make independent choices.
  LinkModel(const LinkParams& params, uint64_t seed, uint64_t stream);

  // Offers a packet at `now_ns` (must not go backwards between calls);
  // `flow` matters only with order_per_flow.
  void offer(int64_t now_ns, Bytes packet, uint64_t flow = 0);
  // The earliest release time pending, or -1 if nothing is in flight.
  int64_t next_release_ns() const;
  // Moves one packet whose release time is <= now_ns into `out`; false if
  // none is due. Call until false.
  bool pop_due(int64_t now_ns, Bytes& out);

  // Packets inside the model (queued, serializing or propagating).
  size_t in_flight() const { return heap_.size(); }
  const LinkStats& stats() const { return stats_; }
  const LinkParams& params() const { return p_; }
  // One-way delay of every packet released so far (nanoseconds; see
  // DelaySummary), and its summary.
  const Histogram& delay_histogram() const { return delay_; }
  DelaySummary delay() const;

 private:
  struct Pending {
    int64_t release_ns;
    uint64_t seq;  // offer order; ties release in offer order
    int64_t offer_ns;
    Bytes data;
  };
  // Heap order (std::push_heap keeps the "largest" on top): the earliest
  // release, and among equal releases the earliest offered.
  struct Later {
    bool operator()(const Pending& a, const Pending& b) const {
      return a.release_ns != b.release_ns ? a.release_ns > b.release_ns : a.seq > b.seq;
    }
  };
  struct Backlog {  // one packet in the rate queue: when it leaves, its size
    int64_t done_ns;
    int64_t bytes;
  };

  bool lose();
  void admit(int64_t now_ns, Bytes packet, uint64_t flow);
  int64_t& last_release(int64_t now_ns, uint64_t flow);
  void drain_backlog(int64_t now_ns);

  LinkParams p_;
  Rng rng_loss_, rng_ge_, rng_dup_, rng_jitter_, rng_reorder_;
  bool ge_bad_ = false;
  uint64_t next_seq_ = 0;
  uint64_t max_released_seq_ = 0;
  bool released_any_ = false;
  int64_t tx_free_ns_ = 0;        // the serializer is busy until then
  int64_t last_release_ns_ = 0;   // monotonic release for in-order packets
  std::unordered_map<uint64_t, int64_t> flow_last_release_;  // order_per_flow
  std::deque<Backlog> backlog_;   // packets queued or serializing
  int64_t backlog_bytes_ = 0;
  std::vector<Pending> heap_;    // a heap under Later (moveable, unlike priority_queue)
  LinkStats stats_;
  Histogram delay_{2};  // release - offer, ns, of delivered packets
};

}  // namespace sluice::perf::linkem
