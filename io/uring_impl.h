// The io_uring back end's implementation class, private to //io:uring. See
// io/uring.h for the model; the notes here are about lifetimes.
//
// Where the code lives:
//   io/uring.cc           the Backend methods, op tracking, CQE dispatch,
//                         deferred work and teardown
//   io/uring_setup.cc     ring setup (setup-flag ladder, R_DISABLED and
//                         enabling), kernel feature detection, probe_uring
//   io/uring_buffers.*    provided-buffer rings
//   io/uring_listener.cc  listeners: accept
//   io/uring_stream.cc    streams: recv and send
//   io/uring_datagram.cc  datagram channels: recvmsg and sendmsg
//
// user_data: every SQE carries the address of an Op owned by the back end,
// either as is (the op's own completion) or with bit 0 set (the completion
// of a cancel / timeout-remove SQE aimed at that op). Ops of a channel live
// in its ChanRec, which the back end owns and frees only after the final
// CQE of every op of that channel (cancels included) has been reaped, so a
// CQE never refers to freed memory. Channel::io holds only a pointer to the
// ChanRec and is reset just before on_detached.
//
// Re-entrancy: CQEs are copied out of the CQ ring and the ring is advanced
// before any callback runs, so callbacks may call update()/detach() (which
// only queue SQEs, or submit when the SQ is full). Op state is updated
// before each callback, and a channel's ChanRec is only freed from
// process_pending(), which never runs inside a callback.
//
// Datagram channels keep their ops in a DgramState hanging off the ChanRec:
// a fixed array of receive slots (slot 0 carries the multishot recvmsg; in
// the single-shot fallback every slot is one recvmsg with its own msghdr,
// address and payload buffer) and a fixed array of send slots (one sendmsg
// each, with its msghdr/iovec). Op::slot indexes them; the arrays are sized
// at attach and never reallocated, so an Op's address (its user_data) and
// the msghdr the kernel reads stay put. Sends take whole batches: the
// channel's DatagramQueue is swapped into DgramState::tx and only swapped
// again once every datagram of the batch has its final CQE, so the payload
// and address views handed to the kernel stay valid.
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/backend.h"
#include "io/uring.h"
#include "io/uring_buffers.h"
#include "io/uring_faults.h"
#if defined(SLUICE_FAULTS)
#include "base/fault.h"
#endif

namespace sluice::io::uring_internal {

constexpr uint16_t kBufGroup = 0;            // provided buffers for streams
constexpr uint16_t kDgramGroup = 1;          // ... and for datagrams
// Pause before retrying sends after EAGAIN/ENOBUFS, or re-arming receives
// after an error burst.
constexpr unsigned kDgramRetryMs = 1;
// Consecutive retry rounds without any datagram leaving (~1 s at 1 ms)
// before the rest of the batch is dropped.
constexpr unsigned kDgramMaxRetryRounds = 1000;

// "ENOENT (No such file or directory)" for err > 0, for log lines.
std::string errno_name(int err);

// A CQE result that is our own cancel (want_read off) or an interrupted
// attempt: nothing to report, re-arm if still wanted.
inline bool is_cancel_or_retry(int res) {
  return res == -ECANCELED || res == -EINTR || res == -EAGAIN;
}

struct ChanRec;

enum class OpKind : uint8_t {
  kAccept,
  kRecv,
  kSend,
  kTimer,
  kWake,
  kDgramRecv,  // recvmsg (multishot or single-shot) of a datagram channel
  kDgramSend,  // sendmsg of one datagram
};

struct alignas(8) Op {
  explicit Op(OpKind k, ChanRec* r = nullptr, uint32_t s = 0)
      : rec(r), slot(s), kind(k) {}
  // Packed to 24 bytes: there are two per connection.
  ChanRec* rec;             // null for back-end ops (wake)
  uint32_t len = 0;         // send: bytes in the SQE (at most kMaxSendLen)
  uint32_t slot;            // datagram ops: index into DgramState's slots
  uint16_t cancels = 0;     // cancel SQEs aimed at it, CQE not reaped yet
  OpKind kind;
  bool inflight = false;    // final CQE not reaped yet
  bool cancel_sent = false; // a cancel for this arming was queued
  bool multishot = false;   // how it was armed
};

// One receive operation of a datagram channel.
struct DgramRecvSlot {
  DgramRecvSlot(ChanRec* r, uint32_t i) : op(OpKind::kDgramRecv, r, i) {}
  Op op;
  bool lent = false;  // buf is being shown to on_datagram: do not re-arm
  msghdr msg{};       // read by the kernel when the SQE is submitted
  iovec iov{};
  sockaddr_storage addr{};      // single-shot: the source address
  std::unique_ptr<char[]> buf;  // single-shot: the payload buffer
  alignas(cmsghdr) char control[kEcnControlSize];  // single-shot: TOS cmsg
};

// One sendmsg of a datagram channel.
struct DgramSendSlot {
  DgramSendSlot(ChanRec* r, uint32_t i) : op(OpKind::kDgramSend, r, i) {}
  Op op;
  msghdr msg{};
  iovec iov{};
  size_t item = 0;  // index into DgramState::tx
};

struct DgramState {
  // Both fixed in size at attach (Op addresses are user_data).
  std::vector<std::unique_ptr<DgramRecvSlot>> rx;
  std::vector<std::unique_ptr<DgramSendSlot>> txs;
  DatagramQueue held;  // received while want_read() was off (or behind
                       // such), delivered in order once it is on again
  DatagramQueue tx;    // the batch being sent: owned here, stable
  size_t tx_next = 0;  // next item of tx to submit
  std::deque<size_t> tx_retry;  // items to submit again (EAGAIN ...)
  unsigned tx_inflight = 0;     // send slots in use
  unsigned retry_rounds = 0;    // timer rounds since a datagram last left
  bool tx_wait = false;         // resubmit only after the timer fires
  bool rx_backoff = false;      // re-arm receives only after the timer
  bool received_any = false;
  unsigned rx_errors = 0;       // consecutive non-fatal receive errors

