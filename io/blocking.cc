// The blocking back end: the Backend methods, the helper threads' common
// parts (spawn, start gate, exit report, post), dispatch to each channel
// kind's delivery (io/blocking_listener.cc, io/blocking_stream.cc,
// io/blocking_datagram.cc), detach and on_detached, and destruction. See
// io/blocking.h for the model and io/blocking_impl.h for the locking.
#include "io/blocking.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <utility>

#include <spdlog/spdlog.h>

#include "io/blocking_impl.h"

namespace sluice::io {
namespace blocking_internal {
namespace {

// Helper threads' stacks, set explicitly (glibc's default is the 8 MiB
// RLIMIT_STACK; only touched pages cost memory, but the reservation limits
// how many threads fit). A stream reader keeps a 16 KiB read area on its
// stack; nothing else these threads run goes deep. Sanitizers need more.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr size_t kStackSize = 1024 * 1024;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr size_t kStackSize = 1024 * 1024;
#else
constexpr size_t kStackSize = 64 * 1024;
#endif
#else
constexpr size_t kStackSize = 64 * 1024;
#endif

}  // namespace

Handle::~Handle() {
  if (conn && !conn->finished) conn->owner->abandon(conn);
}

// ---------------------------------------------------------------- threads

void* BlockingBackend::thread_main(void* p) {
  std::unique_ptr<ThreadArg> arg(static_cast<ThreadArg*>(p));
  (arg->self->*arg->fn)(*arg->conn);
  return nullptr;
}

int BlockingBackend::spawn(const std::shared_ptr<Conn>& c, Fn fn,
                           const char* name, pthread_t* out) {
  pthread_attr_t attr;
  int rc = pthread_attr_init(&attr);
  if (rc != 0) return -rc;
  pthread_attr_setstacksize(&attr, kStackSize);
  // Helper threads never take signals: they belong to the application's
  // threads. The mask is inherited, so block everything around create.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  auto* arg = new ThreadArg{this, c, fn};
  rc = pthread_create(out, &attr, &BlockingBackend::thread_main, arg);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    delete arg;
    spdlog::error("blocking: cannot start {} thread for fd {}: {}", name,
                  c->fd, std::strerror(rc));
    return -rc;
  }
  pthread_setname_np(*out, name);
  return 0;
}

void BlockingBackend::await_start(Conn& c) {
  std::unique_lock<std::mutex> lk(c.m);
  c.reader_cv.wait(lk, [&] { return c.started || c.stopping; });
}

std::unique_ptr<char[]> BlockingBackend::start_reader(Conn& c, size_t size,
                                                      const char* what) {
  std::unique_ptr<char[]> stage(new (std::nothrow) char[size]);
  await_start(c);
  if (!stage) {
    std::lock_guard<std::mutex> lk(c.m);
    c.rd_error = -ENOMEM;
    spdlog::error("blocking: fd {}: no memory for the {}", c.fd, what);
  }
  return stage;
}

void BlockingBackend::reader_exit(Conn& c) {
  {
    std::lock_guard<std::mutex> lk(c.m);
    c.reader_done = true;
  }
  post(c);
}

// Queues c for dispatch on the loop thread. Any thread; called without c.m
// held (lock order), the Conn is kept alive by the caller.
void BlockingBackend::post(Conn& c) {
  std::lock_guard<std::mutex> lk(mu_);
  if (c.queued) return;
  c.queued = true;
  const bool was_empty = ready_.empty();
  ready_.push_back(c.shared_from_this());
  if (was_empty) cv_.notify_one();
}

// ------------------------------------------------------------- loop side

int BlockingBackend::attach(Channel& ch) {
  if (ch.fd() < 0) return -EBADF;
  if (auto* h = dynamic_cast<Handle*>(ch.io.get());
      h != nullptr && h->conn != nullptr && !h->conn->finished) {
    return -EBUSY;  // already attached (or detach still in progress)
  }
  const int fd = ch.fd();
  if (ch.kind() == Channel::Kind::kListener) {
    int on = 0;
    socklen_t len = sizeof on;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0) {
      return -errno;
    }
    if (!on) return -EINVAL;  // accept would fail forever
  } else if (ch.kind() == Channel::Kind::kDatagram) {
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
      return -errno;
    }
    if (type != SOCK_DGRAM) return -EINVAL;
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return -errno;
  if ((flags & O_NONBLOCK) && ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return -errno;
  }

