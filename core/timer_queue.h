// TimerQueue: one-shot and repeating timers for one loop, on a hierarchical
// hashed timing wheel (Varghese & Lauck; the layout of Linux's classic
// timer wheel), so add, cancel and reset are O(1) with a timer per
// connection at hundreds of thousands of connections.
//
// The clock is passed in (run_expired(now), add(when, ...)), so tests drive
// it with an injected clock and never sleep to reach a deadline.
//
// Resolution: deadlines are rounded UP to the next kTick (1 ms) boundary.
// A timer never fires before its deadline and, given a run_expired() call
// at that boundary, at most one tick after it. Timers due in the same tick
// fire in deadline order, ties in the order they were (re)armed.
//
// Layout: 5 levels; level 0 has 256 one-tick slots, levels 1-4 have 64
// slots each covering 2^8, 2^14, 2^20, 2^26 ticks, so the wheel spans 2^32
// ticks (49.7 days at 1 ms); a later deadline parks in the top level and is
// re-filed until it comes into range. A timer in level n>0 moves down
// ("cascades") when its slot's window begins: at most 4 moves in its life,
// one for a typical seconds-long idle timer. Per-level bitmaps of non-empty
// slots make next_deadline() and skipping idle stretches O(1).
//
// Storage: timers live in fixed 64-byte nodes allocated in chunks (stable
// addresses, so a callback runs in place and may add timers), linked into
// their slot by 32-bit indices, recycled through a free list. A TimerId is
// (generation << 32 | node index); the generation is odd while the node is
// in use, so a stale id never matches a recycled node. reset() moves a
// timer to a new deadline keeping its node and callback: re-arming costs no
// allocation, which is what per-connection idle timers do all the time.
//
// Thread rules: loop thread only (not synchronised). Callbacks may add,
// cancel and reset timers, including their own; they must not call
// run_expired() (not reentrant) nor destroy the queue. Callback objects are
// destroyed when their timer is cancelled or done, or with the queue.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace sluice {

using Clock = std::chrono::steady_clock;
using TimerId = uint64_t;  // 0 is never a valid id
using TimerCallback = std::function<void()>;

class TimerQueue {
 public:
  static constexpr Clock::duration kTick = std::chrono::milliseconds(1);

  // `start`: the current time. Deadlines before it are due at once. The
  // default (the clock's epoch) suits an injected clock starting at {};
  // a real loop passes Clock::now().
  explicit TimerQueue(Clock::time_point start = Clock::time_point{});
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // interval zero (or negative): one-shot; otherwise re-armed every
  // interval after when (anchored to the deadline, skipping missed periods).
  TimerId add(Clock::time_point when, Clock::duration interval, TimerCallback cb);
  // Returns true if the timer was pending (it will not fire again). A
  // one-shot timer is no longer pending while its callback runs.
  bool cancel(TimerId id);
  // Moves a pending timer to a new deadline, or re-arms a one-shot timer
  // from inside its own callback, keeping its node and callback (no
  // allocation). Returns false for an unknown, finished or cancelled id.
  bool reset(TimerId id, Clock::time_point when);
  // Runs every timer due at `now`; returns how many ran. Timers that
  // callbacks add or reset to a deadline already due may run in this call.
  size_t run_expired(Clock::time_point now);
  // When run_expired() next has work: the earliest deadline (rounded up to
  // the tick), or an earlier moment at which far timers move down a level.
  // Never later than a pending deadline. time_point::max() when none.
  Clock::time_point next_deadline();
  size_t size() const { return pending_; }

  // Bytes held by the node slab (for benchmarks and capacity planning);
  // callbacks whose captures do not fit std::function's inline buffer
  // allocate on top of this.
  size_t memory_bytes() const;
  static size_t node_bytes();

 private:
  struct Node;

  Node& node(uint32_t i) const;
  uint32_t alloc();
  void grow();
  void release(uint32_t i);
  bool valid(TimerId id, uint32_t* index) const;
  void link(uint32_t list, uint32_t i);
  void unlink(uint32_t i);
  void file(uint32_t i);  // links a node into the slot for its deadline
  uint32_t slot_for(int64_t tick) const;
  int64_t next_event_tick() const;
  void cascade(int64_t tick);
  void take_due(uint32_t slot);
  size_t fire(int64_t now_ns);

  std::vector<std::unique_ptr<Node[]>> chunks_;
  uint32_t free_;           // free-list head (kNil when empty)
  size_t pending_ = 0;      // timers linked into the wheel or the due list
  int64_t current_;         // next tick to process; earlier ticks are done
  uint32_t seq_ = 0;        // arm order, for ties within a tick
  uint32_t running_;        // node whose callback runs now (kNil: none)
  uint64_t bits0_[4] = {};  // level 0: non-empty slots
  uint64_t bitsn_[4] = {};  // levels 1-4: non-empty slots
  std::vector<uint32_t> scratch_;  // sorting the due list
};

}  // namespace sluice
