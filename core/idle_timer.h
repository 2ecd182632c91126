// IdleTimer: IdleState driven by one loop timer, for owners that are not a
// Connection (UDP peers, UDP client sessions). Activity is a timestamp
// store; the timer re-arms itself lazily for the remaining time (same
// timer node, no allocation) and calls on_idle for each idle kind.
//
// The owner may destroy the IdleTimer from inside on_idle (e.g. forget a
// UDP peer); the timer is cancelled by the destructor.
//
// Thread rules: the loop's thread only; not movable (the timer refers to
// it).
#pragma once

#include <functional>

#include "core/event_loop.h"
#include "core/idle_state.h"

namespace sluice {

class IdleTimer {
 public:
  using OnIdle = std::function<void(IdleKind)>;

  IdleTimer(EventLoop& loop, OnIdle on_idle) : loop_(loop), on_idle_(std::move(on_idle)) {}
  ~IdleTimer();
  IdleTimer(const IdleTimer&) = delete;
  IdleTimer& operator=(const IdleTimer&) = delete;

  // (Re)starts with these durations from now; all zero: stops.
  void start(const IdleOptions& options);
  void stop();
  void on_read() { state_.on_read(loop_.clock()); }
  void on_write() { state_.on_write(loop_.clock()); }
  // Same, with a time the caller already has.
  void on_read(Clock::time_point now) { state_.on_read(now); }
  const IdleState& state() const { return state_; }

 private:
  void arm();
  void fire();

  EventLoop& loop_;
  OnIdle on_idle_;
  IdleState state_;
  TimerId timer_ = 0;
  bool on_ = false;
  bool* destroyed_ = nullptr;  // set while fire() runs callbacks
};

}  // namespace sluice
