// The IO back-end interface: the one seam between sluice's core and an IO
// model (blocking, nonblocking, select, poll, epoll, io_uring).
//
// Why completion style at the seam: a proactor (io_uring, or threads doing
// blocking calls) cannot expose "fd is readable", but every reactor can
// cheaply turn readiness into completions ("these bytes arrived", "n bytes
// left your output"). So core code (Connection, Server,
// user handlers) only ever sees completions, and each back end does the
// actual recv/send/accept in whatever way its model dictates. Readiness
// back ends share that adaptation in io/reactor.h and differ only in a
// 3-method Poller.
//
// Thread rules:
//  * A Backend belongs to exactly one EventLoop and is driven by that loop's
//    thread: every method except wakeup() is called on the loop thread.
//  * wakeup() may be called from any thread.
//  * Every Channel callback (on_*) is invoked on the loop thread, from
//    inside wait() or flush(). Back ends that use helper threads (blocking)
//    hand completions to the loop thread first.
//
// Ownership: the core owns Channels and their descriptors. A back end keeps
// per-channel state in Channel::io (created in attach, destroyed when the
// channel is released). After detach() the back end stops touching the fd
// and, once no operation of its own can still refer to the channel, calls
// on_detached(); only then may the core close the fd and free the channel.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "base/buffer.h"
#include "io/datagram.h"

namespace sluice::io {

// Per-channel state private to a back end (in-flight buffers, helper
// threads, registered interest ...).
class ChannelState {
 public:
  virtual ~ChannelState() = default;
};

class Channel {
 public:
  enum class Kind : uint8_t {
    kListener,  // a listening TCP socket: produces on_accept
    kStream,    // a connected TCP socket: input/output byte streams
    kDatagram,  // a bound UDP socket: on_datagram in, datagrams() out
  };

  Channel(int fd, Kind kind)
      : fd_(fd),
        kind_(kind),
        datagrams_(kind == Kind::kDatagram ? std::make_unique<DatagramQueue>() : nullptr) {}
  virtual ~Channel() = default;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  int fd() const { return fd_; }
  Kind kind() const { return kind_; }

  // Stream output: the back end sends from it. A back end may move its
  // bytes (and storage) into a buffer of its own while a send is in flight
  // (io_uring, blocking), so core code counts unsent bytes itself rather
  // than looking at output().readable(). Once output is sent the back end
  // release()s the storage: an idle channel holds none. (Input has no
  // per-channel buffer: it arrives as views, see on_input.)
  Buffer& output() { return output_; }
  const Buffer& output() const { return output_; }
  // Datagram channels only: outgoing datagrams; update() sends them, in order.
  // A datagram the kernel refuses (e.g. EMSGSIZE, unreachable) is dropped
  // and counted, never fatal to the channel. As with output(), a back end
  // may move queued datagrams into a queue of its own (io_uring, blocking),
  // so an empty datagrams() does not mean "sent": the core counts what is
  // still owed from on_datagrams_sent.
  DatagramQueue& datagrams() { return *datagrams_; }

  // Whether the core wants input now (false while applying backpressure).
  // Set by the core; back ends only read it.
  bool want_read() const { return want_read_; }
  void set_want_read(bool on) { want_read_ = on; }

  // Completion events, all on the loop thread.
  // Listener: a new connection; the callee owns new_fd (already
  // close-on-exec; blocking mode is set by attach()).
  virtual void on_accept(int new_fd) { (void)new_fd; }
  // Listener: accept failed with -err (EMFILE, ENFILE, ENOBUFS ...). The
  // back end keeps listening.
  virtual void on_accept_error(int err) { (void)err; }
  // Stream: bytes arrived (never empty). The view is valid only during the
  // call: it points into storage the back end reuses at once (the loop's
  // read buffer, an io_uring provided buffer). The channel copies what it
  // keeps -- for a framing codec, only an incomplete frame's tail.
  virtual void on_input(std::string_view data) { (void)data; }
  // Datagram: one datagram arrived (views valid only during the call).
  // Reading pauses while want_read() is false, as for streams.
  virtual void on_datagram(const Datagram& d) { (void)d; }
  // Stream: n > 0 bytes of output were handed to the kernel.
  virtual void on_sent(size_t n) { (void)n; }
  // Datagram: n > 0 datagrams taken from datagrams() are finished with:
  // handed to the kernel, or refused by it (or given up on) and dropped.
  // Every datagram taken is reported exactly once (in any grouping) unless the
  // channel fails or is detached first; so "queued minus finished" is
  // what the back end still owes (what a close must wait for).
  virtual void on_datagrams_sent(size_t n) { (void)n; }
  // Stream: the peer shut down its write side (read returned 0). No more
  // on_input follows.
  virtual void on_eof() {}
  // Stream: a fatal socket error (-errno, e.g. -ECONNRESET, -EPIPE). The
  // core will detach.
  virtual void on_error(int err) { (void)err; }
  // The back end has released the channel (see Ownership above).
  virtual void on_detached() {}

