// EventLoop: one per thread. Drives one IO back end, a timer queue, a
// cross-thread task queue and end-of-iteration work.
//
// One iteration:
//   1. now() := the back end's clock; backend.wait(until the next timer, or 0 if
//      tasks are queued) -> IO completions run channel callbacks (user
//      handlers)
//   2. timers due by now() run -- the time the wait began, not the time it
//      returned (see "Loop time" below)
//   3. posted tasks run (FIFO)
//   4. deferred tasks run (e.g. flushing output queued by 1-3), until none
//   5. objects handed to destroy_later() are destroyed
// Because of 4 and 5, a handler may close a connection, or queue output
// many times, from any callback: the flush is one back-end call per
// connection per iteration, and nothing is freed while a callback that
// might still touch it is on the stack.
//
// Loop time: a timer usually judges an absence ("nothing arrived from this
// peer for 3 s"). That verdict is only sound up to the last moment at which
// the loop is known to have seen everything the kernel held. Every back
// end's wait() makes a complete sweep (io/backend.h): whatever input was
// queued when it began is dispatched before it returns, even when the wait
// is cut short (EINTR after SIGSTOP/SIGCONT) or its event batch is full.
// So timers run against the time the wait BEGAN, and callbacks that judge
// absence use now() rather than the clock: after a stall (a paused
// process, CPU starvation, a 2 s iteration over 100k connections) the PINGs
// that waited in socket buffers are read before any peer is called idle.
// A timer still never runs early; it may run one iteration late.
//
// Thread rules:
//  * run() is called once, by the thread that becomes the loop thread.
//    Before run(), the creating thread may set the loop up (attach
//    channels, add timers).
//  * post() and quit() may be called from any thread (mutex-protected queue
//    plus the back end's wakeup: an eventfd, a ring message, a condvar).
//  * Everything else is loop-thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/timer_queue.h"
#include "io/backend.h"

namespace sluice {

// Makes the back end of loop `loop_index` of a server
// (ServerOptions::backend_factory, UdpServerOptions::backend_factory).
using BackendFactory = std::function<std::unique_ptr<io::Backend>(size_t loop_index)>;

class EventLoop {
 public:
  using Task = std::function<void()>;

  explicit EventLoop(std::unique_ptr<io::Backend> backend);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Creates a loop on the named back end (empty: the best available). On
  // failure returns nullptr and sets *error.
  static std::unique_ptr<EventLoop> create(std::string_view io_name,
                                           const io::BackendOptions& options,
                                           std::string* error);
  // The same through `factory` when it is set (null from it: nullptr and
  // *error says so), else by name.
  static std::unique_ptr<EventLoop> create(const BackendFactory& factory, size_t loop_index,
                                           std::string_view io_name,
                                           const io::BackendOptions& options,
                                           std::string* error);

  // Runs until quit(). Loop thread. `first`, if given, runs on this
  // thread once it is the loop thread, before the first iteration (set-up
  // that must see in_loop_thread() true, e.g. Handler::on_loop_start).
  void run(const Task& first = nullptr);
  // Any thread: run() returns after the current iteration.
  void quit();

  // Any thread: runs task on the loop thread, in FIFO order with other
  // posted tasks.
  void post(Task task);
  // Runs task now if called on the loop thread, else posts it. Inline
  // means on the caller's stack, under whatever locks it holds: to reach a
  // loop without that, use post() (or Server's run_on/post, which always
  // post).
  void run_in_loop(Task task);
  bool in_loop_thread() const;
  // Loop thread: whether run() is on the stack (false before it starts and
  // once it returned): a component torn down while the loop still runs
  // must let its deferred work finish first; after, it may go at once.
  bool looping() const { return looping_; }

  // Timers (loop thread). See core/timer_queue.h: 1 ms resolution, never
  // early. reset_timer*() re-arm a pending timer (or a one-shot one from
  // inside its own callback) without allocating: the cheap way to keep
  // pushing a deadline back (idle timeouts).
  TimerId run_after(Clock::duration delay, TimerCallback cb);
  TimerId run_at(Clock::time_point when, TimerCallback cb);
  TimerId run_every(Clock::duration interval, TimerCallback cb);
  bool reset_timer(TimerId id, Clock::duration delay);
  bool reset_timer_at(TimerId id, Clock::time_point when);
  bool cancel(TimerId id);
  size_t timer_count() const { return timers_.size(); }

  // Loop thread: runs task at the end of this iteration (step 4).
  void defer(Task task);
  // Loop thread: destroys the object at the end of this iteration (step 5).
  void destroy_later(std::unique_ptr<io::Channel> obj);

  // Loop thread: the loop's time (see "Loop time"): when the current
  // iteration's wait began. Input that reached the kernel before now() has
  // been dispatched, or is being dispatched in this iteration.
  Clock::time_point now() const { return now_; }
  // Loop thread: the current time, from the back end (io::Backend::now():
  // the steady clock, or a simulation's virtual clock). Use it, not
  // Clock::now(), for every time stamp that belongs to this loop, so the
  // core runs in virtual time on a simulated back end.
  Clock::time_point clock() const { return backend_->now(); }

  io::Backend& backend() { return *backend_; }
  std::string_view io_name() const { return backend_->name(); }
  uint64_t iterations() const { return iterations_; }

 private:
  void run_posted();
  void run_deferred();
  void run_batch();
  std::chrono::milliseconds next_timeout(Clock::time_point now);

  std::unique_ptr<io::Backend> backend_;
  TimerQueue timers_;
  std::atomic<bool> quit_{false};
  bool looping_ = false;
  std::atomic<std::thread::id> thread_id_;

  std::mutex mu_;
  std::vector<Task> posted_;  // guarded by mu_
  std::atomic<bool> has_posted_{false};

  std::vector<Task> deferred_;
  std::vector<Task> running_;  // the batch being run (posted or deferred)
  std::vector<std::unique_ptr<io::Channel>> graveyard_;
  uint64_t iterations_ = 0;
  Clock::time_point now_;
};

}  // namespace sluice
