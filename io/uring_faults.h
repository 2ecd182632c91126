// The io_uring half of fault injection (--config=faults; see base/fault.h
// for the plan and the legality rule). Private to //io:uring.
//
// Why shape inputs instead of rewriting completions: a CQE reports what
// the kernel already did. A recv CQE turned into -ECANCELED would lose
// bytes the kernel already copied out of the socket; a send CQE made
// shorter would have us send again bytes that already left. No kernel
// does either, so a back end that "survived" such faults would prove
// nothing. Each effect is produced for real instead:
//   short results   -- the send SQE's length is capped (and the
//                      single-shot recv's), so the kernel completes short;
//   -ENOBUFS, no F_MORE -- provided buffers (streams and datagrams) are
//                      held back from their rings for a while (and the
//                      rings are small in this build), so the kernel
//                      really runs dry and ends the multishot recv or
//                      recvmsg;
//   -ECANCELED, no F_MORE -- a real IORING_OP_ASYNC_CANCEL for a random
//                      in-flight multishot recv, recvmsg or accept; the
//                      back end must re-arm it;
//   -EINTR          -- from the submit/wait call: it submits, waits for
//                      nothing, and says EINTR (what a signal does).
//
// A normal build compiles the inline pass-throughs below and nothing else.
//
// Thread rules: the back end's loop thread (the ring's issuer) only.
#pragma once

#include <liburing.h>

#include <cstddef>

namespace sluice::io::uring_internal {

#if defined(SLUICE_FAULTS)

int submit_and_wait(io_uring* ring, unsigned want);
int submit_and_wait_timeout(io_uring* ring, io_uring_cqe** cqe, unsigned want,
                            __kernel_timespec* ts, sigset_t* sigmask);
// The length to put in a recv/send SQE that could take `len`.
size_t cap_sqe_len(size_t len);
// Provided buffers in this build (legal, small rings, so withholding a
// few really drains them).
unsigned stream_buf_count(unsigned want);
unsigned dgram_buf_count(unsigned want);

#else

inline int submit_and_wait(io_uring* ring, unsigned want) {
  return io_uring_submit_and_wait(ring, want);
}
inline int submit_and_wait_timeout(io_uring* ring, io_uring_cqe** cqe, unsigned want,
                                   __kernel_timespec* ts, sigset_t* sigmask) {
  return io_uring_submit_and_wait_timeout(ring, cqe, want, ts, sigmask);
}
inline size_t cap_sqe_len(size_t len) { return len; }
inline unsigned stream_buf_count(unsigned want) { return want; }
inline unsigned dgram_buf_count(unsigned want) { return want; }

#endif

}  // namespace sluice::io::uring_internal