  // Back-end private state; only the owning back end touches it.
  std::unique_ptr<ChannelState> io;

 private:
  int fd_;
  Kind kind_;
  bool want_read_ = true;
  Buffer output_;
  std::unique_ptr<DatagramQueue> datagrams_;  // datagram channels only
};

struct BackendOptions {
  // epoll only: edge-triggered instead of level-triggered notification.
  bool edge_triggered = false;
  // blocking only: cap on concurrently served connections (threads).
  size_t max_conns = 4096;
  // uring only: submission queue depth.
  unsigned uring_entries = 4096;
};

// What the core does to a channel it owns: the part of a back end that
// serves one channel. A Backend is one; so is a transport that is not a
// kernel socket (rudp/: its connections are Connections whose channels it
// serves through these calls, over a UDP socket of its own). Loop thread.
class ChannelOps {
 public:
  // Starts serving a channel: listeners start accepting, streams start
  // reading (if want_read()). Returns 0 or -errno (then the channel was not
  // taken and on_detached will not be called). A channel that is attached
  // already is refused (-EEXIST; blocking: -EBUSY) and left as it was.
  virtual int attach(Channel& ch) = 0;

  // The channel's want_read() or pending output changed: start or stop
  // reading, and send what output() holds. Called by the core after a
  // handler queued output and when backpressure toggles; cheap if nothing
  // changed. May call on_sent/on_error synchronously. The core may call it
  // from inside on_input (to answer at once), so it must be re-entrant with
  // respect to the back end's own dispatch.
  virtual void update(Channel& ch) = 0;

  // Stream channels with no output queued and no send in flight: sends
  // what the kernel takes of `bytes` now, without queueing them. Returns
  // the bytes taken (the caller queues the rest in output() and calls
  // update()), or -errno. Lets a handler answer from the view on_input
  // gave it without copying (Connection's zero-copy echo). A back end
  // that cannot send inline (a proactor: io_uring, blocking) returns 0.
  // No callbacks run inside.
  virtual ssize_t send_now(Channel& ch, std::string_view bytes) {
    (void)ch;
    (void)bytes;
    return 0;
  }

  // Stops all IO on the channel (cancelling in-flight operations). Calls
  // on_detached() now or later from wait().
  virtual void detach(Channel& ch) = 0;

  // Stream channels: the FIN after everything handed over (a half-close).
  // Returns 0 or -errno. A socket's is shutdown(SHUT_WR).
  virtual int shutdown_write(Channel& ch) {
    return ::shutdown(ch.fd(), SHUT_WR) == 0 ? 0 : -errno;
  }

  // A message transport only (rudp): sends `message` as one unreliable
  // message, outside the stream (it may be lost, is never duplicated or
  // delivered after a later one). False when the channel cannot (a TCP
  // socket, a message over the transport's limit, the channel closing).
  virtual bool send_unreliable(Channel& ch, std::string_view message) {
    (void)ch;
    (void)message;
    return false;
  }

 protected:
  ~ChannelOps() = default;
};

class Backend : public ChannelOps {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // Waits up to `timeout` (negative: no limit) for IO and dispatches
  // completions. Returns the number of events dispatched, or -errno on a
  // fatal back-end error.
  //
  // The sweep is complete: input the kernel held when wait() began is
  // dispatched (at least one completion per channel that had some) before
  // it returns, even if the wait is cut short -- EINTR after SIGSTOP and
  // SIGCONT, a full event batch. The loop's timers judge absence on that
  // promise (core/event_loop.h, "Loop time"). A back end whose helper
  // threads read (blocking) can only promise it for what those threads
  // already read; see io/blocking.h for how it closes the gap.
  virtual int wait(std::chrono::milliseconds timeout) = 0;

  // Makes a concurrent or future wait() return promptly. Any thread.
  virtual void wakeup() = 0;

  // The time as this back end sees it. Loop thread. The back end is what
  // decides when time passes: a real one sleeps in the kernel for as long
  // as wait() asks, so its time is the steady clock; a simulated one
  // (io/sim_backend.h) jumps its virtual clock to the next event instead
  // of sleeping. EventLoop takes all its time from here (its timers, and
  // the clock() every loop-bound time stamp in the core uses), so timers,
  // idle detection and lingering run in virtual time on a simulation and
  // unchanged on real back ends.
  virtual std::chrono::steady_clock::time_point now() const {
    return std::chrono::steady_clock::now();
  }
};

}  // namespace sluice::io
