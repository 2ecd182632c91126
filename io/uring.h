// The io_uring back end: a true proactor on liburing (model: liburing's
// examples/echo-server.c and the io_uring-and-networking notes).
//
// What it submits:
//  * listeners: one multishot IORING_OP_ACCEPT (re-armed when a CQE comes
//    without IORING_CQE_F_MORE); single-shot accept where the kernel lacks
//    multishot (< 5.19). Accept errors go to on_accept_error(-errno); after
//    a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM) or repeated errors
//    accepting resumes after a short IORING_OP_TIMEOUT (no hot loop).
//  * streams: one multishot IORING_OP_RECV into a provided buffer ring (one
//    ring per back end, UringTuning::buf_count x buf_size, default 512 x
//    16 KiB = 8 MiB); each CQE's bytes are appended to input() and the
//    buffer goes back to the ring at once. Where the kernel lacks buffer
//    rings / multishot recv (< 6.0) a single-shot recv into a per-channel
//    16 KiB scratch buffer is used instead. At most one IORING_OP_SEND
//    (MSG_NOSIGNAL) per channel: output() is swapped into a back-end-owned
//    in-flight buffer, short sends are continued with the rest.
//  * wakeup(): an eventfd that the ring itself reads (a pending
//    IORING_OP_READ, re-armed after each completion); only the loop thread
//    ever calls into the ring.
//
// Ring setup tries, in order (falling back on EINVAL):
//   SINGLE_ISSUER|DEFER_TASKRUN|SUBMIT_ALL|R_DISABLED      (6.1+)
//   SINGLE_ISSUER|COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL|R_DISABLED (6.0)
//   COOP_TASKRUN|TASKRUN_FLAG|SUBMIT_ALL                      (5.19)
//   SUBMIT_ALL                                                (5.18)
//   0
// R_DISABLED lets the ring be created on one thread and driven by another:
// the first wait() enables it and its thread becomes the single issuer
// (attach/update/detach before that only queue SQEs, so a server may attach
// its listener before starting the loop thread). UringBackend::info() says
// what was accepted; one info log line at creation says the same.
// Without DEFER_TASKRUN (the lower tiers) the kernel signals task work to
// the issuer thread with TIF_NOTIFY_SIGNAL, so a blocking syscall made on
// the loop thread (connect with SO_SNDTIMEO, ...) may fail with EINTR.
//
// The buffer ring is only set up where multishot recv is expected (6.0+).
// Provided-buffer sizes: 512 x 16 KiB by default = 8 MiB per back end
// (one back end per loop); received bytes are copied from a ring buffer
// into input() and the buffer is recycled before on_input runs.
//
// Backpressure: when want_read() turns false the multishot recv is
// cancelled; bytes whose CQEs were already in flight are appended to
// input() but their on_input (and a following on_eof) is held back until
// want_read() is true again and update() is called; they are then
// delivered from the next wait().
//
// on_detached is always delivered from wait() (never from inside detach()),
// once the final CQE of every operation of the channel, cancellations
// included, has been reaped. The destructor calls no callbacks: it cancels
// what is still in flight and drains those CQEs (when it runs on the loop
// thread or the ring was never enabled) before io_uring_queue_exit.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "io/backend.h"

namespace sluice::io {

// Empty string when io_uring works here; otherwise the reason (disabled by
// sysctl kernel.io_uring_disabled, EPERM from seccomp/containers, ENOSYS,
// missing opcodes such as IORING_OP_ACCEPT/RECV/SEND ...).
std::string probe_uring();

// nullptr if setup fails at run time (the reason is logged).
std::unique_ptr<Backend> make_uring_backend(const BackendOptions& options);

// Knobs beyond BackendOptions, mainly for tests and benchmarks.
struct UringTuning {
  // Provided-buffer ring: buf_count must be a power of two (1..32768);
  // buf_size is the size of each buffer in bytes.
  unsigned buf_count = 512;
  unsigned buf_size = 16 * 1024;
  // Force the fallbacks even where the kernel has the features.
  bool disable_multishot_accept = false;
  bool disable_buf_ring = false;  // implies single-shot recv
  // Pause before re-arming accept after a resource error (EMFILE ...).
  unsigned accept_backoff_ms = 50;
  // Test-only: skip the first N setup-flag tiers (see the list above) to
  // exercise the fallbacks on a kernel that accepts everything.
  unsigned first_setup_tier = 0;
};

// What the ring and kernel accepted (fixed after creation).
struct UringInfo {
  unsigned setup_flags = 0;  // IORING_SETUP_* the kernel accepted
  unsigned features = 0;     // IORING_FEAT_* the kernel reported
  unsigned sq_entries = 0;
  unsigned cq_entries = 0;
  bool multishot_accept = false;
  bool multishot_recv = false;  // implies buf_ring
  bool buf_ring = false;
  unsigned buf_count = 0;
  unsigned buf_size = 0;
  // One line: "flags=SINGLE_ISSUER|DEFER_TASKRUN|... features=... ...".
  std::string describe() const;
};

// Counters, for tests and diagnostics (loop thread only).
struct UringStats {
  uint64_t cqes = 0;
  uint64_t enobufs = 0;         // multishot recv ended with -ENOBUFS
  uint64_t recv_arms = 0;       // recv SQEs submitted (first arm + re-arms)
  uint64_t accept_arms = 0;
  uint64_t accept_backoffs = 0; // accept re-armed via a timeout
  uint64_t sends = 0;           // send SQEs
  uint64_t partial_sends = 0;   // send CQEs with 0 < res < len
  uint64_t cancels = 0;         // cancel SQEs
  uint64_t wakeups = 0;         // eventfd read completions
};

class UringBackend : public Backend {
 public:
  virtual const UringInfo& info() const = 0;
  virtual const UringStats& stats() const = 0;
};

// Like make_uring_backend, with tuning and the concrete interface.
std::unique_ptr<UringBackend> make_uring_backend_tuned(
    const BackendOptions& options, const UringTuning& tuning);

// "SINGLE_ISSUER|DEFER_TASKRUN|..." for IORING_SETUP_* bits ("0" if none).
std::string describe_uring_setup_flags(unsigned flags);

}  // namespace sluice::io
