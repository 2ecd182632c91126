#include "core/timer_queue.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <utility>

namespace sluice {
namespace {

using std::chrono::nanoseconds;

constexpr int64_t kTickNs = nanoseconds(TimerQueue::kTick).count();

constexpr int kL0Bits = 8;  // level 0: 256 slots of one tick
constexpr int kLnBits = 6;  // levels 1-4: 64 slots each
constexpr int kLevels = 5;
constexpr uint32_t kL0Slots = 1u << kL0Bits;
constexpr uint32_t kLnSlots = 1u << kLnBits;
constexpr uint32_t kSlots = kL0Slots + (kLevels - 1) * kLnSlots;  // 512
// Farthest deadline filed by its own slot; later ones park at the top.
constexpr int64_t kMaxDelta = (int64_t{1} << (kL0Bits + (kLevels - 1) * kLnBits)) - 1;

// Node indices [0, kSlots) are the slots' list heads (sentinels); two more
// sentinels head the temporary lists used while cascading and firing.
constexpr uint32_t kCascadeList = kSlots;
constexpr uint32_t kDueList = kSlots + 1;
constexpr uint32_t kSentinels = kSlots + 2;
constexpr uint32_t kNil = std::numeric_limits<uint32_t>::max();

constexpr int kChunkBits = 10;  // 1024 nodes = 64 KiB per chunk
constexpr uint32_t kChunk = 1u << kChunkBits;

constexpr int shift_of(int level) {
  return level == 0 ? 0 : kL0Bits + (level - 1) * kLnBits;
}

// Floor and ceiling division that are right for negative numerators too
// (C++ division truncates towards zero).
int64_t floor_div(int64_t n, int64_t d) { return n / d - (n % d < 0 ? 1 : 0); }
int64_t ceil_div(int64_t n, int64_t d) { return n / d + (n % d > 0 ? 1 : 0); }

int64_t to_ns(Clock::time_point t) {
  return std::chrono::duration_cast<nanoseconds>(t.time_since_epoch()).count();
}

int64_t saturating_add(int64_t a, int64_t b) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) {
    return std::numeric_limits<int64_t>::max();
  }
  return a + b;
}

// First set bit at index >= from in a 256-bit map, or -1.
int find_from(const uint64_t (&bits)[4], uint32_t from) {
  for (uint32_t w = from >> 6; w < 4; ++w) {
    uint64_t m = bits[w];
    if (w == (from >> 6)) m &= ~uint64_t{0} << (from & 63);
    if (m) return static_cast<int>(w * 64 + std::countr_zero(m));
  }
  return -1;
}

}  // namespace

// 64 bytes with libstdc++'s 32-byte std::function: one cache line.
struct TimerQueue::Node {
  TimerCallback cb;
  int64_t when = 0;      // deadline, ns since the clock's epoch
  int64_t interval = 0;  // ns; 0: one-shot
  uint32_t prev = kNil;  // kNil: not linked (free, or firing)
  uint32_t next = kNil;  // list link, or the free list's
  uint32_t gen = 0;      // odd while in use
  uint32_t seq = 0;      // arm order
};

TimerQueue::TimerQueue(Clock::time_point start)
    : free_(kNil), current_(floor_div(to_ns(start), kTickNs)), running_(kNil) {
  grow();
  for (uint32_t i = 0; i < kSentinels; ++i) {
    node(i).prev = i;
    node(i).next = i;
  }
}

TimerQueue::~TimerQueue() = default;

size_t TimerQueue::node_bytes() { return sizeof(Node); }

size_t TimerQueue::memory_bytes() const {
  return chunks_.size() * kChunk * sizeof(Node) +
         chunks_.capacity() * sizeof(chunks_[0]) + scratch_.capacity() * sizeof(uint32_t);
}

TimerQueue::Node& TimerQueue::node(uint32_t i) const {
  return chunks_[i >> kChunkBits][i & (kChunk - 1)];
}

void TimerQueue::grow() {
  const uint32_t base = static_cast<uint32_t>(chunks_.size()) << kChunkBits;
  chunks_.push_back(std::make_unique<Node[]>(kChunk));
  // Pushed in reverse so low indices come out first (locality).
  for (uint32_t k = kChunk; k-- > 0;) {
    const uint32_t i = base + k;
    if (i < kSentinels) break;
    node(i).next = free_;
    free_ = i;
  }
}

uint32_t TimerQueue::alloc() {
  if (free_ == kNil) grow();
  const uint32_t i = free_;
  Node& n = node(i);
  free_ = n.next;
  n.next = kNil;
  ++n.gen;  // odd: in use
  return i;
}

