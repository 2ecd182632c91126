// See io/uring_faults.h. Compiled to nothing without SLUICE_FAULTS.
#include "io/uring_faults.h"

#if defined(SLUICE_FAULTS)

#include <algorithm>

#include "base/fault.h"
#include "io/uring_impl.h"

namespace sluice::io::uring_internal {

using fault::Kind;

namespace {

// What a signal does to io_uring_enter: the SQEs are submitted, the wait
// ends at once with EINTR. Completions are not touched.
int interrupted(io_uring* ring) {
  fault::count(Kind::kUringEintr);
  int r = io_uring_submit(ring);
  return r < 0 ? r : -EINTR;
}

}  // namespace

int submit_and_wait(io_uring* ring, unsigned want) {
  if (fault::roll(fault::Stream::kWait)) return interrupted(ring);
  return io_uring_submit_and_wait(ring, want);
}

int submit_and_wait_timeout(io_uring* ring, io_uring_cqe** cqe, unsigned want,
                            __kernel_timespec* ts, sigset_t* sigmask) {
  if (fault::roll(fault::Stream::kWait)) return interrupted(ring);
  return io_uring_submit_and_wait_timeout(ring, cqe, want, ts, sigmask);
}

size_t cap_sqe_len(size_t len) {
  if (len < 2 || !fault::roll()) return len;
  fault::count(Kind::kUringShort);
  // Mostly a few bytes, sometimes anything shorter.
  const uint64_t r = fault::below(4);
  const size_t cap = r == 0 ? len - 1 : std::min<size_t>(len - 1, 64);
  return 1 + static_cast<size_t>(fault::below(cap));
}

// 16 buffers of 16 KiB still serve every stream (the back end re-arms on
// ENOBUFS), and holding a few back really drains them.
unsigned stream_buf_count(unsigned want) { return std::min(want, 16u); }
unsigned dgram_buf_count(unsigned want) { return std::min(want, 8u); }

bool UringBackendImpl::withhold(BufRing& ring, int bid) {
  if (!withholding_) return false;
  withheld_.emplace_back(&ring, bid);
  return true;
}

// Once per wait(), before anything is submitted.
void UringBackendImpl::inject_faults() {
  constexpr fault::Stream W = fault::Stream::kWait;  // once per wait: timing-dependent
  // A withholding episode lasts until the ring ran dry (a multishot recv
  // ended with -ENOBUFS) or, with 1 in 16 per wait, gives up; then every
  // held buffer goes back, so the re-armed recv finds some.
  if (withholding_ && (ran_dry_ || fault::below(16, W) == 0)) {
    ran_dry_ = false;
    withholding_ = false;
    for (auto [ring, bid] : withheld_) ring->recycle(bid);
    withheld_.clear();
  } else if (!withholding_ && (buf_ring_ || ms_recvmsg_) && fault::roll(W)) {
    withholding_ = true;
    fault::count(Kind::kUringWithhold);
  }
  // A real cancel of a random multishot recv, recvmsg or accept: the
  // kernel ends it with -ECANCELED and no F_MORE, as it does when the op is
  // cancelled for any other reason; the back end must re-arm.
  if (recs_.empty() || !fault::roll(W)) return;
  ChanRec* r = recs_[fault::below(recs_.size(), W)].get();
  if (r == nullptr || r->detached || r->errored) return;
  // Datagram channels: the multishot recvmsg is slot 0. Otherwise ops[0]
  // is the accept (listener) or the recv (stream).
  if (r->dg && r->dg->rx.empty()) return;
  Op& op = r->dg ? r->dg->rx[0]->op : r->ops[0];
  if (!op.inflight || !op.multishot || op.cancel_sent || op.cancels != 0) return;
  if (send_cancel(&op)) fault::count(Kind::kUringCancel);
}

}  // namespace sluice::io::uring_internal

#endif  // SLUICE_FAULTS
