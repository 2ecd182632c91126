// The blocking back end; see io/blocking.h for the model.
//
// Locking: each Conn has a mutex `m` guarding the state shared with its
// helper threads (the "shared" block below); the back end's `mu_` guards the
// ready queue, Conn::queued and woken_. Lock order: Conn::m before mu_ (the
// loop thread never takes a Conn::m while holding mu_). Fields marked
// "loop" are touched only by the loop thread. Nothing is joined or called
// back while a lock is held.
#include "io/blocking.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

namespace sluice::io {
namespace {

using Clock = std::chrono::steady_clock;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr size_t kStackSize = 1024 * 1024;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr size_t kStackSize = 1024 * 1024;
#else
constexpr size_t kStackSize = 256 * 1024;
#endif
#else
constexpr size_t kStackSize = 256 * 1024;
#endif

// Reader staging buffer (one recv at most this much).
constexpr size_t kReadChunk = 64 * 1024;
// The reader pauses while this much input is queued for the loop.
constexpr size_t kMaxQueuedInput = 1024 * 1024;
// Acceptor back-off after an accept error.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);
// Back-off after EAGAIN on a blocking socket (someone set a timeout or
// O_NONBLOCK behind our back): keeps such a socket from spinning a thread.
constexpr auto kAgainBackoff = std::chrono::milliseconds(1);
// Undelivered accept errors kept per listener (older ones are dropped).
constexpr size_t kMaxQueuedAcceptErrors = 64;
// Datagram receiver: it pauses while this many datagrams, or this many
// payload bytes, are received but not yet delivered by the loop.
constexpr size_t kMaxQueuedDatagrams = 1024;
constexpr size_t kMaxQueuedDatagramBytes = 1024 * 1024;
// Datagram receiver: after this many recvfrom errors in a row (ICMP
// reports, ENOMEM ...) it backs off kAgainBackoff before each further try.
constexpr int kDatagramErrorBurst = 16;
// Datagram sender: EAGAIN/ENOBUFS retries (kAgainBackoff apart) for one
// datagram before it is dropped.
constexpr int kMaxSendRetries = 1000;

bool routine_peer_error(int err) {
  return err == ECONNRESET || err == EPIPE || err == ETIMEDOUT ||
         err == EHOSTUNREACH || err == ENETUNREACH || err == ECONNABORTED;
}

// recvfrom errors that say the socket itself is unusable. Everything else
// on a datagram socket (ECONNREFUSED, EHOSTUNREACH ... from ICMP reports of
// earlier sends, ENOMEM/ENOBUFS) concerns one peer or one moment.
bool fatal_datagram_error(int err) {
  return err == EBADF || err == ENOTSOCK || err == EINVAL || err == EFAULT ||
         err == EOPNOTSUPP;
}

void clear(DatagramQueue& q) { q.pop(q.size()); }

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
  Buffer spare{0};  // loop-side swap partner for `in`

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
  Buffer in{0};
  bool eof = false;
  int rd_error = 0;
  bool reader_done = false;
  // writer
  Buffer out{0};
  bool writer_busy = false;  // owns a buffer that is not fully sent yet
  size_t sent = 0;           // sent, not yet reported by on_sent
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

void BlockingBackend::reader_loop(Conn& c) {
  std::unique_ptr<char[]> stage(new (std::nothrow) char[kReadChunk]);
  {
    std::unique_lock<std::mutex> lk(c.m);
    c.reader_cv.wait(lk, [&] { return c.started || c.stopping; });
  }
  if (!stage) {
    std::lock_guard<std::mutex> lk(c.m);
    c.rd_error = -ENOMEM;
    spdlog::error("blocking: fd {}: no memory for the read buffer", c.fd);
  }
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(c.m);
      c.reader_cv.wait(lk, [&] {
        return c.stopping || c.rd_error != 0 ||
               (c.want_read && c.in.readable() < kMaxQueuedInput);
      });
      if (c.stopping || c.rd_error != 0) break;
    }
    const ssize_t n = ::recv(c.fd, stage.get(), kReadChunk, 0);
    const int err = n < 0 ? errno : 0;
    if (n > 0) {
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) break;
        try {
          c.in.append(stage.get(), static_cast<size_t>(n));
        } catch (const std::bad_alloc&) {
          c.rd_error = -ENOMEM;
          spdlog::error("blocking: fd {}: no memory for input", c.fd);
        }
      }
      post(c);
      continue;
    }
    if (n == 0) {
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) break;
        c.eof = true;
      }
      post(c);
      break;
    }
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      std::this_thread::sleep_for(kAgainBackoff);
      continue;
    }
    {
      std::lock_guard<std::mutex> lk(c.m);
      if (c.stopping) break;
      c.rd_error = -err;
    }
    if (routine_peer_error(err)) {
      spdlog::debug("blocking: fd {}: recv: {}", c.fd, std::strerror(err));
    } else {
      spdlog::warn("blocking: fd {}: recv: {}", c.fd, std::strerror(err));
    }
    post(c);
    break;
  }
  {
    std::lock_guard<std::mutex> lk(c.m);
    c.reader_done = true;
  }
  post(c);
}

