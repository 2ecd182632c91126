#include "core/event_loop.h"

#include <cstring>

#include <spdlog/spdlog.h>

#include "io/registry.h"

namespace sluice {

EventLoop::EventLoop(std::unique_ptr<io::Backend> backend)
    : backend_(std::move(backend)),
      timers_(backend_->now()),
      thread_id_(std::this_thread::get_id()),
      now_(backend_->now()) {}

EventLoop::~EventLoop() {
  // Tasks may own resources; run nothing, but destroy them here, on the
  // owning thread, before the back end goes.
  graveyard_.clear();
}

std::unique_ptr<EventLoop> EventLoop::create(std::string_view io_name,
                                             const io::BackendOptions& options,
                                             std::string* error) {
  std::string name = io_name.empty() ? io::default_backend() : std::string(io_name);
  std::unique_ptr<io::Backend> backend = io::create(name, options, error);
  if (!backend) return nullptr;
  return std::make_unique<EventLoop>(std::move(backend));
}

std::unique_ptr<EventLoop> EventLoop::create(const BackendFactory& factory, size_t loop_index,
                                             std::string_view io_name,
                                             const io::BackendOptions& options,
                                             std::string* error) {
  if (!factory) return create(io_name, options, error);
  std::unique_ptr<io::Backend> backend = factory(loop_index);
  if (!backend) {
    if (error) *error = "the back-end factory made no back end for loop " + std::to_string(loop_index);
    return nullptr;
  }
  return std::make_unique<EventLoop>(std::move(backend));
}

bool EventLoop::in_loop_thread() const {
  return thread_id_.load(std::memory_order_relaxed) == std::this_thread::get_id();
}

void EventLoop::run(const Task& first) {
  thread_id_.store(std::this_thread::get_id());
  // Buffers this thread's connections release are reused by the next one
  // (base/buffer.h): hot in cache, and already grown.
  BlockCache::Scope block_cache;
  looping_ = true;
  if (first) first();
  while (!quit_.load(std::memory_order_acquire)) {
    // Read the clock BEFORE the wait: its sweep covers everything queued
    // until then, so timers may judge absence up to this moment, no later
    // (see "Loop time" in the header).
    now_ = backend_->now();
    int rc = backend_->wait(next_timeout(now_));
    if (rc < 0) {
      spdlog::error("loop: {} back end wait failed: {}", backend_->name(), std::strerror(-rc));
      break;
    }
    timers_.run_expired(now_);
    run_posted();
    run_deferred();
    graveyard_.clear();
    ++iterations_;
  }
  // A quit() from inside a callback still gets its queued work done.
  run_posted();
  run_deferred();
  graveyard_.clear();
  looping_ = false;
}

void EventLoop::quit() {
  quit_.store(true, std::memory_order_release);
  if (!in_loop_thread()) backend_->wakeup();
}

void EventLoop::post(Task task) {
  // The wakeup happens under the lock too: the loop can only take the task
  // (run_posted locks mu_) once this call is done with the back end, so a
  // loop destroyed right after running the task is never touched by a
  // poster still inside wakeup() (e.g. the Connector's thread).
  std::lock_guard<std::mutex> lock(mu_);
  posted_.push_back(std::move(task));
  has_posted_.store(true, std::memory_order_release);
  // On the loop thread the next wait() uses a zero timeout instead.
  if (!in_loop_thread()) backend_->wakeup();
}

void EventLoop::run_in_loop(Task task) {
  if (in_loop_thread()) {
    task();
  } else {
    post(std::move(task));
  }
}

void EventLoop::run_posted() {
  if (!has_posted_.load(std::memory_order_acquire)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_.swap(posted_);
    has_posted_.store(false, std::memory_order_relaxed);
  }
  run_batch();
}

void EventLoop::run_batch() {
  // running_ keeps its capacity between iterations, and so does the queue
  // it was swapped with: no allocation per iteration once warmed up.
  for (Task& t : running_) t();
  running_.clear();
}

void EventLoop::run_deferred() {
  // Deferred tasks may defer more (a flush that completes a close); each
  // round takes the current batch.
  while (!deferred_.empty()) {
    running_.swap(deferred_);
    run_batch();
  }
}

std::chrono::milliseconds EventLoop::next_timeout(Clock::time_point now) {
  using std::chrono::milliseconds;
  if (has_posted_.load(std::memory_order_acquire) || !deferred_.empty()) {
    return milliseconds(0);
  }
  Clock::time_point next = timers_.next_deadline();
  if (next == Clock::time_point::max()) return milliseconds(-1);
  Clock::duration left = next - now;
  if (left <= Clock::duration::zero()) return milliseconds(0);
  // Round up: waking early would spin until the deadline.
  return std::chrono::ceil<milliseconds>(left);
}

TimerId EventLoop::run_after(Clock::duration delay, TimerCallback cb) {
  return timers_.add(backend_->now() + delay, Clock::duration::zero(), std::move(cb));
}

TimerId EventLoop::run_at(Clock::time_point when, TimerCallback cb) {
  return timers_.add(when, Clock::duration::zero(), std::move(cb));
}

bool EventLoop::reset_timer(TimerId id, Clock::duration delay) {
  return timers_.reset(id, backend_->now() + delay);
}

bool EventLoop::reset_timer_at(TimerId id, Clock::time_point when) {
  return timers_.reset(id, when);
}

TimerId EventLoop::run_every(Clock::duration interval, TimerCallback cb) {
  return timers_.add(backend_->now() + interval, interval, std::move(cb));
}

bool EventLoop::cancel(TimerId id) { return timers_.cancel(id); }

void EventLoop::defer(Task task) { deferred_.push_back(std::move(task)); }

void EventLoop::destroy_later(std::unique_ptr<io::Channel> obj) {
  graveyard_.push_back(std::move(obj));
}

}  // namespace sluice
