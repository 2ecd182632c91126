// Streams on the io_uring back end: one multishot IORING_OP_RECV into the
// stream buffer ring (single-shot recv into a per-channel scratch buffer
// where the kernel lacks it), at most one IORING_OP_SEND in flight, and
// input held back while want_read() is off. See io/uring.h.
#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include <spdlog/spdlog.h>

#include "io/uring_impl.h"

namespace sluice::io::uring_internal {
namespace {

constexpr size_t kScratchSize = 16 * 1024;  // single-shot recv fallback
constexpr size_t kMaxSendLen = 1u << 30;    // SQE len is 32-bit

}  // namespace

bool UringBackendImpl::arm_recv(ChanRec* r) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  if (ms_recv_) {
    io_uring_prep_recv_multishot(sqe, r->fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufGroup;
  } else {
    std::unique_ptr<char[]>& scratch = r->extra().scratch;
    if (!scratch) scratch = std::make_unique<char[]>(kScratchSize);
    io_uring_prep_recv(sqe, r->fd, scratch.get(), cap_sqe_len(kScratchSize), 0);
  }
  r->recv().multishot = ms_recv_;
  track(&r->recv(), sqe);
  ++stats_.recv_arms;
  return true;
}

bool UringBackendImpl::arm_send(ChanRec* r) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  size_t len = cap_sqe_len(std::min(r->sending.readable(), kMaxSendLen));
  io_uring_prep_send(sqe, r->fd, r->sending.peek(), len, MSG_NOSIGNAL);
  r->send().len = len;
  track(&r->send(), sqe);
  ++stats_.sends;
  return true;
}

// The stream part of sync(): recv armed (or cancelled) as want_read()
// says, output() handed to a send when none is in flight. False if the SQ
// could not take everything.
bool UringBackendImpl::sync_stream(ChanRec* r) {
  Channel& ch = *r->ch;
  bool ok = true;
  bool want = ch.want_read() && !r->eof && !r->errored;
  if (want) {
    // A cancel still aimed at the previous recv could hit a new one with
    // the same user_data: wait for its CQE before re-arming.
    if (!r->recv().inflight && r->recv().cancels == 0) ok = arm_recv(r);
  } else if (r->recv().inflight && !r->recv().cancel_sent) {
    ok = send_cancel(&r->recv());
  }
  if (ok && !r->errored && !r->send().inflight) {
    if (r->sending.empty() && !ch.output().empty()) {
      r->sending.swap(ch.output());
      ch.output().release();  // the empty one swapped back: no idle storage
    }
    if (!r->sending.empty()) ok = arm_send(r);
  }
  return ok;
}

int UringBackendImpl::on_recv_cqe(ChanRec* r, const Cqe& c) {
  Op& op = r->recv();
  bool was_multishot = op.multishot;
  finish_if_final(&op, c);
  const char* data = nullptr;
  int bid = buffer_id(c);
  if (bid >= 0) {
    data = stream_ring_.buf(bid);
  } else if (!was_multishot) {
    data = r->x ? r->x->scratch.get() : nullptr;
  }
  if (r->detached || r->errored) {
    recycle(bid);
    after(r);
    return 0;
  }
  Channel& ch = *r->ch;
  int n = 0;
  if (c.res > 0) {
    if (!data) {
      recycle(bid);
      fail(r, -EIO, "recv (no buffer in CQE)");
      after(r);
      return 1;
    }
    r->received_any = true;
    const size_t len = static_cast<size_t>(c.res);
    if (ch.want_read() && !r->held_eof && !r->holds_input()) {
      // The provided buffer itself is the input: no copy. It goes back to
      // the ring once on_input returns (the view's validity ends there).
      ch.on_input({data, len});
      ++n;
    } else {
      // Reading is paused (the cancel is on its way) or older input waits:
      // keep it, in order, for deliver_held().
      r->extra().held.append(data, len);
    }
    recycle(bid);
  } else if (c.res == 0) {
    recycle(bid);
    r->eof = true;
    r->held_eof = true;
    if (ch.want_read()) n += deliver_held(r);
  } else if (c.res == -ENOBUFS) {
    // The ring ran dry: every buffer goes back as its CQE is handled, so
    // by the time the re-armed recv (queued by after()) is submitted, the
    // rest of this batch has refilled it.
    ++stats_.enobufs;
#if defined(SLUICE_FAULTS)
    fault::count(fault::Kind::kUringNobufsSeen);
    if (withholding_) ran_dry_ = true;
#endif
  } else if (is_cancel_or_retry(c.res)) {
    // our own cancel (want_read off), or interrupted: re-arm if wanted
  } else if (c.res == -EINVAL && was_multishot && !r->received_any &&
             ms_recv_) {
    ms_recv_ = false;
    info_.multishot_recv = false;
    spdlog::info("uring: multishot recv unsupported (EINVAL), using "
                 "single-shot recv");
  } else {
    fail(r, c.res, "recv");
    ++n;
  }
  after(r);
  return n;
}

int UringBackendImpl::on_send_cqe(ChanRec* r, const Cqe& c) {
  Op& op = r->send();
  finish(&op);
  if (r->detached || r->errored) {
    after(r);
    return 0;
  }
  int n = 0;
  if (c.res > 0) {
    size_t sent = static_cast<size_t>(c.res);
    if (sent < op.len) ++stats_.partial_sends;
    r->sending.retrieve(sent);
    r->sending.release();  // once empty: an idle channel holds no storage
    r->ch->on_sent(sent);
    ++n;
  } else if (c.res == 0 || c.res == -EAGAIN || c.res == -EINTR) {
    // nothing went out; after() re-submits the rest
  } else {
    fail(r, c.res, "send");
    ++n;
  }
  after(r);  // continues a short send, or swaps in more output
  return n;
}

// Input (and an eof) held back while want_read() was off.
int UringBackendImpl::deliver_held(ChanRec* r) {
  int n = 0;
  if (r->holds_input()) {
    // Moved out first: on_input may pause reading again, and what arrives
    // meanwhile is kept in a fresh held buffer.
    const Buffer h(std::move(r->x->held));
    r->ch->on_input(h.view());
    ++n;
  }
  if (r->held_eof && !r->detached && !r->errored && r->ch->want_read() &&
      !r->holds_input()) {
    r->held_eof = false;
    r->ch->on_eof();
    ++n;
  }
  return n;
}

}  // namespace sluice::io::uring_internal