void BlockingBackend::writer_loop(Conn& c) {
  Buffer sending(0);
  std::unique_lock<std::mutex> lk(c.m);
  for (;;) {
    c.writer_cv.wait(lk, [&] { return c.stopping || !c.out.empty(); });
    if (c.stopping) break;
    sending.swap(c.out);  // c.out keeps the old (empty) buffer
    lk.unlock();
    int fail = 0;
    while (!sending.empty()) {
      const ssize_t n = ::send(c.fd, sending.peek(), sending.readable(),
                               MSG_NOSIGNAL);
      const int err = n < 0 ? errno : 0;
      if (n > 0) {
        sending.retrieve(static_cast<size_t>(n));
        bool stop;
        {
          std::lock_guard<std::mutex> g(c.m);
          stop = c.stopping;
          if (!stop) {
            c.sent += static_cast<size_t>(n);
            if (sending.empty()) c.writer_busy = false;
          }
        }
        if (stop) break;
        post(c);
        continue;
      }
      if (n < 0 && err == EINTR) continue;
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
        std::this_thread::sleep_for(kAgainBackoff);
        continue;
      }
      fail = n < 0 ? err : EPIPE;
      break;
    }
    lk.lock();
    if (c.stopping) break;
    if (fail != 0) {
      c.wr_error = -fail;
      lk.unlock();
      if (routine_peer_error(fail)) {
        spdlog::debug("blocking: fd {}: send: {}", c.fd, std::strerror(fail));
      } else {
        spdlog::warn("blocking: fd {}: send: {}", c.fd, std::strerror(fail));
      }
      lk.lock();
      break;
    }
    sending.shrink();  // do not pin a burst's worth of memory while idle
  }
  c.writer_done = true;
  lk.unlock();
  post(c);
}

void BlockingBackend::acceptor_loop(Conn& c) {
  {
    std::unique_lock<std::mutex> lk(c.m);
    c.reader_cv.wait(lk, [&] { return c.started || c.stopping; });
  }
  // Refusals over max_conns: the first after a quiet second is logged at
  // once, later ones are counted and reported with the next line (or when
  // the acceptor accepts normally again / exits).
  Clock::time_point last_refuse_log{};
  size_t refused = 0;
  auto report_refused = [&](Clock::time_point now) {
    spdlog::warn(
        "blocking: listener fd {}: max_conns ({}) reached, refused {} "
        "connection(s)",
        c.fd, max_conns_, refused);
    last_refuse_log = now;
    refused = 0;
  };
  Clock::time_point last_err_log{};
  int last_err = 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(c.m);
      if (c.stopping) break;
    }
    const int fd = ::accept4(c.fd, nullptr, nullptr, SOCK_CLOEXEC);
    const int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
      last_err = 0;
      bool refuse = false, stop = false;
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) {
          stop = true;
        } else if (served_.fetch_add(1, std::memory_order_acq_rel) >=
                   max_conns_) {
          served_.fetch_sub(1, std::memory_order_acq_rel);
          refuse = true;
        } else {
          c.accepted.push_back(fd);
        }
      }
      if (stop) {
        ::close(fd);
        break;
      }
      if (refuse) {
        ::close(fd);
        ++refused;
        const auto now = Clock::now();
        if (now - last_refuse_log >= std::chrono::seconds(1)) {
          report_refused(now);
        }
        continue;
      }
      if (refused > 0) report_refused(Clock::now());
      post(c);
      continue;
    }
    if (err == EINTR || err == ECONNABORTED) continue;
    {
      std::unique_lock<std::mutex> lk(c.m);
      if (c.stopping) break;
      if (c.accept_errors.size() >= kMaxQueuedAcceptErrors) {
        c.accept_errors.pop_front();
      }
      c.accept_errors.push_back(-err);
    }
    const auto now = Clock::now();
    if (err != last_err || now - last_err_log >= std::chrono::seconds(1)) {
      spdlog::warn("blocking: listener fd {}: accept: {}", c.fd,
                   std::strerror(err));
      last_err_log = now;
      last_err = err;
    }
    post(c);
    std::unique_lock<std::mutex> lk(c.m);
    c.reader_cv.wait_for(lk, kAcceptBackoff, [&] { return c.stopping; });
  }
  if (refused > 0) report_refused(Clock::now());
  {
    std::lock_guard<std::mutex> lk(c.m);
    c.reader_done = true;
  }
  post(c);
}

