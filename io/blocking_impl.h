// The blocking back end's implementation class, private to //io:blocking;
// see io/blocking.h for the model.
//
// Where the code lives:
//   io/blocking.cc           the Backend methods, helper threads (spawn,
//                            start gate, exit report), dispatch, detach
//                            and on_detached, destruction
//   io/blocking_listener.cc  listeners: the acceptor thread, on_accept
//   io/blocking_stream.cc    streams: reader and writer threads, on_input,
//                            on_sent, on_eof
//   io/blocking_datagram.cc  datagram channels: receiver and sender
//                            threads, on_datagram
//
// Locking: each Conn has a mutex `m` guarding the state shared with its
// helper threads (the "shared" block below); the back end's `mu_` guards the
// ready queue, Conn::queued and woken_. Lock order: Conn::m before mu_ (the
// loop thread never takes a Conn::m while holding mu_). Fields marked
// "loop" are touched only by the loop thread. Nothing is joined or called
// back while a lock is held.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "io/backend.h"

namespace sluice::io::blocking_internal {

using Clock = std::chrono::steady_clock;

// Back-off after EAGAIN on a blocking socket (someone set a timeout or
// O_NONBLOCK behind our back): keeps such a socket from spinning a thread.
constexpr auto kAgainBackoff = std::chrono::milliseconds(1);
// How long wait() gives a receiver thread that is behind (receiver_behind)
// to hand its input over before returning empty-handed: the sweep must be
// complete (Backend::wait), and a timer may be about to judge absence.
constexpr auto kCatchUp = std::chrono::milliseconds(20);

// Drops every datagram of q.
inline void clear(DatagramQueue& q) { q.pop(q.size()); }

class BlockingBackend;

struct Conn : std::enable_shared_from_this<Conn> {
  Conn(BlockingBackend* o, Channel* c)
      : owner(o), ch(c), fd(c->fd()), kind(c->kind()) {}

  BlockingBackend* const owner;

  // ---- loop ----
  Channel* ch;            // null once on_detached was delivered / abandoned
  const int fd;
  const Channel::Kind kind;
  bool detaching = false;  // detach() (or abandon) was called
  bool finished = false;   // threads joined, conn released
  bool eof_delivered = false;
  bool error_delivered = false;
  bool has_reader = false, has_writer = false;
  bool reader_joined = false, writer_joined = false;
  pthread_t reader{}, writer{};
  Buffer spare;       // loop-side swap partner for `in`

  // ---- guarded by owner->mu_ ----
  bool queued = false;

  // ---- shared, guarded by m ----
  std::mutex m;
  std::condition_variable reader_cv;  // reader / acceptor waits here
  std::condition_variable writer_cv;
  bool started = false;   // gate: threads wait for this before any syscall
  bool stopping = false;  // detach / destruction: threads exit
  // reader
  bool want_read = true;
  Buffer in;
  bool eof = false;
  int rd_error = 0;
  bool reader_done = false;
  // writer
  Buffer out;
  bool writer_busy = false;  // owns a buffer that is not fully sent yet
  size_t sent = 0;           // not yet reported: bytes sent (on_sent), or
                             // datagrams finished (on_datagrams_sent)
  int wr_error = 0;
  bool writer_done = false;
  // listener
  std::deque<int> accepted;
  std::deque<int> accept_errors;
  // datagram receiver (uses want_read, rd_error, reader_done above)
  DatagramQueue rx;         // received, not yet taken by the loop
  size_t rx_bytes = 0;      // payload bytes in rx
  size_t held_count = 0;    // taken by the loop, not yet delivered
  size_t held_bytes = 0;    //   (count against the receiver's limits)
  // datagram sender (uses writer_busy, writer_done above)
  DatagramQueue tx;         // handed over, not yet taken by the sender

  // ---- loop ----
  DatagramQueue held;       // datagrams being delivered (oldest first)
};

class Handle final : public ChannelState {
 public:
  explicit Handle(std::shared_ptr<Conn> c) : conn(std::move(c)) {}
  ~Handle() override;
  std::shared_ptr<Conn> conn;
};

class BlockingBackend final : public Backend {
 public:
  explicit BlockingBackend(const BackendOptions& options)
      : max_conns_(options.max_conns) {
    // Create spdlog's registry (a function-local static) here, before any
    // helper thread can log: pthread_create then orders it before every
    // thread's first log call, which ThreadSanitizer can see (it cannot see
    // the static's guard inside the uninstrumented libspdlog).
    (void)spdlog::default_logger_raw();
  }
  ~BlockingBackend() override;

  std::string_view name() const override { return "blocking"; }
  int attach(Channel& ch) override;
  void update(Channel& ch) override;
  void detach(Channel& ch) override;
  int wait(std::chrono::milliseconds timeout) override;
  void wakeup() override;

  // Channel freed while attached (a core bug): stop without callbacks.
  void abandon(const std::shared_ptr<Conn>& c);

 private:
  using Fn = void (BlockingBackend::*)(Conn&);
  struct ThreadArg {
    BlockingBackend* self;
    std::shared_ptr<Conn> conn;
    Fn fn;
  };
  static void* thread_main(void* p);
  int spawn(const std::shared_ptr<Conn>& c, Fn fn, const char* name,
            pthread_t* out);
  // A helper thread's first step: waits until attach() opens the start
  // gate (or the channel is stopping).
  static void await_start(Conn& c);
  // A reader thread's first step: allocates its staging buffer of size
  // bytes, waits at the start gate, and records (and logs) ENOMEM if the
  // buffer could not be had (`what` names it in the log line).
  static std::unique_ptr<char[]> start_reader(Conn& c, size_t size,
                                              const char* what);
  // A reader / acceptor thread's last step: reports that it is exiting.
  void reader_exit(Conn& c);

  void reader_loop(Conn& c);
  void writer_loop(Conn& c);
  void acceptor_loop(Conn& c);
  void datagram_reader_loop(Conn& c);
  void datagram_writer_loop(Conn& c);

  void post(Conn& c);
  void stop(Conn& c);
  void hand_over_output(Conn& c, Channel& ch);
  void hand_over_datagrams(Conn& c, Channel& ch);

  int dispatch(const std::shared_ptr<Conn>& c);
  // Whether a datagram receiver thread has input in the kernel that it has
  // not handed over (it has not run since the process resumed, say). Loop
  // thread, without mu_ held.
  bool receiver_behind();
  int dispatch_listener(Conn& c);
  int dispatch_stream(Conn& c);
  int dispatch_datagram(Conn& c);
  int maybe_finish(const std::shared_ptr<Conn>& c);

  // The channel's Conn if this back end attached it, else null.
  Conn* conn_of(Channel& ch) const {
    auto* h = dynamic_cast<Handle*>(ch.io.get());
    if (h == nullptr || h->conn == nullptr || h->conn->owner != this) {
      return nullptr;
    }
    return h->conn.get();
  }

  const size_t max_conns_;
  // Streams served (see header) plus accepted fds not yet delivered.
  std::atomic<size_t> served_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Conn>> ready_;  // guarded by mu_
  bool woken_ = false;                        // guarded by mu_

  // ---- loop ----
  std::vector<std::shared_ptr<Conn>> batch_;
  std::unordered_set<std::shared_ptr<Conn>> conns_;  // not yet finished
};

}  // namespace sluice::io::blocking_internal
