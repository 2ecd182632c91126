// Poller: the readiness half of a reactor back end. select, poll, epoll and
// the notification-less "nonblocking" model differ only here; turning
// readiness into the completion events of io/backend.h is shared
// (io/reactor.h). Three methods, like muduo's Poller.
//
// Thread rules: loop thread only, except interrupt() (any thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

namespace sluice::io {

class Poller {
 public:
  enum : uint32_t {
    kRead = 1u << 0,
    kWrite = 1u << 1,
    kError = 1u << 2,  // error or hang-up reported (output only)
  };
  struct Event {
    void* ctx;  // as given to set_interest
    uint32_t events;
  };

  virtual ~Poller() = default;

  // Sets the interest mask for fd; 0 stops watching it (and no error or
  // hang-up is reported for it any more). Returns 0 or -errno.
  virtual int set_interest(int fd, uint32_t interest, void* ctx) = 0;

  // Waits up to timeout (negative: forever) and appends ready events. The
  // sweep is complete: every descriptor ready when the call began (or when
  // it stopped waiting) is reported, even if the wait was interrupted
  // (EINTR: poll again without blocking) or the poller's batch filled up.
  // The loop's timers rely on this (core/event_loop.h, "Loop time").
  // `progress` is how many events the previous pass turned into work; a
  // poller without notification uses it to back off when idle.
  virtual int wait(std::chrono::milliseconds timeout, int progress,
                   std::vector<Event>& out) = 0;

  // True when events are edge-triggered: the reactor then drains reads and
  // writes until EAGAIN instead of doing one call per event.
  virtual bool edge_triggered() const { return false; }

  // Another thread wants a sleeping wait() back. Pollers that sleep inside
  // the kernel are woken by the reactor's eventfd instead and ignore this.
  virtual void interrupt() {}
};

}  // namespace sluice::io