// Datagram receiver: one blocking recvfrom per datagram into a 64 KiB
// staging buffer, each datagram (source address + payload copy) queued in
// c.rx for the loop. Pauses while want_read is false or the undelivered
// datagrams reach kMaxQueuedDatagrams / kMaxQueuedDatagramBytes; meanwhile
// the kernel queues (and, once SO_RCVBUF is full, drops) as UDP does.
void BlockingBackend::datagram_reader_loop(Conn& c) {
  std::unique_ptr<char[]> stage(new (std::nothrow) char[kMaxDatagram]);
  {
    std::unique_lock<std::mutex> lk(c.m);
    c.reader_cv.wait(lk, [&] { return c.started || c.stopping; });
  }
  if (!stage) {
    std::lock_guard<std::mutex> lk(c.m);
    c.rd_error = -ENOMEM;
    spdlog::error("blocking: fd {}: no memory for the datagram buffer", c.fd);
  }
  int errors_in_row = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(c.m);
      c.reader_cv.wait(lk, [&] {
        return c.stopping || c.rd_error != 0 ||
               (c.want_read &&
                c.rx.size() + c.held_count < kMaxQueuedDatagrams &&
                c.rx_bytes + c.held_bytes < kMaxQueuedDatagramBytes);
      });
      if (c.stopping || c.rd_error != 0) break;
    }
    sockaddr_storage from;
    socklen_t from_len = sizeof from;
    const ssize_t n = ::recvfrom(c.fd, stage.get(), kMaxDatagram, 0,
                                 reinterpret_cast<sockaddr*>(&from),
                                 &from_len);
    const int err = n < 0 ? errno : 0;
    if (n == 0 && from_len == 0) {
      // Not a datagram (a UDP datagram always has a source address): the
      // read side was shut down. detach() does that to wake us; anyone
      // else doing it ends reception (recvfrom would return 0 forever).
      bool stop;
      {
        std::lock_guard<std::mutex> lk(c.m);
        stop = c.stopping;
      }
      if (!stop) {
        spdlog::warn(
            "blocking: fd {}: read side shut down, no more datagrams", c.fd);
      }
      break;
    }
    if (n >= 0) {
      errors_in_row = 0;
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) break;
        try {
          c.rx.push(reinterpret_cast<const sockaddr*>(&from), from_len,
                    {stage.get(), static_cast<size_t>(n)});
          c.rx_bytes += static_cast<size_t>(n);
        } catch (const std::bad_alloc&) {
          c.rd_error = -ENOMEM;
          spdlog::error("blocking: fd {}: no memory for datagrams", c.fd);
        }
      }
      post(c);
      continue;
    }
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      std::this_thread::sleep_for(kAgainBackoff);
      continue;
    }
    if (fatal_datagram_error(err)) {
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) break;
        c.rd_error = -err;
      }
      spdlog::warn("blocking: fd {}: recvfrom: {}", c.fd, std::strerror(err));
      post(c);
      break;
    }
    // ICMP-induced (ECONNREFUSED, EHOSTUNREACH ...) or transient: a report
    // about one earlier send, not about this socket. Keep receiving.
    spdlog::debug("blocking: udp fd {}: recvfrom: {}", c.fd,
                  std::strerror(err));
    if (++errors_in_row > kDatagramErrorBurst) {
      std::this_thread::sleep_for(kAgainBackoff);
    }
  }
  {
    std::lock_guard<std::mutex> lk(c.m);
    c.reader_done = true;
  }
  post(c);
}

