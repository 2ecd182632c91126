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
//    16 KiB = 8 MiB); each CQE's provided buffer is passed to on_input as
//    a view (no copy) and goes back to the ring when on_input returns. Where the kernel lacks buffer
//    rings / multishot recv (< 6.0) a single-shot recv into a per-channel
//    16 KiB scratch buffer is used instead. At most one IORING_OP_SEND
//    (MSG_NOSIGNAL) per channel: output() is swapped into a back-end-owned
//    in-flight buffer, short sends are continued with the rest.
//  * datagram channels (UDP; attach() checks SO_TYPE == SOCK_DGRAM, else
//    -EINVAL; -EOPNOTSUPP where the kernel lacks IORING_OP_RECVMSG/SENDMSG):
//      receive: one multishot IORING_OP_RECVMSG (6.0+) into a second
//        provided-buffer ring of its own (buffer group 1, UringTuning::
//        dgram_buf_count x dgram_buf_size, default 64 x (64 KiB + 192 B)
//        = ~4 MiB of address space per back end, touched only as datagrams
//        arrive). Each buffer holds struct io_uring_recvmsg_out, room for a
//        sockaddr_storage, the TOS / traffic-class cmsg (Datagram::ecn) and one
//        payload of up to kMaxDatagram bytes; it is
//        parsed with liburing's io_uring_recvmsg_validate/name/payload
//        (liburing 2.3+). Each datagram becomes one on_datagram({source
//        address, its length, payload}) and the buffer goes back to the
//        ring as soon as the call returns. The recvmsg is re-armed whenever
//        a CQE comes without IORING_CQE_F_MORE (an empty datagram also ends
//        a multishot), -ENOBUFS (ring dry; the datagram stays queued in the
//        socket) recycles and re-arms. Fallback (no buffer rings, i.e.
//        below 6.0, or EINVAL from the multishot, or UringTuning::
//        disable_multishot_recvmsg): dgram_recv_depth (default 8) single-
//        shot recvmsg ops per channel kept in flight, each with its own
//        buffer of the same payload capacity (allocated on first use).
//        A datagram larger than the payload capacity (MSG_TRUNC) is
//        dropped and counted (debug log). Receive errors that concern one
//        peer (ICMP reports on a connected socket: ECONNREFUSED,
//        EHOSTUNREACH ...; ENOMEM ...) are logged at debug level and the
//        receive is re-armed (after 16 in a row, after a 1 ms timer); only
//        EBADF, ENOTSOCK, EFAULT, EOPNOTSUPP and EINVAL are on_error. A
//        0-byte read with no source address means the read side was shut
//        down: receiving stops (warn line).
//      send: update() takes ch.datagrams() whole (the queue is swapped into
//        back-end-owned storage, so addresses and payloads stay put while
//        the kernel reads them) and submits one IORING_OP_SENDMSG
//        (MSG_NOSIGNAL; no address = the connected peer) per datagram, at
//        most dgram_send_depth (default 64) in flight per channel, in queue
//        order. No IOSQE_IO_LINK: the kernel issues SQEs in submission
//        order, so datagrams leave in order unless the socket buffer is
//        full, when a send parked on poll may be overtaken (UDP promises no
//        order anyway). Datagrams queued meanwhile form the next batch,
//        taken when every datagram of this one has completed. A datagram
//        the kernel refuses (EMSGSIZE, unreachable, EPERM ...) is dropped
//        and counted (UringStats::dgram_dropped, debug log), never fatal;
//        EAGAIN/ENOBUFS/ENOMEM (which io_uring itself rarely returns: it
//        parks a send on a full socket until it can go) are retried after
//        1 ms, one datagram at a time until one leaves; after ~1 s with
//        none leaving, the rest of the batch is dropped and counted. There
//        is no on_sent for datagrams.
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
// The buffer rings are only set up where multishot recv is expected (6.0+).
// Provided-buffer sizes: 512 x 16 KiB by default = 8 MiB per back end
// (one back end per loop) for streams; on_input reads the ring buffer in
// place, and it is recycled as soon as on_input returns (a handler that
// keeps bytes copies them), so a slow consumer cannot starve the ring. The datagram ring (64 x ~64 KiB) is separate so a UDP burst can
// never starve streams of buffers, and vice versa.
//
// Backpressure: when want_read() turns false the multishot recv is
// cancelled; bytes whose CQEs were already in flight are copied into a
// per-channel held buffer (allocated only then), but their on_input (and a following on_eof) is held back until
// want_read() is true again and update() is called; they are then
// delivered from the next wait(). Datagram channels alike: the recvmsg ops
// are cancelled, datagrams whose CQEs were already in flight (or that
// follow in the batch of a handler that turned want_read() off) are copied
// into a per-channel queue and delivered, in order, from the next wait()
// after want_read() is on again; no on_datagram runs while it is off.
// Meanwhile the kernel's SO_RCVBUF fills and then drops, as UDP does.
//
// on_detached is always delivered from wait() (never from inside detach()),
// once the final CQE of every operation of the channel (for datagram
// channels: every recvmsg and sendmsg in flight), cancellations included,
// has been reaped; datagrams still queued or held are discarded. The
// destructor calls no callbacks: it cancels what is still in flight and
// drains those CQEs (when it runs on the loop thread or the ring was never
// enabled) before io_uring_queue_exit.
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
  // Datagram provided-buffer ring (group 1): dgram_buf_count must be a
  // power of two; dgram_buf_size is the whole buffer (192 bytes of header,
  // address and TOS cmsg, the rest payload), 0 = 64 KiB of payload + header. It is
  // rounded up to a multiple of 16 and clamped to [header + 64, that
  // default] (UringInfo::dgram_payload_cap says what came of it); the
  // payload capacity also applies to the single-shot fallback's buffers.
  // Larger datagrams are dropped as truncated.
  unsigned dgram_buf_count = 64;
  unsigned dgram_buf_size = 0;
  // Single-shot recvmsg ops kept in flight per datagram channel where
  // multishot recvmsg is not used (1..1024).
  unsigned dgram_recv_depth = 8;
  // sendmsg ops in flight per datagram channel (1..4096).
  unsigned dgram_send_depth = 64;
  // Force the single-shot recvmsg fallback (no datagram buffer ring).
  bool disable_multishot_recvmsg = false;
  // Test-only: sendmsg with MSG_DONTWAIT, so a full socket buffer comes
  // back as -EAGAIN (the retry path) instead of a send parked on poll in
  // the kernel (which is what io_uring does otherwise, O_NONBLOCK or not).
  bool dgram_send_dontwait = false;
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
  bool datagrams = false;          // IORING_OP_RECVMSG/SENDMSG available
  bool multishot_recvmsg = false;  // implies the datagram ring; may turn
                                   // false at run time (EINVAL fallback)
  unsigned dgram_buf_count = 0;
  unsigned dgram_buf_size = 0;
  unsigned dgram_payload_cap = 0;  // largest datagram received whole
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
  // Datagram channels.
  uint64_t dgram_recv_arms = 0;    // recvmsg SQEs (multishot or single)
  uint64_t dgram_received = 0;     // datagrams received whole
  uint64_t dgram_truncated = 0;    // dropped: larger than the buffer
  uint64_t dgram_enobufs = 0;      // multishot recvmsg ended with -ENOBUFS
  uint64_t dgram_recv_errors = 0;  // non-fatal recvmsg errors (ICMP ...)
  uint64_t dgram_sends = 0;        // sendmsg SQEs (retries included)
  uint64_t dgram_sent = 0;         // datagrams the kernel took
  uint64_t dgram_dropped = 0;      // refused by the kernel (or retried out)
  uint64_t dgram_send_retries = 0; // EAGAIN/ENOBUFS: sent again later
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
