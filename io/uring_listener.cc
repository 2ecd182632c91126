// Listeners on the io_uring back end: one multishot IORING_OP_ACCEPT
// (single-shot where the kernel lacks it), re-armed after its final CQE,
// and the accept back-off after resource errors. See io/uring.h.
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <spdlog/spdlog.h>

#include "io/uring_impl.h"

namespace sluice::io::uring_internal {
namespace {

constexpr unsigned kAcceptErrorsBeforeBackoff = 3;

bool is_resource_error(int err) {
  return err == -EMFILE || err == -ENFILE || err == -ENOBUFS ||
         err == -ENOMEM;
}

}  // namespace

bool UringBackendImpl::arm_accept(ChanRec* r) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  if (ms_accept_) {
    io_uring_prep_multishot_accept(sqe, r->fd, nullptr, nullptr, SOCK_CLOEXEC);
  } else {
    io_uring_prep_accept(sqe, r->fd, nullptr, nullptr, SOCK_CLOEXEC);
  }
  r->accept().multishot = ms_accept_;
  track(&r->accept(), sqe);
  ++stats_.accept_arms;
  return true;
}

// The listener part of sync(): accept armed while want_read() (and no
// back-off timer is pending), cancelled otherwise. False if the SQ could
// not take it.
bool UringBackendImpl::sync_listener(ChanRec* r) {
  bool ok = true;
  if (r->ch->want_read()) {
    if (!r->accept().inflight && r->accept().cancels == 0 && !r->timer().inflight)
      ok = arm_accept(r);
  } else if (r->accept().inflight && !r->accept().cancel_sent) {
    ok = send_cancel(&r->accept());
  }
  return ok;
}

int UringBackendImpl::on_accept_cqe(ChanRec* r, const Cqe& c) {
  Op& op = r->accept();
  bool was_multishot = op.multishot;
  bool final = finish_if_final(&op, c);
  int n = 0;
  if (c.res >= 0) {
    if (r->detached) {
      ::close(c.res);  // nobody to hand it to
    } else {
      r->accepted_any = true;
      r->accept_errors = 0;
      r->ch->on_accept(c.res);
      ++n;
    }
  } else if (!r->detached) {
    int err = c.res;
    if (err == -EINVAL && was_multishot && !r->accepted_any && final &&
        ms_accept_) {
      ms_accept_ = false;
      info_.multishot_accept = false;
      spdlog::info("uring: multishot accept unsupported (EINVAL), using "
                   "single-shot accept");
    } else if (is_cancel_or_retry(err)) {
      // our own cancel (want_read off) or an interrupted attempt: re-arm
    } else {
      if (r->accept_errors < UINT16_MAX) ++r->accept_errors;
      if (r->accept_errors == 1) {
        spdlog::warn("uring: accept on fd {} failed: {}", r->fd,
                     errno_name(-err));
      }
      r->ch->on_accept_error(err);
      ++n;
      if (final && !r->detached && !op.inflight &&
          (is_resource_error(err) ||
           r->accept_errors >= kAcceptErrorsBeforeBackoff)) {
        // re-arm accept when it fires
        if (arm_timer(r, tuning_.accept_backoff_ms)) ++stats_.accept_backoffs;
      }
    }
  }
  after(r);
  return n;
}

}  // namespace sluice::io::uring_internal