void TimerQueue::release(uint32_t i) {
  Node& n = node(i);
  // The callback is destroyed after the node is back on the free list: its
  // captures' destructors may add or cancel timers.
  TimerCallback cb = std::move(n.cb);
  n.cb = nullptr;
  ++n.gen;  // even: free; outstanding ids no longer match
  n.prev = kNil;
  n.next = free_;
  free_ = i;
}

bool TimerQueue::valid(TimerId id, uint32_t* index) const {
  const uint32_t i = static_cast<uint32_t>(id);
  const uint32_t gen = static_cast<uint32_t>(id >> 32);
  if ((gen & 1) == 0 || i < kSentinels || i >= chunks_.size() * kChunk) return false;
  if (node(i).gen != gen) return false;
  *index = i;
  return true;
}

void TimerQueue::link(uint32_t list, uint32_t i) {
  Node& head = node(list);
  Node& n = node(i);
  n.prev = head.prev;
  n.next = list;
  node(head.prev).next = i;
  head.prev = i;
  if (list < kL0Slots) {
    bits0_[list >> 6] |= uint64_t{1} << (list & 63);
  } else if (list < kSlots) {
    const uint32_t s = list - kL0Slots;
    bitsn_[s >> kLnBits] |= uint64_t{1} << (s & (kLnSlots - 1));
  }
}

void TimerQueue::unlink(uint32_t i) {
  Node& n = node(i);
  const uint32_t p = n.prev, x = n.next;
  node(p).next = x;
  node(x).prev = p;
  n.prev = n.next = kNil;
  // Neighbours equal only when they are both the list's head: it is empty.
  if (p == x) {
    if (p < kL0Slots) {
      bits0_[p >> 6] &= ~(uint64_t{1} << (p & 63));
    } else if (p < kSlots) {
      const uint32_t s = p - kL0Slots;
      bitsn_[s >> kLnBits] &= ~(uint64_t{1} << (s & (kLnSlots - 1)));
    }
  }
}

uint32_t TimerQueue::slot_for(int64_t tick) const {
  int64_t delta = tick - current_;
  if (delta < 0) return static_cast<uint32_t>(current_ & (kL0Slots - 1));  // due
  if (delta < kL0Slots) return static_cast<uint32_t>(tick & (kL0Slots - 1));
  if (delta > kMaxDelta) {
    // Park in the top level; re-filed by its real deadline when cascaded.
    tick = current_ + kMaxDelta;
    delta = kMaxDelta;
  }
  for (int level = 1;; ++level) {
    const int s = shift_of(level);
    if (level == kLevels - 1 || delta < (int64_t{1} << (s + kLnBits))) {
      return kL0Slots + static_cast<uint32_t>(level - 1) * kLnSlots +
             static_cast<uint32_t>((tick >> s) & (kLnSlots - 1));
    }
  }
}

void TimerQueue::file(uint32_t i) {
  link(slot_for(ceil_div(node(i).when, kTickNs)), i);
}

TimerId TimerQueue::add(Clock::time_point when, Clock::duration interval,
                        TimerCallback cb) {
  const uint32_t i = alloc();
  Node& n = node(i);
  n.cb = std::move(cb);
  n.when = to_ns(when);
  n.interval = std::max<int64_t>(0, std::chrono::duration_cast<nanoseconds>(interval).count());
  n.seq = seq_++;
  file(i);
  ++pending_;
  return (static_cast<TimerId>(n.gen) << 32) | i;
}

bool TimerQueue::cancel(TimerId id) {
  uint32_t i;
  if (!valid(id, &i)) return false;
  if (node(i).prev == kNil) return false;  // firing: no longer pending
  unlink(i);
  --pending_;
  // A running callback cancelling its own (periodic) timer: the node is
  // released once the callback returns.
  if (i != running_) release(i);
  return true;
}

bool TimerQueue::reset(TimerId id, Clock::time_point when) {
  uint32_t i;
  if (!valid(id, &i)) return false;
  Node& n = node(i);
  if (n.prev != kNil) {
    unlink(i);
  } else {
    ++pending_;  // a firing timer re-armed from its callback
  }
  n.when = to_ns(when);
  n.seq = seq_++;
  file(i);
  return true;
}