  bool tx_batch_done() const {
    return tx_inflight == 0 && tx_next >= tx.size() && tx_retry.empty();
  }
};

struct ChanRec {
  explicit ChanRec(Channel* c)
      : ch(c),
        fd(c->fd()),
        ops{Op(c->kind() == Channel::Kind::kListener ? OpKind::kAccept : OpKind::kRecv, this),
            Op(c->kind() == Channel::Kind::kStream ? OpKind::kSend : OpKind::kTimer, this)} {}
  ChanRec(const ChanRec&) = delete;
  ChanRec& operator=(const ChanRec&) = delete;

  // Two op slots, by channel kind: a listener accepts and backs off on a
  // timer, a stream receives and sends, a datagram channel only uses the
  // timer (its receives and sends are DgramState's). Four named ops cost
  // every connection 96 bytes for two it never uses.
  Op& accept() { return ops[0]; }
  Op& recv() { return ops[0]; }
  Op& send() { return ops[1]; }
  Op& timer() { return ops[1]; }

  // What few channels need (input held while paused, the single-shot recv
  // fallback's buffer, a timer's timespec), kept out of line: this record
  // is per connection, and at 120 bytes it fits a 128-byte heap chunk.
  struct Extra {
    Buffer held;                      // received while want_read() was off
    std::unique_ptr<char[]> scratch;  // single-shot recv fallback
    __kernel_timespec ts{};           // accept backoff / datagram retry
  };
  Extra& extra() {
    if (!x) x = std::make_unique<Extra>();
    return *x;
  }
  bool holds_input() const { return x && !x->held.empty(); }

  Channel* ch;  // valid until on_detached
  int fd;
  unsigned inflight = 0;  // ops + cancels whose final CQE is outstanding
  uint32_t index = 0;     // in UringBackendImpl::recs_
  uint16_t accept_errors = 0;  // consecutive (saturating)
  bool detached : 1 = false;
  bool eof : 1 = false;
  bool errored : 1 = false;
  bool queued : 1 = false;  // in pending_
  bool logged : 1 = false;
  bool accepted_any : 1 = false;
  bool received_any : 1 = false;
  bool held_eof : 1 = false;  // on_eof not yet called
  Op ops[2];
  Buffer sending;                 // in flight: owned here, stable for the kernel
  std::unique_ptr<Extra> x;       // see Extra
  std::unique_ptr<DgramState> dg;  // datagram channels only
};

struct UringChannelState final : ChannelState {
  ChanRec* rec = nullptr;
};

inline uint64_t ud_of(Op* op) { return reinterpret_cast<uintptr_t>(op); }
inline uint64_t ud_cancel_of(Op* op) { return ud_of(op) | 1u; }

class UringBackendImpl final : public UringBackend {
 public:
  UringBackendImpl() : wake_op_(OpKind::kWake) {}
  ~UringBackendImpl() override;

  bool init(const BackendOptions& options, const UringTuning& tuning);

  std::string_view name() const override { return "uring"; }
  int attach(Channel& ch) override;
  void update(Channel& ch) override;
  void detach(Channel& ch) override;
  int wait(std::chrono::milliseconds timeout) override;
  void wakeup() override;

  const UringInfo& info() const override { return info_; }
  const UringStats& stats() const override { return stats_; }

 private:
  struct Cqe {
    uint64_t ud;
    int32_t res;
    uint32_t flags;
  };