  auto c = std::make_shared<Conn>(this, &ch);
  c->want_read = ch.want_read();
  // The channel's threads: a reader (acceptor, receiver) and, but for
  // listeners, a writer (sender).
  Fn reader = &BlockingBackend::reader_loop;
  const char* reader_name = "sluice-recv";
  Fn writer = &BlockingBackend::writer_loop;
  const char* writer_name = "sluice-send";
  if (ch.kind() == Channel::Kind::kListener) {
    c->writer_done = true;  // no writer
    reader = &BlockingBackend::acceptor_loop;
    reader_name = "sluice-accept";
    writer = nullptr;
  } else if (ch.kind() == Channel::Kind::kDatagram) {
    reader = &BlockingBackend::datagram_reader_loop;
    reader_name = "sluice-udp-recv";
    writer = &BlockingBackend::datagram_writer_loop;
    writer_name = "sluice-udp-send";
  }
  int rc = spawn(c, reader, reader_name, &c->reader);
  c->has_reader = rc == 0;
  if (rc == 0 && writer != nullptr) {
    rc = spawn(c, writer, writer_name, &c->writer);
    c->has_writer = rc == 0;
  }
  if (rc != 0) {
    // Threads that did start are still parked at the start gate, before any
    // syscall: stop and join them (immediate) and leave the socket as found.
    {
      std::lock_guard<std::mutex> lk(c->m);
      c->stopping = true;
    }
    c->reader_cv.notify_all();
    c->writer_cv.notify_all();
    if (c->has_reader) pthread_join(c->reader, nullptr);
    if (c->has_writer) pthread_join(c->writer, nullptr);
    {
      // A done-post may have queued it; make the entry inert.
      std::lock_guard<std::mutex> lk(mu_);
      c->finished = true;
    }
    c->ch = nullptr;
    if (flags & O_NONBLOCK) ::fcntl(fd, F_SETFL, flags);
    return rc;
  }
  if (ch.kind() == Channel::Kind::kStream) {
    served_.fetch_add(1, std::memory_order_acq_rel);
  }
  conns_.insert(c);
  ch.io = std::make_unique<Handle>(c);
  {
    std::lock_guard<std::mutex> lk(c->m);
    c->started = true;
  }
  c->reader_cv.notify_all();
  c->writer_cv.notify_all();
  return 0;
}

void BlockingBackend::update(Channel& ch) {
  Conn* c = conn_of(ch);
  if (c == nullptr || c->detaching || c->finished) return;
  if (c->kind == Channel::Kind::kListener) return;
  const bool want = ch.want_read();
  bool resumed = false;
  {
    std::lock_guard<std::mutex> lk(c->m);
    if (want != c->want_read) {
      c->want_read = want;
      resumed = want;
    }
  }
  if (resumed) {
    c->reader_cv.notify_one();
    post(*c);  // deliver input held back while want_read was false
  }
  if (c->kind == Channel::Kind::kDatagram) {
    hand_over_datagrams(*c, ch);
  } else {
    hand_over_output(*c, ch);
  }
}

// Loop thread. Stops all IO on c: discards undelivered completions, wakes
// the threads (condvars, and shutdown() for blocking syscalls).
void BlockingBackend::stop(Conn& c) {
  c.detaching = true;
  std::deque<int> orphans;
  bool live;
  {
    std::lock_guard<std::mutex> lk(c.m);
    c.stopping = true;
    orphans.swap(c.accepted);
    c.accept_errors.clear();
    c.in.retrieve_all();
    c.sent = 0;
    clear(c.rx);
    c.rx_bytes = 0;
    clear(c.tx);
    live = !(c.reader_done && c.writer_done);
  }
  c.reader_cv.notify_all();
  c.writer_cv.notify_all();
  for (int fd : orphans) {
    ::close(fd);
    served_.fetch_sub(1, std::memory_order_acq_rel);
  }
  // The fd stays open until on_detached (the core closes it after that), so
  // this cannot hit a reused descriptor. shutdown of a listening socket
  // makes a blocked accept return EINVAL on Linux; on a UDP socket it fails
  // with ENOTCONN unless connected, but wakes a blocked recvfrom (which then
  // returns 0 with no source address) either way, and a later sendto fails
  // with EPIPE.
  if (live && ::shutdown(c.fd, SHUT_RDWR) != 0) {
    const int err = errno;
    if (err != ENOTCONN) {
      spdlog::debug("blocking: fd {}: shutdown: {}", c.fd, std::strerror(err));
    }
  }
  post(c);  // finish (on_detached) from wait()
}

void BlockingBackend::detach(Channel& ch) {
  Conn* c = conn_of(ch);
  if (c == nullptr || c->detaching || c->finished) return;
  stop(*c);
}

void BlockingBackend::abandon(const std::shared_ptr<Conn>& c) {
  spdlog::error("blocking: fd {}: channel destroyed while attached", c->fd);
  c->ch = nullptr;
  if (!c->detaching) stop(*c);
}