// The earliest tick >= current_ at which something happens: a level-0
// slot's timers fire, or a non-empty upper slot cascades. Levels' slot
// windows are aligned to absolute tick numbers, so the answer depends only
// on current_ and the bitmaps.
int64_t TimerQueue::next_event_tick() const {
  int64_t best = std::numeric_limits<int64_t>::max();
  const uint32_t i0 = static_cast<uint32_t>(current_ & (kL0Slots - 1));
  if (int b = find_from(bits0_, i0); b >= 0) {
    best = current_ + (b - static_cast<int64_t>(i0));
  } else if (int w = find_from(bits0_, 0); w >= 0) {
    // Slots below i0 hold the ticks after the next 256-tick boundary.
    best = current_ + (kL0Slots - i0) + w;
  }
  for (int level = 1; level < kLevels; ++level) {
    const uint64_t m = bitsn_[level - 1];
    if (m == 0) continue;
    const int s = shift_of(level);
    // First window boundary at or after current_, and the first non-empty
    // slot from there on, cyclically.
    const int64_t k0 = (current_ + (int64_t{1} << s) - 1) >> s;
    const int j0 = static_cast<int>(k0 & (kLnSlots - 1));
    const int d = std::countr_zero(std::rotr(m, j0));
    best = std::min(best, (k0 + d) << s);
  }
  return best;
}

Clock::time_point TimerQueue::next_deadline() {
  if (pending_ == 0) return Clock::time_point::max();
  const int64_t t = next_event_tick();
  if (t > std::numeric_limits<int64_t>::max() / kTickNs) return Clock::time_point::max();
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(nanoseconds(t * kTickNs)));
}

// At a 256-tick boundary: move the timers of the upper slots whose window
// starts now down the wheel (level 1 first; level n+1 only when level n's
// index wrapped to 0, i.e. its window starts now too).
void TimerQueue::cascade(int64_t tick) {
  for (int level = 1; level < kLevels; ++level) {
    const int s = shift_of(level);
    const uint32_t idx = static_cast<uint32_t>((tick >> s) & (kLnSlots - 1));
    const uint32_t slot = kL0Slots + static_cast<uint32_t>(level - 1) * kLnSlots + idx;
    // Splice onto a private list first: a parked far timer may be filed
    // into a slot of the same level.
    while (node(slot).next != slot) {
      const uint32_t i = node(slot).next;
      unlink(i);
      link(kCascadeList, i);
    }
    while (node(kCascadeList).next != kCascadeList) {
      const uint32_t i = node(kCascadeList).next;
      unlink(i);
      file(i);
    }
    if (idx != 0) break;
  }
}

// Moves level-0 slot `slot` onto the due list, sorted by (deadline, arm
// order). Timers that share a tick are usually few.
void TimerQueue::take_due(uint32_t slot) {
  scratch_.clear();
  while (node(slot).next != slot) {
    const uint32_t i = node(slot).next;
    unlink(i);
    scratch_.push_back(i);
  }
  if (scratch_.size() > 1) {
    std::sort(scratch_.begin(), scratch_.end(), [this](uint32_t a, uint32_t b) {
      const Node& x = node(a);
      const Node& y = node(b);
      if (x.when != y.when) return x.when < y.when;
      return static_cast<int32_t>(x.seq - y.seq) < 0;  // wrap-safe
    });
  }
  for (uint32_t i : scratch_) link(kDueList, i);
}

size_t TimerQueue::fire(int64_t now_ns) {
  size_t ran = 0;
  // Callbacks may cancel or reset timers still on the due list; those are
  // simply unlinked from it.
  while (node(kDueList).next != kDueList) {
    const uint32_t i = node(kDueList).next;
    unlink(i);
    Node& n = node(i);  // chunk storage: stays put while the callback runs
    if (n.interval > 0) {
      // Re-arm before running so the callback can cancel itself. Anchored
      // to the previous deadline so a periodic timer does not drift.
      int64_t next = saturating_add(n.when, n.interval);
      if (next <= now_ns) next = saturating_add(now_ns, n.interval);  // skip missed periods
      n.when = next;
      n.seq = seq_++;
      file(i);
    } else {
      --pending_;
    }
    running_ = i;
    n.cb();
    running_ = kNil;
    // Unlinked now: a one-shot timer its callback did not reset(), or a
    // periodic one that cancelled itself.
    if (n.prev == kNil) release(i);
    ++ran;
  }
  return ran;
}

size_t TimerQueue::run_expired(Clock::time_point now) {
  const int64_t now_ns = to_ns(now);
  const int64_t now_tick = floor_div(now_ns, kTickNs);
  size_t ran = 0;
  while (pending_ > 0) {
    const int64_t t = next_event_tick();
    if (t > now_tick) break;
    current_ = t;
    if ((t & (kL0Slots - 1)) == 0) cascade(t);
    take_due(static_cast<uint32_t>(t & (kL0Slots - 1)));
    // Timers (re)armed by callbacks for this tick or earlier go to the
    // next tick's slot.
    current_ = t + 1;
    ran += fire(now_ns);
  }
  // Nothing is due up to now_tick: skip the empty stretch (a clock that
  // went backwards leaves current_ where it was).
  if (current_ <= now_tick) current_ = now_tick + 1;
  return ran;
}

}  // namespace sluice