// Datagram sender: takes the whole queue update() handed over (c.tx) and
// sendto(MSG_NOSIGNAL)s it, one datagram per call, in order. A datagram the
// kernel refuses is dropped and counted; nothing here is fatal.
void BlockingBackend::datagram_writer_loop(Conn& c) {
  DatagramQueue sending;
  uint64_t dropped = 0;
  std::unique_lock<std::mutex> lk(c.m);
  for (;;) {
    c.writer_cv.wait(lk, [&] { return c.stopping || !c.tx.empty(); });
    if (c.stopping) break;
    std::swap(sending, c.tx);  // c.tx gets the old (empty) queue
    lk.unlock();
    size_t batch_bytes = 0;
    bool stop = false;
    while (!sending.empty() && !stop) {
      {
        std::lock_guard<std::mutex> g(c.m);
        stop = c.stopping;  // detach: send nothing more
      }
      if (stop) break;
      const DatagramQueue::Item& it = sending.item(0);
      const std::string_view p = sending.payload(it);
      batch_bytes += p.size();
      int retries = 0;
      for (;;) {
        const ssize_t n =
            ::sendto(c.fd, p.data(), p.size(), MSG_NOSIGNAL,
                     reinterpret_cast<const sockaddr*>(&it.addr), it.addr_len);
        const int err = n < 0 ? errno : 0;
        if (n >= 0) break;
        if (err == EINTR) continue;
        {
          std::lock_guard<std::mutex> g(c.m);
          stop = c.stopping;  // e.g. EPIPE after detach's shutdown
        }
        if (stop) break;
        if ((err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) &&
            retries++ < kMaxSendRetries) {
          std::this_thread::sleep_for(kAgainBackoff);
          continue;
        }
        ++dropped;
        spdlog::debug(
            "blocking: udp fd {}: dropping a {}-byte datagram: {} ({} dropped "
            "so far)",
            c.fd, p.size(), std::strerror(err), dropped);
        break;
      }
      sending.pop(1);
    }
    lk.lock();
    if (stop || c.stopping) break;
    c.writer_busy = false;
    lk.unlock();
    post(c);  // the loop hands over what queued up meanwhile
    // Do not pin a burst's worth of memory while idle.
    if (batch_bytes > kMaxQueuedDatagramBytes) sending = DatagramQueue{};
    lk.lock();
  }
  c.writer_done = true;
  lk.unlock();
  if (dropped > 0) {
    spdlog::debug("blocking: udp fd {}: {} datagram(s) dropped in all", c.fd,
                  dropped);
  }
  post(c);
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
  int rc;
  if (ch.kind() == Channel::Kind::kListener) {
    c->writer_done = true;  // no writer
    rc = spawn(c, &BlockingBackend::acceptor_loop, "sluice-accept",
               &c->reader);
    c->has_reader = rc == 0;
  } else if (ch.kind() == Channel::Kind::kDatagram) {
    rc = spawn(c, &BlockingBackend::datagram_reader_loop, "sluice-udp-recv",
               &c->reader);
    c->has_reader = rc == 0;
    if (rc == 0) {
      rc = spawn(c, &BlockingBackend::datagram_writer_loop, "sluice-udp-send",
                 &c->writer);
      c->has_writer = rc == 0;
    }
  } else {
    rc = spawn(c, &BlockingBackend::reader_loop, "sluice-recv", &c->reader);
    c->has_reader = rc == 0;
    if (rc == 0) {
      rc = spawn(c, &BlockingBackend::writer_loop, "sluice-send",
                 &c->writer);
      c->has_writer = rc == 0;
    }
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

// Loop thread. Gives ch.output() to the writer if it is idle.
void BlockingBackend::hand_over_output(Conn& c, Channel& ch) {
  if (ch.output().empty()) return;
  bool handed = false;
  {
    std::lock_guard<std::mutex> lk(c.m);
    if (!c.writer_busy && !c.writer_done && !c.stopping && c.wr_error == 0) {
      // c.out is empty whenever the writer is idle.
      c.out.swap(ch.output());
      c.writer_busy = true;
      handed = true;
    }
  }
  if (handed) c.writer_cv.notify_one();
}

// Loop thread. Gives ch.datagrams() to the sender if it is idle (the queue
// swap leaves ch.datagrams() empty, with the sender's drained storage).
void BlockingBackend::hand_over_datagrams(Conn& c, Channel& ch) {
  if (ch.datagrams().empty()) return;
  bool handed = false;
  {
    std::lock_guard<std::mutex> lk(c.m);
    if (!c.writer_busy && !c.writer_done && !c.stopping) {
      // c.tx is empty whenever the sender is idle.
      std::swap(c.tx, ch.datagrams());
      c.writer_busy = true;
      handed = true;
    }
  }
  if (handed) c.writer_cv.notify_one();
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
        return 0;
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

int BlockingBackend::dispatch_listener(Conn& c) {
  std::deque<int> fds;
  std::deque<int> errs;
  {
    std::lock_guard<std::mutex> lk(c.m);
    fds.swap(c.accepted);
    errs.swap(c.accept_errors);
  }
  int events = 0;
  for (int fd : fds) {
    if (c.detaching || c.ch == nullptr) {
      ::close(fd);
    } else {
      c.ch->on_accept(fd);  // the callee attaches (served_ +1) or closes
      ++events;
    }
    served_.fetch_sub(1, std::memory_order_acq_rel);
  }
  for (int err : errs) {
    if (c.detaching || c.ch == nullptr) break;
    c.ch->on_accept_error(err);
    ++events;
  }
  return events;
}

int BlockingBackend::dispatch_stream(Conn& c) {
  if (c.detaching || c.ch == nullptr) return 0;
  Channel& ch = *c.ch;
  bool took = false;
  size_t sent;
  bool eof;
  int err;
  {
    std::lock_guard<std::mutex> lk(c.m);
    if (ch.want_read() && !c.in.empty() && !c.error_delivered) {
      c.spare.swap(c.in);  // spare is empty: the reader gets an empty buffer
      took = true;
    }
    sent = std::exchange(c.sent, 0);
    eof = c.eof && c.in.empty();
    err = c.rd_error != 0 ? c.rd_error : c.wr_error;
  }
  if (took) c.reader_cv.notify_one();  // the queue has room again
  int events = 0;
  if (took) {
    const size_t n = c.spare.readable();
    if (ch.input().empty()) {
      ch.input().swap(c.spare);
    } else {
      ch.input().append(c.spare.peek(), n);
      c.spare.retrieve_all();
    }
    if (c.spare.capacity() > 2 * kMaxQueuedInput) c.spare.shrink();
    ch.on_input(n);
    ++events;
    if (c.detaching) return events;
  }
  if (sent > 0) {
    ch.on_sent(sent);
    ++events;
    if (c.detaching) return events;
  }
  hand_over_output(c, ch);  // output queued while the writer was busy
  if (eof && !c.eof_delivered && !c.error_delivered) {
    c.eof_delivered = true;
    ch.on_eof();
    ++events;
    if (c.detaching) return events;
  }
  if (err != 0 && !c.error_delivered) {
    c.error_delivered = true;
    ch.on_error(err);
    ++events;
  }
  return events;
}

// Delivers received datagrams in order: first those the loop already holds
// (left over when a handler turned want_read off mid-batch), then the
// receiver's queue, taken whole. Handlers may call update() or detach().
int BlockingBackend::dispatch_datagram(Conn& c) {
  if (c.detaching || c.ch == nullptr) return 0;
  Channel& ch = *c.ch;
  int err = 0;
  int events = 0;
  size_t n = 0, bytes = 0;
  // Two rounds: leftovers, then the queue. Datagrams the receiver queues
  // while we deliver re-post the channel (post() after each one).
  for (int round = 0; round < 2; ++round) {
    {
      std::lock_guard<std::mutex> lk(c.m);
      if (c.held.empty() && ch.want_read() && !c.rx.empty() &&
          !c.error_delivered) {
        std::swap(c.held, c.rx);  // c.rx gets the drained (empty) queue
        c.held_count += c.held.size();
        c.held_bytes += std::exchange(c.rx_bytes, 0);
      }
      err = c.rd_error;
    }
    if (c.held.empty()) break;
    while (!c.held.empty() && ch.want_read() && !c.error_delivered) {
      const DatagramQueue::Item& it = c.held.item(0);
      ++n;
      bytes += it.size;
      ch.on_datagram({reinterpret_cast<const sockaddr*>(&it.addr),
                      it.addr_len, c.held.payload(it)});
      ++events;
      if (c.detaching) {
        clear(c.held);  // stop() already discarded the rest
        return events;
      }
      c.held.pop(1);
    }
    if (!c.held.empty()) break;  // paused mid-batch: keep the rest
  }
  if (n > 0) {
    {
      std::lock_guard<std::mutex> lk(c.m);
      c.held_count -= n;
      c.held_bytes -= bytes;
    }
    c.reader_cv.notify_one();  // the queue has room again
  }
  hand_over_datagrams(c, ch);  // datagrams queued while the sender was busy
  if (err != 0 && !c.error_delivered) {
    // Fatal for the socket (EBADF, ENOMEM ...): undelivered datagrams are
    // dropped, as for stream input (the core detaches on error).
    c.error_delivered = true;
    clear(c.held);
    ch.on_error(err);
    ++events;
  }
  return events;
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

}  // namespace

std::unique_ptr<Backend> make_blocking_backend(const BackendOptions& options) {
  return std::make_unique<BlockingBackend>(options);
}

}  // namespace sluice::io
