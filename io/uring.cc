// The io_uring back end: the Backend methods, op tracking and submission,
// sync() (which hands each channel to its kind's part: io/uring_listener.cc,
// io/uring_stream.cc, io/uring_datagram.cc), CQE reaping and dispatch,
// deferred work (held input, on_detached) and teardown. Ring setup is in
// io/uring_setup.cc. See io/uring.h for the model and io/uring_impl.h for
// the lifetimes of ops and channel records.
#include "io/uring.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "io/uring_impl.h"

namespace sluice::io {
namespace uring_internal {
namespace {

// A submit-and-wait result that is an error, not a timeout, an interrupt
// or a busy CQ.
bool wait_failed(int ret) {
  return ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN &&
         ret != -EBUSY;
}

}  // namespace

// ------------------------------------------------------------- teardown --

UringBackendImpl::~UringBackendImpl() {
  if (ring_ok_) {
    closing_ = true;
    drain_for_exit();
    io_uring_queue_exit(&ring_);
  }
  stream_ring_.release();
  dgram_ring_.release();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void UringBackendImpl::drain_for_exit() {
  if (!enabled_) return;  // nothing was ever submitted
  bool single = (info_.setup_flags & IORING_SETUP_SINGLE_ISSUER) != 0;
  if (single && std::this_thread::get_id() != loop_tid_) {
    // Only the issuer may submit or reap (DEFER_TASKRUN); the kernel
    // cancels what is left when the ring closes.
    if (outstanding_ > 0) {
      spdlog::debug("uring: destroyed off the loop thread with {} ops in "
                    "flight; leaving them to ring teardown",
                    outstanding_);
    }
    return;
  }
  for (auto& rec : recs_) {
    if (!rec->detached) {
      spdlog::warn("uring: destroyed with fd {} still attached", rec->fd);
      rec->detached = true;
    }
    sync(rec.get());  // cancels; no callbacks run from here on
  }
  if (wake_op_.inflight && !wake_op_.cancel_sent) send_cancel(&wake_op_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::vector<Cqe> batch;
  while (outstanding_ > 0 && std::chrono::steady_clock::now() < deadline) {
    __kernel_timespec ts{0, 50 * 1000 * 1000};
    io_uring_cqe* cqe = nullptr;
    int ret = submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    if (wait_failed(ret)) {
      break;  // e.g. -EEXIST: not the issuer after all
    }
    reap(batch);
    for (const Cqe& c : batch) dispatch(c);
    // Recs whose ops are all done: retry cancels for the rest.
    std::vector<ChanRec*> list;
    list.swap(pending_);
    for (ChanRec* r : list) {
      r->queued = false;
      if (r->inflight > 0) sync(r);
    }
  }
  if (outstanding_ > 0) {
    spdlog::warn("uring: {} ops still in flight at exit", outstanding_);
  }
}

// ------------------------------------------------------------ submission --

io_uring_sqe* UringBackendImpl::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  // Before the first wait() the ring is not enabled (and the issuer thread
  // not chosen): callers retry from wait() instead.
  for (int i = 0; !sqe && enabled_ && i < 4; ++i) {
    // SQ full: hand what is queued to the kernel and retry.
    int r = io_uring_submit(&ring_);
    if (r < 0 && !submit_error_logged_) {
      submit_error_logged_ = true;
      spdlog::warn("uring: submit with full SQ failed: {}", errno_name(-r));
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void UringBackendImpl::track(Op* op, io_uring_sqe* sqe) {
  io_uring_sqe_set_data64(sqe, ud_of(op));
  op->inflight = true;
  op->cancel_sent = false;
  if (op->rec) ++op->rec->inflight;
  ++outstanding_;
}

void UringBackendImpl::finish(Op* op) {
  op->inflight = false;
  if (op->rec) --op->rec->inflight;
  --outstanding_;
}

// For ops that may be multishot: the final CQE (no IORING_CQE_F_MORE)
// ends the op; returns whether c is that one.
bool UringBackendImpl::finish_if_final(Op* op, const Cqe& c) {
  bool final = !(c.flags & IORING_CQE_F_MORE);
  if (final) {
    finish(op);
  } else if (op->cancel_sent && op->cancels == 0) {
    op->cancel_sent = false;  // the cancel missed it: after() sends another
  }
  return final;
}

bool UringBackendImpl::send_cancel(Op* op) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  if (op->kind == OpKind::kTimer) {
    io_uring_prep_timeout_remove(sqe, ud_of(op), 0);
  } else {
    io_uring_prep_cancel64(sqe, ud_of(op), 0);
  }
  io_uring_sqe_set_data64(sqe, ud_cancel_of(op));
  op->cancel_sent = true;
  ++op->cancels;
  if (op->rec) ++op->rec->inflight;
  ++outstanding_;
  ++stats_.cancels;
  return true;
}

bool UringBackendImpl::arm_timer(ChanRec* r, unsigned ms) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  __kernel_timespec& ts = r->extra().ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = static_cast<long long>(ms % 1000) * 1000 * 1000;
  io_uring_prep_timeout(sqe, &ts, 0, 0);
  track(&r->timer(), sqe);
  return true;
}

bool UringBackendImpl::arm_wake() {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  track(&wake_op_, sqe);
  return true;
}

template <class F>
void UringBackendImpl::for_each_op(ChanRec* r, F&& f) {
  for (Op* op : {&r->accept(), &r->recv(), &r->send(), &r->timer()}) f(op);
  if (r->dg) {
    for (auto& s : r->dg->rx) f(&s->op);
    for (auto& s : r->dg->txs) f(&s->op);
  }
}

// Brings the submitted ops of a channel in line with what it wants. Only
// queues SQEs; never calls back. If the SQ cannot take more, retries from
// the next wait().
void UringBackendImpl::sync(ChanRec* r) {
  bool ok = true;
  if (r->detached) {
    for_each_op(r, [&](Op* op) {
      if (ok && op->inflight && !op->cancel_sent) ok = send_cancel(op);
    });
    if (!ok) queue(r);
    return;
  }
  Channel& ch = *r->ch;
  if (ch.kind() == Channel::Kind::kDatagram) {
    ok = sync_dgram(r);
  } else if (ch.kind() == Channel::Kind::kListener) {
    ok = sync_listener(r);  // a listener never holds anything back
  } else {
    ok = sync_stream(r);
  }
  if (!ok || (!r->errored && ch.want_read() && has_held(r))) queue(r);
}

void UringBackendImpl::queue(ChanRec* r) {
  if (r->queued) return;
  r->queued = true;
  pending_.push_back(r);
}

// After a CQE of r was handled: re-arm / continue what it still wants, or,
// once detached, hand it to process_pending() when nothing is in flight.
void UringBackendImpl::after(ChanRec* r) {
  if (r->detached && r->inflight == 0) {
    queue(r);
  } else {
    sync(r);
  }
}

void UringBackendImpl::fail(ChanRec* r, int err, const char* what) {
  r->errored = true;
  if (!r->logged) {
    r->logged = true;
    auto level = (err == -ECONNRESET || err == -EPIPE)
                     ? spdlog::level::debug
                     : spdlog::level::warn;
    spdlog::log(level, "uring: {} on fd {} failed: {}", what, r->fd,
                errno_name(-err));
  }
  r->ch->on_error(err);
}

// ------------------------------------------------------------- the API --

int UringBackendImpl::attach(Channel& ch) {
  if (!ring_ok_) return -EBADFD;
  if (ch.fd() < 0 || ::fcntl(ch.fd(), F_GETFD) < 0) return -EBADF;
  if (ch.io) return -EEXIST;
  auto rec = std::make_unique<ChanRec>(&ch);
  ChanRec* r = rec.get();
  if (ch.kind() == Channel::Kind::kDatagram) {
    if (!dgram_ok_) return -EOPNOTSUPP;
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(ch.fd(), SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
      return -errno;
    }
    if (type != SOCK_DGRAM) return -EINVAL;
    r->dg = std::make_unique<DgramState>();
    for (uint32_t i = 0; i < dgram_recv_depth_; ++i) {
      r->dg->rx.push_back(std::make_unique<DgramRecvSlot>(r, i));
    }
    for (uint32_t i = 0; i < dgram_send_depth_; ++i) {
      r->dg->txs.push_back(std::make_unique<DgramSendSlot>(r, i));
    }
  }
  r->index = static_cast<uint32_t>(recs_.size());
  recs_.push_back(std::move(rec));
  auto st = std::make_unique<UringChannelState>();
  st->rec = r;
  ch.io = std::move(st);
  sync(r);
  return 0;
}

void UringBackendImpl::update(Channel& ch) {
  ChanRec* r = rec_of(ch);
  if (!r || r->detached) return;
  sync(r);
}

void UringBackendImpl::detach(Channel& ch) {
  ChanRec* r = rec_of(ch);
  if (!r || r->detached) return;
  r->detached = true;
  sync(r);  // queues cancels for whatever is in flight
  if (r->inflight == 0) queue(r);
}

void UringBackendImpl::wakeup() {
  // Coalesce: one eventfd write per wake-read completion is enough.
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(wake_fd_, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
}

int UringBackendImpl::wait(std::chrono::milliseconds timeout) {
  if (!ring_ok_) return -EBADFD;
  if (in_wait_) return -EDEADLK;  // wait() from inside a callback
  if (int rc = ensure_enabled(); rc < 0) return rc;
  if ((info_.setup_flags & IORING_SETUP_SINGLE_ISSUER) &&
      std::this_thread::get_id() != loop_tid_) {
    if (!wrong_thread_logged_) {
      wrong_thread_logged_ = true;
      spdlog::error("uring: wait() on a thread other than the ring's issuer "
                    "(the thread of the first wait())");
    }
    return -EEXIST;
  }
  in_wait_ = true;
  struct Reset {
    bool& b;
    ~Reset() { b = false; }
  } reset{in_wait_};

#if defined(SLUICE_FAULTS)
  inject_faults();
#endif
  int n = process_pending();
  if (!wake_op_.inflight) arm_wake();

  io_uring_cqe* cqe = nullptr;
  int ret;
  bool poll = n > 0 || !pending_.empty() || timeout.count() == 0;
  if (!poll && timeout.count() < 0) {
    ret = submit_and_wait(&ring_, 1);
  } else {
    long long ms = poll ? 0 : timeout.count();
    __kernel_timespec ts{};
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000 * 1000;
    ret = submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  if (wait_failed(ret)) {
    spdlog::error("uring: submit/wait failed: {}", errno_name(-ret));
    return ret;
  }
  // Interrupted (EINTR also follows SIGSTOP/SIGCONT): completions for input
  // that arrived meanwhile may still be waiting as task work, which only an
  // entry into the kernel posts. The sweep must be complete (Backend::wait),
  // so enter once more without blocking.
  for (int i = 0; ret == -EINTR && i < 8; ++i) {
    __kernel_timespec zero{};
    ret = submit_and_wait_timeout(&ring_, &cqe, 1, &zero, nullptr);
  }

  std::vector<Cqe> batch;
  reap(batch);
  for (const Cqe& c : batch) n += dispatch(c);
  n += process_pending();
  return n;
}

// ------------------------------------------------------------ completion --

size_t UringBackendImpl::reap(std::vector<Cqe>& out) {
  out.clear();
  unsigned head;
  unsigned count = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    out.push_back({cqe->user_data, cqe->res, cqe->flags});
    ++count;
  }
  io_uring_cq_advance(&ring_, count);
  return count;
}

int UringBackendImpl::dispatch(const Cqe& c) {
  ++stats_.cqes;
  // liburing's own timeout SQE (kernels without EXT_ARG).
  if (c.ud == LIBURING_UDATA_TIMEOUT || c.ud == 0) return 0;
  Op* op = reinterpret_cast<Op*>(static_cast<uintptr_t>(c.ud & ~uint64_t{7}));
  if (c.ud & 1) {  // a cancel / timeout-remove aimed at op finished
    --op->cancels;
    --outstanding_;
    if (ChanRec* r = op->rec) {
      --r->inflight;
      after(r);
    }
    return 0;
  }
  switch (op->kind) {
    case OpKind::kWake:
      on_wake_cqe(c);
      return 0;
    case OpKind::kAccept:
      return on_accept_cqe(op->rec, c);
    case OpKind::kRecv:
      return on_recv_cqe(op->rec, c);
    case OpKind::kSend:
      return on_send_cqe(op->rec, c);
    case OpKind::kTimer:
      return on_timer_cqe(op->rec, c);
    case OpKind::kDgramRecv:
      return on_dgram_recv_cqe(op, c);
    case OpKind::kDgramSend:
      return on_dgram_send_cqe(op, c);
  }
  return 0;
}

void UringBackendImpl::on_wake_cqe(const Cqe& c) {
  finish(&wake_op_);
  ++stats_.wakeups;
  // RMW so that it synchronises with the wakeup() that set it.
  wake_pending_.exchange(false, std::memory_order_acq_rel);
  if (c.res < 0 && !is_cancel_or_retry(c.res)) {
    spdlog::warn("uring: wake read failed: {}", errno_name(-c.res));
  }
  if (!closing_) arm_wake();
}

int UringBackendImpl::on_timer_cqe(ChanRec* r, const Cqe&) {
  finish(&r->timer());
  if (DgramState* d = r->dg.get()) {
    d->rx_backoff = false;
    if (d->tx_wait) {
      d->tx_wait = false;
      if (++d->retry_rounds > kDgramMaxRetryRounds && !r->detached) {
        // Nothing left for ~1 s: give up on the rest of this batch (the
        // next batch gets a fresh chance).
        size_t n = d->tx_retry.size() + (d->tx.size() - d->tx_next);
        stats_.dgram_dropped += n;
        spdlog::debug("uring: udp fd {}: dropping {} datagrams, nothing "
                      "sent for {} retry rounds",
                      r->fd, n, kDgramMaxRetryRounds);
        d->tx_retry.clear();
        d->tx_next = d->tx.size();
        d->retry_rounds = 0;
        if (n > 0 && !r->errored) r->ch->on_datagrams_sent(n);
      }
    }
  }
  after(r);
  return 0;
}

// ------------------------------------------------------------- deferred --

void UringBackendImpl::finalize(ChanRec* r) {
  Channel* ch = r->ch;
  // Swap-remove from recs_; frees r (in-flight send buffer, scratch).
  std::unique_ptr<ChanRec> dead = std::move(recs_[r->index]);
  if (r->index + 1 != recs_.size()) {
    recs_[r->index] = std::move(recs_.back());
    recs_[r->index]->index = r->index;
  }
  recs_.pop_back();
  dead.reset();
  ch->io.reset();
  ch->on_detached();
}

int UringBackendImpl::process_pending() {
  if (pending_.empty()) return 0;
  std::vector<ChanRec*> list;
  list.swap(pending_);
  int n = 0;
  for (ChanRec* r : list) {
    r->queued = false;
    if (r->detached) {
      if (r->inflight == 0) {
        finalize(r);
        ++n;
      } else {
        sync(r);  // retry cancels the SQ could not take
      }
      continue;
    }
    if (!r->errored && r->ch->want_read() && has_held(r)) {
      n += r->dg ? deliver_held_dgrams(r) : deliver_held(r);
    }
    if (r->detached) {
      if (r->inflight == 0) queue(r);
    } else {
      sync(r);
    }
  }
  return n;
}

}  // namespace uring_internal

std::unique_ptr<UringBackend> make_uring_backend_tuned(
    const BackendOptions& options, const UringTuning& tuning) {
  auto b = std::make_unique<uring_internal::UringBackendImpl>();
  if (!b->init(options, tuning)) return nullptr;
  return b;
}

std::unique_ptr<Backend> make_uring_backend(const BackendOptions& options) {
  return make_uring_backend_tuned(options, UringTuning{});
}

}  // namespace sluice::io