int BlockingBackend::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + (timeout.count() > 0 ? timeout
                                            : std::chrono::milliseconds(0));
  for (;;) {
    bool woke;
    {
      std::unique_lock<std::mutex> lk(mu_);
      auto ready = [&] { return !ready_.empty() || woken_; };
      if (timeout.count() < 0) {
        cv_.wait(lk, ready);
      } else if (!cv_.wait_until(lk, deadline, ready)) {
        // Timed out. Before returning empty-handed, a receiver that is
        // behind gets a moment to hand its input over (receiver_behind).
        lk.unlock();  // lock order: a Conn's m is never taken under mu_
        if (!receiver_behind()) return 0;
        lk.lock();
        if (!cv_.wait_until(lk, Clock::now() + kCatchUp, ready)) return 0;
      }
      woke = std::exchange(woken_, false);
      batch_.swap(ready_);
      for (auto& c : batch_) c->queued = false;
    }
    int events = 0;
    for (auto& c : batch_) events += dispatch(c);
    batch_.clear();
    // Only thread bookkeeping happened: keep waiting (up to the deadline) so
    // callers do not see spurious empty returns.
    if (events > 0 || woke) return events;
  }
}

bool BlockingBackend::receiver_behind() {
  for (const std::shared_ptr<Conn>& c : conns_) {
    if (c->kind != Channel::Kind::kDatagram) continue;
    int queued = 0;
    std::lock_guard<std::mutex> lk(c->m);
    if (c->want_read && !c->reader_done && c->rx.empty() &&
        ::ioctl(c->fd, FIONREAD, &queued) == 0 && queued > 0) {
      return true;
    }
  }
  return false;
}

void BlockingBackend::wakeup() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

int BlockingBackend::dispatch(const std::shared_ptr<Conn>& c) {
  if (c->finished) return 0;
  int events;
  switch (c->kind) {
    case Channel::Kind::kListener:
      events = dispatch_listener(*c);
      break;
    case Channel::Kind::kDatagram:
      events = dispatch_datagram(*c);
      break;
    default:
      events = dispatch_stream(*c);
      break;
  }
  return events + maybe_finish(c);
}

// Joins threads that have reported their exit; once both are gone and the
// channel is detaching, releases it and delivers on_detached.
int BlockingBackend::maybe_finish(const std::shared_ptr<Conn>& c) {
  bool rdone, wdone;
  {
    std::lock_guard<std::mutex> lk(c->m);
    rdone = c->reader_done;
    wdone = c->writer_done;
  }
  // A done thread's last act was its post: the join returns at once.
  if (rdone && c->has_reader && !c->reader_joined) {
    pthread_join(c->reader, nullptr);
    c->reader_joined = true;
  }
  if (wdone && c->has_writer && !c->writer_joined) {
    pthread_join(c->writer, nullptr);
    c->writer_joined = true;
  }
  if (!(c->detaching && rdone && wdone)) return 0;
  c->finished = true;
  clear(c->held);
  if (c->kind == Channel::Kind::kStream) {
    served_.fetch_sub(1, std::memory_order_acq_rel);
  }
  Channel* ch = std::exchange(c->ch, nullptr);
  auto keep = c;  // conns_ may hold the last other reference
  conns_.erase(c);
  if (ch == nullptr) return 0;  // abandoned: no callback
  ch->on_detached();  // may free the channel (and its Handle)
  return 1;
}

BlockingBackend::~BlockingBackend() {
  for (const auto& c : conns_) {
    std::deque<int> orphans;
    bool live;
    {
      std::lock_guard<std::mutex> lk(c->m);
      c->stopping = true;
      orphans.swap(c->accepted);
      live = !(c->reader_done && c->writer_done);
    }
    c->reader_cv.notify_all();
    c->writer_cv.notify_all();
    for (int fd : orphans) ::close(fd);
    if (live && c->ch != nullptr) ::shutdown(c->fd, SHUT_RDWR);
  }
  for (const auto& c : conns_) {
    if (c->has_reader && !c->reader_joined) pthread_join(c->reader, nullptr);
    if (c->has_writer && !c->writer_joined) pthread_join(c->writer, nullptr);
    c->reader_joined = c->writer_joined = true;
    c->finished = true;  // a Handle that outlives us does nothing
    c->ch = nullptr;
  }
  // Pending ready entries refer to the conns; drop them.
  std::lock_guard<std::mutex> lk(mu_);
  ready_.clear();
}

}  // namespace blocking_internal

std::unique_ptr<Backend> make_blocking_backend(const BackendOptions& options) {
  return std::make_unique<blocking_internal::BlockingBackend>(options);
}

}  // namespace sluice::io