  static ChanRec* rec_of(Channel& ch) {
    auto* st = dynamic_cast<UringChannelState*>(ch.io.get());
    return st ? st->rec : nullptr;
  }
  // The provided buffer a CQE carries, or -1.
  static int buffer_id(const Cqe& c) {
    return (c.flags & IORING_CQE_F_BUFFER)
               ? static_cast<int>(c.flags >> IORING_CQE_BUFFER_SHIFT)
               : -1;
  }

  int ensure_enabled();
  io_uring_sqe* get_sqe();
  void track(Op* op, io_uring_sqe* sqe);
  void finish(Op* op);
  bool finish_if_final(Op* op, const Cqe& c);
  bool send_cancel(Op* op);
  bool arm_accept(ChanRec* r);
  bool arm_recv(ChanRec* r);
  bool arm_send(ChanRec* r);
  bool arm_timer(ChanRec* r, unsigned ms);
  bool arm_wake();
  bool arm_recvmsg(ChanRec* r, DgramRecvSlot& s);
  bool arm_sendmsg(ChanRec* r, DgramSendSlot& s, size_t item);
  void recycle(int bid) {
#if defined(SLUICE_FAULTS)
    if (bid >= 0 && withhold(stream_ring_, bid)) return;
#endif
    stream_ring_.recycle(bid);
  }
  void recycle_dgram(int bid) {
#if defined(SLUICE_FAULTS)
    if (bid >= 0 && withhold(dgram_ring_, bid)) return;
#endif
    dgram_ring_.recycle(bid);
  }
#if defined(SLUICE_FAULTS)
  // io/uring_faults.cc: buffers held back from the rings, and the faults
  // made once per wait() (a withholding episode, a real cancel).
  bool withhold(BufRing& ring, int bid);
  void inject_faults();
  std::vector<std::pair<BufRing*, int>> withheld_;
  bool withholding_ = false;
  bool ran_dry_ = false;  // -ENOBUFS seen during this episode
#endif
  template <class F>
  void for_each_op(ChanRec* r, F&& f);
  void sync(ChanRec* r);
  bool sync_listener(ChanRec* r);
  bool sync_stream(ChanRec* r);
  bool sync_dgram(ChanRec* r);
  bool pump_sends(ChanRec* r);
  bool has_held(ChanRec* r) const {
    return r->holds_input() || r->held_eof || (r->dg && !r->dg->held.empty());
  }
  void queue(ChanRec* r);
  void after(ChanRec* r);
  void fail(ChanRec* r, int err, const char* what);
  int process_pending();
  int deliver_held(ChanRec* r);
  int deliver_held_dgrams(ChanRec* r);
  void finalize(ChanRec* r);
  size_t reap(std::vector<Cqe>& out);
  int dispatch(const Cqe& c);
  int on_accept_cqe(ChanRec* r, const Cqe& c);
  int on_recv_cqe(ChanRec* r, const Cqe& c);
  int on_send_cqe(ChanRec* r, const Cqe& c);
  int on_timer_cqe(ChanRec* r, const Cqe& c);
  int on_dgram_recv_cqe(Op* op, const Cqe& c);
  int on_dgram_send_cqe(Op* op, const Cqe& c);
  void on_wake_cqe(const Cqe& c);
  void drain_for_exit();

  io_uring ring_{};
  bool ring_ok_ = false;
  bool r_disabled_ = false;
  bool enabled_ = false;
  std::thread::id loop_tid_;
  bool closing_ = false;
  bool in_wait_ = false;

  int wake_fd_ = -1;
  Op wake_op_;
  uint64_t wake_buf_ = 0;
  std::atomic<bool> wake_pending_{false};

  BufRing stream_ring_;  // group kBufGroup: multishot recv on streams
  BufRing dgram_ring_;   // group kDgramGroup: multishot recvmsg

  bool ms_accept_ = false;
  bool ms_recv_ = false;
  bool buf_ring_ = false;
  bool dgram_ok_ = false;    // IORING_OP_RECVMSG and SENDMSG supported
  bool ms_recvmsg_ = false;  // multishot recvmsg into dgram_ring_
  size_t dgram_cap_ = 0;     // payload bytes one receive can take
  unsigned dgram_recv_depth_ = 1;  // single-shot recvmsg ops per channel
  unsigned dgram_send_depth_ = 1;  // sendmsg ops in flight per channel

  UringTuning tuning_;
  UringInfo info_;
  UringStats stats_;

  std::vector<std::unique_ptr<ChanRec>> recs_;  // ChanRec::index: its slot
  std::vector<ChanRec*> pending_;
  uint64_t outstanding_ = 0;  // tracked SQEs whose final CQE is not reaped
  bool submit_error_logged_ = false;
  bool wrong_thread_logged_ = false;
};

}  // namespace sluice::io::uring_internal
