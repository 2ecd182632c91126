// UdpEndpoint: one bound UDP socket served by a loop's back end, as an
// io::Channel of Kind::kDatagram. Datagrams (up to io::kMaxDatagram =
// 64 KiB) arrive through DatagramHandler::on_datagram; send_to() queues a
// datagram into datagrams() and schedules ONE backend().update() at the end
// of the loop iteration (the same deferred flush as Connection), so a burst
// of replies costs one sendmmsg on the reactor back ends.
//
// Life cycle: start() attaches and calls on_open -> close() (on_close is
// the handler's last call; every datagram queued before it is still sent:
// the close waits until the back end reports each one finished, through
// on_datagrams_sent, for up to kCloseFlushLimit) -> the back end releases
// the channel ->
// fd closed -> Owner::release(), which must hand the object to
// loop.destroy_later(). A back end that cannot serve datagram channels
// refuses them in attach() with -EOPNOTSUPP (start() returns it).
//
// Bounded memory: at most max_queued datagrams wait for the kernel (queued
// here or already taken by the back end: pending()); more are dropped and
// counted (UDP may drop anyway; a sender must not be able to grow the
// queue without limit by making us reply to it).
//
// Thread rules: loop thread only (the loop passed in). DatagramHandler
// callbacks run on that thread; one handler object may serve endpoints on
// several loops at once (UdpServer with threads > 1), so keep per-endpoint
// state in state<T>() (core/state_slot.h).
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/state_slot.h"
#include "core/timer_queue.h"
#include "io/backend.h"
#include "io/datagram.h"

namespace sluice {

class EventLoop;
class UdpEndpoint;

class DatagramHandler {
 public:
  virtual ~DatagramHandler() = default;
  virtual void on_open(UdpEndpoint& ep) { (void)ep; }
  // One datagram; d's views are valid only during the call.
  virtual void on_datagram(UdpEndpoint& ep, const io::Datagram& d) = 0;
  // Last call for this endpoint (its fd is still open; sends are refused).
  // ep.close_error() says why: 0 for close()/stop, else the socket error.
  virtual void on_close(UdpEndpoint& ep) { (void)ep; }
};

class UdpEndpoint final : public io::Channel {
 public:
  class Owner {
   public:
    virtual void release(UdpEndpoint& ep) = 0;

   protected:
    ~Owner() = default;
  };

  struct Stats {
    uint64_t received = 0;
    uint64_t queued = 0;           // accepted by send_to()
    uint64_t sent = 0;             // finished by the back end: handed to the
                                   // kernel, or refused by it and dropped
    uint64_t dropped_full = 0;     // send_to() refused: queue full
    uint64_t dropped_too_big = 0;  // send_to() refused: over kMaxDatagram
  };

  static constexpr size_t kDefaultMaxQueued = 4096;
  // How long close() waits for queued datagrams to be sent.
  static constexpr Clock::duration kCloseFlushLimit = std::chrono::milliseconds(200);

  // Takes ownership of fd (a bound UDP socket, e.g. from bind_udp()).
  UdpEndpoint(EventLoop& loop, int fd, DatagramHandler& handler, Owner& owner,
              size_t max_queued = kDefaultMaxQueued);
  ~UdpEndpoint() override;

  // Attaches to the loop's back end and calls on_open. Returns 0 or -errno
  // (then the fd is closed and no other callback follows).
  int start();

  // Queues one datagram to addr. False when closing, queue full, or over
  // kMaxDatagram (counted in stats()). Kernel refusals later (EMSGSIZE,
  // unreachable) drop that datagram only.
  bool send_to(const sockaddr* addr, socklen_t len, std::string_view data);

  // Stops receiving (on_close runs now), waits until the back end has sent
  // what is queued (bounded by kCloseFlushLimit), then releases.
  void close();

  // The loop has stopped for good without the back end releasing this
  // endpoint (its wait() failed, or a stop deadline passed): runs on_close
  // if it has not run and makes the back end let go of the socket (detach,
  // then dropping Channel::io). Unsent datagrams are lost. Returns the fd
  // for the caller to close once the loop, and so the back end, has been
  // destroyed (a helper thread may still be leaving a call on it until
  // then), or -1 when the back end released it already (fd closed, and
  // release() called). Loop thread, after run() returned; the owner then
  // destroys the object.
  int abandon();

  // Datagrams accepted by send_to() that the back end has not finished
  // with yet (stats().queued - stats().sent).
  size_t pending() const { return static_cast<size_t>(stats_.queued - stats_.sent); }

  bool is_open() const { return state_ == State::kOpen; }
  // 0 while open and after close(); the -errno the back end reported when
  // a socket error closed the endpoint (set before on_close runs).
  int close_error() const { return close_error_; }
  EventLoop& loop() { return loop_; }
  uint16_t local_port() const;
  // Per-endpoint state of the handler's own type (core/state_slot.h).
  template <class T>
  T& state() { return state_slot_.get<T>(); }
  template <class T>
  T* find_state() { return state_slot_.find<T>(); }
  StateSlot& state_slot() { return state_slot_; }
  const Stats& stats() const { return stats_; }

 private:
  enum class State { kNew, kOpen, kClosing, kDetaching, kClosed };

  void on_datagram(const io::Datagram& d) override;
  void on_input(std::string_view data) override;
  void on_datagrams_sent(size_t n) override;
  void on_error(int err) override;
  void on_detached() override;
  void schedule_flush();
  void finish_close(Clock::time_point deadline);

  EventLoop& loop_;
  DatagramHandler& handler_;
  Owner& owner_;
  size_t max_queued_;
  StateSlot state_slot_;
  Stats stats_;
  State state_ = State::kNew;
  bool flush_scheduled_ = false;
  TimerId close_timer_ = 0;
  int close_error_ = 0;
};

}  // namespace sluice
