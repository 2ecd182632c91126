// Idle detection (the model is Netty's IdleStateHandler): reader-idle when
// nothing was received for a while, writer-idle when no output progress was
// made for a while, all-idle when neither happened.
//
// IdleState is the pure bookkeeping, with the clock passed in, so it is
// unit-tested without sleeping. Its owner (Connection, or a UDP peer table)
// records activity as plain timestamp stores and keeps ONE timer armed at
// next_check(): activity never touches the timer. When the timer fires,
// poll() reports the kinds that are idle and moves next_check() to the
// earliest moment another kind can become idle, i.e. the timer is re-armed
// for the remaining time instead of being cancelled on every byte.
//
// Semantics per kind with duration d > 0 (0 = off): it fires when d has
// passed since its last activity (or since start()); while the condition
// persists it fires again every d (as Netty does). "Writer activity" is
// output progress (bytes handed to the kernel), not queueing, so a large
// send the kernel keeps taking is never writer-idle, while one stuck behind
// a peer that stopped reading is.
//
// Thread rules: not synchronised; used by its owner's loop thread only.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>

#include "core/timer_queue.h"

namespace sluice {

enum class IdleKind { kReader, kWriter, kAll };

const char* to_string(IdleKind kind);

struct IdleOptions {
  Clock::duration reader{0};  // no input for this long
  Clock::duration writer{0};  // no output progress for this long
  Clock::duration all{0};     // neither
  bool enabled() const {
    return reader.count() > 0 || writer.count() > 0 || all.count() > 0;
  }
};

class IdleState {
 public:
  struct Fired {
    std::array<IdleKind, 3> kinds{};
    size_t count = 0;
  };

  // (Re)starts tracking at `now`: every enabled kind's clock starts there.
  void start(const IdleOptions& options, Clock::time_point now);
  const IdleOptions& options() const { return options_; }

  // Activity at `when`. Stamps only move forward: a caller may learn late
  // of activity that happened earlier (the kernel's TCP_INFO timestamps).
  void on_read(Clock::time_point when) { last_read_ = std::max(last_read_, when); }
  void on_write(Clock::time_point when) { last_write_ = std::max(last_write_, when); }
  Clock::time_point last_read() const { return last_read_; }
  Clock::time_point last_write() const { return last_write_; }

  // The owner's timer fired at `now` (maybe late, never early). Returns the
  // kinds idle now (in reader, writer, all order) and updates next_check().
  Fired poll(Clock::time_point now);

  // When the owner's timer must fire next; time_point::max() when off.
  Clock::time_point next_check() const;

 private:
  Clock::time_point last_of(size_t kind) const;
  Clock::duration duration_of(size_t kind) const;

  IdleOptions options_;
  Clock::time_point last_read_{};
  Clock::time_point last_write_{};
  // Per kind: when to look at it next (max() when off).
  std::array<Clock::time_point, 3> next_{Clock::time_point::max(), Clock::time_point::max(),
                                         Clock::time_point::max()};
};

}  // namespace sluice
