// The io_uring back end. See io/uring.h for the model; the notes here are
// about lifetimes.
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
#include "io/uring.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

namespace sluice::io {
namespace {

constexpr unsigned kMaxEntries = 32768;      // IORING_MAX_ENTRIES
constexpr unsigned kMaxBufRing = 32768;      // kernel limit for ring_entries
constexpr uint16_t kBufGroup = 0;            // provided buffers for streams
constexpr uint16_t kDgramGroup = 1;          // ... and for datagrams
constexpr size_t kScratchSize = 16 * 1024;   // single-shot recv fallback
// What multishot recvmsg writes in front of each payload: the out header
// and room for any source address (we ask for no control data).
constexpr size_t kDgramHeader =
    sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_storage);
// Default datagram buffer: exactly one kMaxDatagram payload plus header.
constexpr size_t kDgramDefaultBufSize = kMaxDatagram + kDgramHeader;
// Consecutive non-fatal receive errors before re-arming waits for a timer.
constexpr unsigned kDgramErrorsBeforeBackoff = 16;
// Pause before retrying sends after EAGAIN/ENOBUFS, or re-arming receives
// after an error burst.
constexpr unsigned kDgramRetryMs = 1;
// Consecutive retry rounds without any datagram leaving (~1 s at 1 ms)
// before the rest of the batch is dropped.
constexpr unsigned kDgramMaxRetryRounds = 1000;
constexpr size_t kMaxSendLen = 1u << 30;     // SQE len is 32-bit
constexpr size_t kShrinkAbove = 1u << 20;    // drop big idle send buffers
constexpr unsigned kAcceptErrorsBeforeBackoff = 3;

std::string errno_name(int err) {  // err > 0
  const char* name = strerrorname_np(err);
  std::string s = name ? name : std::to_string(err);
  s += " (";
  s += std::strerror(err);
  s += ")";
  return s;
}

int read_sysctl_int(const char* path) {
  FILE* f = std::fopen(path, "re");
  if (!f) return -1;
  int v = -1;
  if (std::fscanf(f, "%d", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

// Opcodes and features the back end cannot do without. Empty if all there.
std::string missing_kernel_support(io_uring* ring, unsigned features) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (!probe) return "IORING_REGISTER_PROBE unsupported (kernel older than 5.6)";
  struct {
    int op;
    const char* name;
  } const needed[] = {
      {IORING_OP_ACCEPT, "IORING_OP_ACCEPT"},
      {IORING_OP_RECV, "IORING_OP_RECV"},
      {IORING_OP_SEND, "IORING_OP_SEND"},
      {IORING_OP_READ, "IORING_OP_READ"},
      {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"},
      {IORING_OP_TIMEOUT, "IORING_OP_TIMEOUT"},
      {IORING_OP_TIMEOUT_REMOVE, "IORING_OP_TIMEOUT_REMOVE"},
  };
  std::string missing;
  for (const auto& n : needed) {
    if (!io_uring_opcode_supported(probe, n.op)) {
      missing += missing.empty() ? "" : ", ";
      missing += n.name;
    }
  }
  io_uring_free_probe(probe);
  if (!missing.empty()) return "kernel lacks " + missing;
  if (!(features & IORING_FEAT_FAST_POLL)) {
    return "kernel lacks IORING_FEAT_FAST_POLL (older than 5.7): socket ops "
           "would park in io-wq threads";
  }
  return {};
}

bool opcodes_supported(io_uring* ring, std::initializer_list<int> ops) {
  io_uring_probe* probe = io_uring_get_probe_ring(ring);
  if (!probe) return false;
  bool all = true;
  for (int op : ops) all = all && io_uring_opcode_supported(probe, op);
  io_uring_free_probe(probe);
  return all;
}

std::string setup_error(int err) {  // err > 0, from io_uring_setup
  int disabled = read_sysctl_int("/proc/sys/kernel/io_uring_disabled");
  switch (err) {
    case ENOSYS:
      return "io_uring_setup: ENOSYS (kernel built without io_uring, or the "
             "syscall is filtered by seccomp)";
    case EPERM:
      if (disabled == 1) {
        return "io_uring_setup: EPERM (sysctl kernel.io_uring_disabled=1 and "
               "this process is neither in kernel.io_uring_group nor "
               "CAP_SYS_ADMIN)";
      }
      if (disabled == 2) {
        return "io_uring disabled by sysctl kernel.io_uring_disabled=2";
      }
      return "io_uring_setup: EPERM (blocked by seccomp or container "
             "policy)";
    default:
      return "io_uring_setup: " + errno_name(err);
  }
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
      : kind(k), rec(r), slot(s) {}
  OpKind kind;
  ChanRec* rec;             // null for back-end ops (wake)
  uint32_t slot;            // datagram ops: index into DgramState's slots
  bool inflight = false;    // final CQE not reaped yet
  bool cancel_sent = false; // a cancel for this arming was queued
  bool multishot = false;   // how it was armed
  unsigned cancels = 0;     // cancel SQEs aimed at it, CQE not reaped yet
  size_t len = 0;           // send: bytes in the SQE
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
  ChanRec(Channel* c)
      : ch(c),
        fd(c->fd()),
        accept(OpKind::kAccept, this),
        recv(OpKind::kRecv, this),
        send(OpKind::kSend, this),
        timer(OpKind::kTimer, this) {}

  Channel* ch;  // valid until on_detached
  int fd;
  Op accept, recv, send, timer;
  unsigned inflight = 0;  // ops + cancels whose final CQE is outstanding
  bool detached = false;
  bool eof = false;
  bool errored = false;
  bool queued = false;  // in pending_
  bool logged = false;
  bool accepted_any = false;
  bool received_any = false;
  unsigned accept_errors = 0;  // consecutive
  size_t held = 0;             // appended to input, on_input not yet called
  bool held_eof = false;       // on_eof not yet called
  Buffer sending;              // in flight: owned here, stable for the kernel
  std::unique_ptr<char[]> scratch;  // single-shot recv fallback
  __kernel_timespec ts{};           // accept backoff / datagram retry
  std::unique_ptr<DgramState> dg;   // datagram channels only
};

// A provided-buffer ring (one buffer group): count buffers of size bytes,
// mmap'ed (address space only until the kernel fills them).
struct BufRing {
  io_uring_buf_ring* br = nullptr;
  size_t br_bytes = 0;
  char* bufs = nullptr;
  size_t bufs_bytes = 0;
  unsigned count = 0;
  unsigned size = 0;
  int mask = 0;
  uint16_t bgid = 0;

  bool ok() const { return br != nullptr; }
  char* buf(int bid) const { return bufs + size_t(bid) * size; }

  // Rounds count down to a power of two (with a warn line). Logs and
  // returns false on failure (then nothing is left mapped).
  bool setup(io_uring* ring, unsigned want_count, unsigned want_size,
             uint16_t group, const char* what) {
    unsigned n = std::clamp(want_count, 1u, kMaxBufRing);
    if (n & (n - 1)) {  // round down to a power of two
      unsigned pow = 1;
      while (pow * 2 <= n) pow *= 2;
      spdlog::warn("uring: {} buf_count {} is not a power of two, using {}",
                   what, n, pow);
      n = pow;
    }
    long page = ::sysconf(_SC_PAGESIZE);
    br_bytes = n * sizeof(io_uring_buf);
    br_bytes = (br_bytes + page - 1) / page * page;
    bufs_bytes = size_t{n} * want_size;
    void* brm = ::mmap(nullptr, br_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void* bm = ::mmap(nullptr, bufs_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (brm == MAP_FAILED || bm == MAP_FAILED) {
      int err = errno;
      spdlog::warn("uring: mmap for {} buffer ring failed: {}", what,
                   errno_name(err));
      if (brm != MAP_FAILED) ::munmap(brm, br_bytes);
      if (bm != MAP_FAILED) ::munmap(bm, bufs_bytes);
      return false;
    }
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uintptr_t>(brm);
    reg.ring_entries = n;
    reg.bgid = group;
    int r = io_uring_register_buf_ring(ring, &reg, 0);
    if (r < 0) {
      spdlog::info("uring: no provided-buffer ring for {} ({})", what,
                   errno_name(-r));
      ::munmap(brm, br_bytes);
      ::munmap(bm, bufs_bytes);
      return false;
    }
    br = static_cast<io_uring_buf_ring*>(brm);
    bufs = static_cast<char*>(bm);
    count = n;
    size = want_size;
    bgid = group;
    mask = io_uring_buf_ring_mask(n);
    io_uring_buf_ring_init(br);
    for (unsigned i = 0; i < n; ++i) {
      io_uring_buf_ring_add(br, buf(static_cast<int>(i)), size,
                            static_cast<unsigned short>(i), mask,
                            static_cast<int>(i));
    }
    io_uring_buf_ring_advance(br, static_cast<int>(n));
    return true;
  }

  // Gives buffer bid back to the kernel (bid < 0: none).
  void recycle(int bid) {
    if (bid < 0 || !br) return;
    io_uring_buf_ring_add(br, buf(bid), size, static_cast<unsigned short>(bid),
                          mask, 0);
    io_uring_buf_ring_advance(br, 1);
  }

  // After the ring is gone.
  void release() {
    if (br) ::munmap(br, br_bytes);
    if (bufs) ::munmap(bufs, bufs_bytes);
    br = nullptr;
    bufs = nullptr;
  }
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

  int ensure_enabled();
  io_uring_sqe* get_sqe();
  void track(Op* op, io_uring_sqe* sqe);
  void finish(Op* op);
  bool send_cancel(Op* op);
  bool arm_accept(ChanRec* r);
  bool arm_recv(ChanRec* r);
  bool arm_send(ChanRec* r);
  bool arm_timer(ChanRec* r, unsigned ms);
  bool arm_wake();
  bool arm_recvmsg(ChanRec* r, DgramRecvSlot& s);
  bool arm_sendmsg(ChanRec* r, DgramSendSlot& s, size_t item);
  void recycle(int bid) { stream_ring_.recycle(bid); }
  template <class F>
  void for_each_op(ChanRec* r, F&& f);
  void sync(ChanRec* r);
  bool sync_dgram(ChanRec* r);
  bool pump_sends(ChanRec* r);
  bool has_held(ChanRec* r) const {
    return r->held > 0 || r->held_eof || (r->dg && !r->dg->held.empty());
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

  std::unordered_map<ChanRec*, std::unique_ptr<ChanRec>> recs_;
  std::vector<ChanRec*> pending_;
  uint64_t outstanding_ = 0;  // tracked SQEs whose final CQE is not reaped
  bool submit_error_logged_ = false;
  bool wrong_thread_logged_ = false;
};

// ---------------------------------------------------------------- setup --

bool UringBackendImpl::init(const BackendOptions& options,
                            const UringTuning& tuning) {
  tuning_ = tuning;
  unsigned entries = std::clamp(options.uring_entries, 8u, kMaxEntries);

  static constexpr unsigned kTiers[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
          IORING_SETUP_SUBMIT_ALL | IORING_SETUP_R_DISABLED,
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
          IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL |
          IORING_SETUP_R_DISABLED,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
          IORING_SETUP_SUBMIT_ALL,
      IORING_SETUP_SUBMIT_ALL,
      0,
  };
  io_uring_params p{};
  int rc = -EINVAL;
  for (size_t tier = tuning.first_setup_tier; tier < std::size(kTiers);
       ++tier) {
    unsigned flags = kTiers[tier];
    p = io_uring_params{};
    p.flags = flags;
    rc = io_uring_queue_init_params(entries, &ring_, &p);
    if (rc == 0) break;
    if (rc != -EINVAL) break;
    spdlog::debug("uring: setup flags {} rejected (EINVAL), trying fewer",
                  describe_uring_setup_flags(flags));
  }
  if (rc < 0) {
    spdlog::error("uring: cannot create ring: {}", setup_error(-rc));
    return false;
  }
  ring_ok_ = true;
  r_disabled_ = (p.flags & IORING_SETUP_R_DISABLED) != 0;
  info_.setup_flags = p.flags;
  info_.features = p.features;
  info_.sq_entries = p.sq_entries;
  info_.cq_entries = p.cq_entries;

  std::string missing = missing_kernel_support(&ring_, p.features);
  if (!missing.empty()) {
    spdlog::error("uring: unusable here: {}", missing);
    return false;
  }

  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    int err = errno;
    spdlog::error("uring: eventfd: {}", errno_name(err));
    return false;
  }

  // Which generation of io_uring is this? SINGLE_ISSUER means 6.0+ (which
  // has multishot recv, multishot accept and buffer rings); COOP_TASKRUN
  // means 5.19+ (multishot accept). Older rings get the single-shot paths.
  // The buffer ring only serves multishot recv, so it is set up on 6.0+
  // only. An EINVAL from a multishot op at run time also switches to the
  // fallback.
  bool k60 = (p.flags & IORING_SETUP_SINGLE_ISSUER) != 0;
  bool k519 = k60 || (p.flags & IORING_SETUP_COOP_TASKRUN) != 0;

  if (!tuning.disable_buf_ring && k60) {
    buf_ring_ = stream_ring_.setup(&ring_, tuning.buf_count,
                                   std::max(tuning.buf_size, 64u), kBufGroup,
                                   "streams");
  }
  ms_recv_ = buf_ring_ && k60;
  ms_accept_ = k519 && !tuning.disable_multishot_accept;

  // Datagrams: IORING_OP_RECVMSG/SENDMSG (5.3+). Multishot recvmsg (6.0+)
  // takes provided buffers from a group of its own, each buffer holding
  // the recvmsg_out header, the source address and the payload.
  dgram_ok_ = opcodes_supported(&ring_, {IORING_OP_RECVMSG,
                                         IORING_OP_SENDMSG});
  size_t dgram_size = tuning.dgram_buf_size == 0
                          ? kDgramDefaultBufSize
                          : std::max<size_t>(tuning.dgram_buf_size,
                                             kDgramHeader + 64);
  // A multiple of 16 keeps every buffer's sockaddr (at +16) aligned.
  dgram_size = std::min<size_t>((dgram_size + 15) & ~size_t{15},
                                kDgramDefaultBufSize);
  static_assert(kDgramDefaultBufSize % 16 == 0);
  dgram_cap_ = dgram_size - kDgramHeader;
  dgram_recv_depth_ = std::clamp(tuning.dgram_recv_depth, 1u, 1024u);
  dgram_send_depth_ = std::clamp(tuning.dgram_send_depth, 1u, 4096u);
  if (dgram_ok_ && k60 && !tuning.disable_multishot_recvmsg) {
    ms_recvmsg_ = dgram_ring_.setup(&ring_, tuning.dgram_buf_count,
                                    static_cast<unsigned>(dgram_size),
                                    kDgramGroup, "datagrams");
  }
  if (!dgram_ok_) {
    spdlog::info("uring: kernel lacks IORING_OP_RECVMSG/SENDMSG: datagram "
                 "channels cannot be attached");
  }

  info_.multishot_accept = ms_accept_;
  info_.multishot_recv = ms_recv_;
  info_.buf_ring = buf_ring_;
  info_.buf_count = stream_ring_.count;
  info_.buf_size = stream_ring_.size;
  info_.datagrams = dgram_ok_;
  info_.multishot_recvmsg = ms_recvmsg_;
  info_.dgram_buf_count = dgram_ring_.count;
  info_.dgram_buf_size = dgram_ring_.size;
  info_.dgram_payload_cap = static_cast<unsigned>(dgram_cap_);

  // Queued now, submitted by the first wait() on the loop thread.
  arm_wake();
  spdlog::info("uring backend: {}", info_.describe());
  return true;
}

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
  for (auto& [key, rec] : recs_) {
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
    int ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN &&
        ret != -EBUSY) {
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

int UringBackendImpl::ensure_enabled() {
  if (enabled_) return 0;
  if (r_disabled_) {
    long r = ::syscall(__NR_io_uring_register, ring_.ring_fd,
                       IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
    if (r < 0) {
      int err = errno;
      spdlog::error("uring: enabling the ring failed: {}", errno_name(err));
      return -err;
    }
  }
  enabled_ = true;
  loop_tid_ = std::this_thread::get_id();
  return 0;
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

bool UringBackendImpl::arm_accept(ChanRec* r) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  if (ms_accept_) {
    io_uring_prep_multishot_accept(sqe, r->fd, nullptr, nullptr, SOCK_CLOEXEC);
  } else {
    io_uring_prep_accept(sqe, r->fd, nullptr, nullptr, SOCK_CLOEXEC);
  }
  r->accept.multishot = ms_accept_;
  track(&r->accept, sqe);
  ++stats_.accept_arms;
  return true;
}

bool UringBackendImpl::arm_recv(ChanRec* r) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  if (ms_recv_) {
    io_uring_prep_recv_multishot(sqe, r->fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufGroup;
  } else {
    if (!r->scratch) r->scratch = std::make_unique<char[]>(kScratchSize);
    io_uring_prep_recv(sqe, r->fd, r->scratch.get(), kScratchSize, 0);
  }
  r->recv.multishot = ms_recv_;
  track(&r->recv, sqe);
  ++stats_.recv_arms;
  return true;
}

bool UringBackendImpl::arm_send(ChanRec* r) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  size_t len = std::min(r->sending.readable(), kMaxSendLen);
  io_uring_prep_send(sqe, r->fd, r->sending.peek(), len, MSG_NOSIGNAL);
  r->send.len = len;
  track(&r->send, sqe);
  ++stats_.sends;
  return true;
}

bool UringBackendImpl::arm_timer(ChanRec* r, unsigned ms) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  r->ts.tv_sec = ms / 1000;
  r->ts.tv_nsec = static_cast<long long>(ms % 1000) * 1000 * 1000;
  io_uring_prep_timeout(sqe, &r->ts, 0, 0);
  track(&r->timer, sqe);
  return true;
}

bool UringBackendImpl::arm_recvmsg(ChanRec* r, DgramRecvSlot& s) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  s.msg = msghdr{};
  if (ms_recvmsg_) {
    // The kernel lays out [recvmsg_out][name: msg_namelen][payload] in
    // each provided buffer; msg_name itself is not used.
    s.msg.msg_namelen = sizeof(sockaddr_storage);
    io_uring_prep_recvmsg_multishot(sqe, r->fd, &s.msg, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kDgramGroup;
  } else {
    if (!s.buf) s.buf = std::make_unique<char[]>(dgram_cap_);
    s.iov = {s.buf.get(), dgram_cap_};
    s.msg.msg_name = &s.addr;
    s.msg.msg_namelen = sizeof s.addr;
    s.msg.msg_iov = &s.iov;
    s.msg.msg_iovlen = 1;
    io_uring_prep_recvmsg(sqe, r->fd, &s.msg, 0);
  }
  s.op.multishot = ms_recvmsg_;
  track(&s.op, sqe);
  ++stats_.dgram_recv_arms;
  return true;
}

bool UringBackendImpl::arm_sendmsg(ChanRec* r, DgramSendSlot& s, size_t item) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  DgramState& d = *r->dg;
  const DatagramQueue::Item& it = d.tx.item(item);
  std::string_view p = d.tx.payload(it);
  s.iov = {const_cast<char*>(p.data()), p.size()};
  s.msg = msghdr{};
  if (it.addr_len > 0) {  // none: the connected peer
    s.msg.msg_name = const_cast<sockaddr_storage*>(&it.addr);
    s.msg.msg_namelen = it.addr_len;
  }
  s.msg.msg_iov = &s.iov;
  s.msg.msg_iovlen = 1;
  unsigned flags = MSG_NOSIGNAL;
  if (tuning_.dgram_send_dontwait) flags |= MSG_DONTWAIT;
  io_uring_prep_sendmsg(sqe, r->fd, &s.msg, flags);
  s.item = item;
  s.op.len = p.size();
  track(&s.op, sqe);
  ++d.tx_inflight;
  ++stats_.dgram_sends;
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
  for (Op* op : {&r->accept, &r->recv, &r->send, &r->timer}) f(op);
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
    if (!ok || (!r->errored && ch.want_read() && has_held(r))) queue(r);
    return;
  }
  if (ch.kind() == Channel::Kind::kListener) {
    if (ch.want_read()) {
      if (!r->accept.inflight && r->accept.cancels == 0 && !r->timer.inflight)
        ok = arm_accept(r);
    } else if (r->accept.inflight && !r->accept.cancel_sent) {
      ok = send_cancel(&r->accept);
    }
    if (!ok) queue(r);
    return;
  }
  bool want = ch.want_read() && !r->eof && !r->errored;
  if (want) {
    // A cancel still aimed at the previous recv could hit a new one with
    // the same user_data: wait for its CQE before re-arming.
    if (!r->recv.inflight && r->recv.cancels == 0) ok = arm_recv(r);
  } else if (r->recv.inflight && !r->recv.cancel_sent) {
    ok = send_cancel(&r->recv);
  }
  if (ok && !r->errored && !r->send.inflight) {
    if (r->sending.empty() && !ch.output().empty()) {
      r->sending.swap(ch.output());
    }
    if (!r->sending.empty()) ok = arm_send(r);
  }
  if (!ok || (!r->errored && ch.want_read() && has_held(r))) queue(r);
}

// The datagram part of sync(): receives armed (or cancelled) as
// want_read() says, queued datagrams handed to sendmsg. False if the SQ
// could not take everything (the caller queues r for a retry).
bool UringBackendImpl::sync_dgram(ChanRec* r) {
  DgramState& d = *r->dg;
  Channel& ch = *r->ch;
  bool ok = true;
  if (ch.want_read() && !r->eof && !r->errored) {
    if (!d.rx_backoff) {
      // Multishot: slot 0 alone. Single-shot: every slot kept in flight.
      size_t n = ms_recvmsg_ ? 1 : d.rx.size();
      for (size_t i = 0; ok && i < n; ++i) {
        DgramRecvSlot& s = *d.rx[i];
        // As for streams: a cancel still aimed at the slot's previous
        // arming could hit a new one with the same user_data.
        if (!s.op.inflight && s.op.cancels == 0 && !s.lent) {
          ok = arm_recvmsg(r, s);
        }
      }
    }
  } else {
    for (auto& s : d.rx) {
      if (ok && s->op.inflight && !s->op.cancel_sent) ok = send_cancel(&s->op);
    }
  }
  if (ok && !r->errored && !d.tx_wait) ok = pump_sends(r);
  if (ok && (d.tx_wait || d.rx_backoff) && !r->timer.inflight &&
      r->timer.cancels == 0) {
    ok = arm_timer(r, kDgramRetryMs);
  }
  return ok;
}

// Submits sendmsg for datagrams of the current batch (retries first),
// up to dgram_send_depth_ in flight; starts the next batch (takes the
// channel's queue) when the current one is done.
bool UringBackendImpl::pump_sends(ChanRec* r) {
  DgramState& d = *r->dg;
  Channel& ch = *r->ch;
  if (d.tx_batch_done()) {
    if (!d.tx.empty()) d.tx.pop(d.tx.size());
    d.tx_next = 0;
    if (!ch.datagrams().empty()) std::swap(d.tx, ch.datagrams());
  }
  // While retrying after EAGAIN/ENOBUFS, one datagram probes the socket;
  // the full pipeline resumes once one leaves (retry_rounds back to 0).
  size_t limit = d.retry_rounds > 0 ? 1 : d.txs.size();
  size_t free_hint = 0;
  while (d.tx_inflight < limit &&
         (!d.tx_retry.empty() || d.tx_next < d.tx.size())) {
    DgramSendSlot* slot = nullptr;
    for (; free_hint < d.txs.size(); ++free_hint) {
      DgramSendSlot& s = *d.txs[free_hint];
      if (!s.op.inflight && s.op.cancels == 0) {
        slot = &s;
        break;
      }
    }
    if (!slot) break;
    bool retry = !d.tx_retry.empty();
    size_t item = retry ? d.tx_retry.front() : d.tx_next;
    if (!arm_sendmsg(r, *slot, item)) return false;
    if (retry) {
      d.tx_retry.pop_front();
    } else {
      ++d.tx_next;
    }
  }
  return true;
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
  recs_.emplace(r, std::move(rec));
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

  int n = process_pending();
  if (!wake_op_.inflight) arm_wake();

  io_uring_cqe* cqe = nullptr;
  int ret;
  bool poll = n > 0 || !pending_.empty() || timeout.count() == 0;
  if (!poll && timeout.count() < 0) {
    ret = io_uring_submit_and_wait(&ring_, 1);
  } else {
    long long ms = poll ? 0 : timeout.count();
    __kernel_timespec ts{};
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000 * 1000;
    ret = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN &&
      ret != -EBUSY) {
    spdlog::error("uring: submit/wait failed: {}", errno_name(-ret));
    return ret;
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
  if (c.res < 0 && c.res != -ECANCELED && c.res != -EINTR &&
      c.res != -EAGAIN) {
    spdlog::warn("uring: wake read failed: {}", errno_name(-c.res));
  }
  if (!closing_) arm_wake();
}

static bool is_resource_error(int err) {
  return err == -EMFILE || err == -ENFILE || err == -ENOBUFS ||
         err == -ENOMEM;
}

int UringBackendImpl::on_accept_cqe(ChanRec* r, const Cqe& c) {
  Op& op = r->accept;
  bool final = !(c.flags & IORING_CQE_F_MORE);
  bool was_multishot = op.multishot;
  if (final) {
    finish(&op);
  } else if (op.cancel_sent && op.cancels == 0) {
    op.cancel_sent = false;  // the cancel missed it: after() sends another
  }
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
    } else if (err == -ECANCELED || err == -EINTR || err == -EAGAIN) {
      // our own cancel (want_read off) or an interrupted attempt: re-arm
    } else {
      if (++r->accept_errors == 1) {
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

int UringBackendImpl::on_timer_cqe(ChanRec* r, const Cqe&) {
  finish(&r->timer);
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
      }
    }
  }
  after(r);
  return 0;
}

static bool is_fatal_dgram_recv_error(int err) {
  // Errors that make the socket itself unusable. Everything else (ICMP
  // reports of earlier sends: ECONNREFUSED, EHOSTUNREACH ...; ENOMEM ...)
  // concerns one datagram or peer.
  return err == -EBADF || err == -ENOTSOCK || err == -EFAULT ||
         err == -EOPNOTSUPP || err == -EINVAL;
}

int UringBackendImpl::on_dgram_recv_cqe(Op* op, const Cqe& c) {
  ChanRec* r = op->rec;
  DgramState& d = *r->dg;
  DgramRecvSlot& s = *d.rx[op->slot];
  bool final = !(c.flags & IORING_CQE_F_MORE);
  bool was_multishot = op->multishot;
  if (final) {
    finish(op);
  } else if (op->cancel_sent && op->cancels == 0) {
    op->cancel_sent = false;  // the cancel missed it: after() sends another
  }
  int bid = (c.flags & IORING_CQE_F_BUFFER)
                ? static_cast<int>(c.flags >> IORING_CQE_BUFFER_SHIFT)
                : -1;
  if (r->detached || r->errored || r->eof) {
    dgram_ring_.recycle(bid);
    after(r);
    return 0;
  }
  Channel& ch = *r->ch;
  int n = 0;
  if (c.res >= 0) {
    const sockaddr* addr = nullptr;
    socklen_t addr_len = 0;
    std::string_view data;
    bool truncated = false;
    bool valid = true;
    if (was_multishot) {
      msghdr mh{};
      mh.msg_namelen = sizeof(sockaddr_storage);
      io_uring_recvmsg_out* o =
          bid < 0 ? nullptr
                  : io_uring_recvmsg_validate(dgram_ring_.buf(bid), c.res, &mh);
      if (!o) {
        valid = false;
      } else {
        addr = static_cast<const sockaddr*>(io_uring_recvmsg_name(o));
        addr_len = std::min<socklen_t>(o->namelen, mh.msg_namelen);
        size_t len = io_uring_recvmsg_payload_length(o, c.res, &mh);
        data = {static_cast<const char*>(io_uring_recvmsg_payload(o, &mh)),
                len};
        truncated = (o->flags & MSG_TRUNC) != 0 || o->payloadlen > len;
      }
    } else {
      addr = reinterpret_cast<const sockaddr*>(&s.addr);
      addr_len = std::min<socklen_t>(s.msg.msg_namelen, sizeof s.addr);
      data = {s.buf.get(), static_cast<size_t>(c.res)};
      truncated = (s.msg.msg_flags & MSG_TRUNC) != 0;
    }
    if (!valid) {
      dgram_ring_.recycle(bid);
      fail(r, -EIO, "recvmsg (no or short buffer in CQE)");
      after(r);
      return 1;
    }
    if (data.empty() && addr_len == 0) {
      // 0 bytes from nobody: the read side was shut down. Stop receiving
      // (re-arming would complete at once, forever).
      r->eof = true;
      spdlog::warn("uring: udp fd {}: read side shut down, receiving stops",
                   r->fd);
    } else if (truncated) {
      ++stats_.dgram_truncated;
      spdlog::debug("uring: udp fd {}: dropping a truncated datagram (more "
                    "than {} bytes)",
                    r->fd, data.size());
    } else {
      d.received_any = true;
      d.rx_errors = 0;
      ++stats_.dgram_received;
      if (ch.want_read() && d.held.empty()) {
        s.lent = !was_multishot;  // keep sync() from re-arming into it
        ch.on_datagram({addr, addr_len, data});
        s.lent = false;
        ++n;
      } else {
        d.held.push(addr, addr_len, data);  // in order, for later
      }
    }
    dgram_ring_.recycle(bid);
  } else {
    dgram_ring_.recycle(bid);
    int err = c.res;
    if (err == -ENOBUFS && was_multishot) {
      // The datagram ring ran dry (the datagram stays in the socket):
      // every buffer goes back as its CQE is handled, so by the time the
      // re-armed recvmsg (queued by after()) is submitted it is refilled.
      ++stats_.dgram_enobufs;
    } else if (err == -ECANCELED || err == -EINTR || err == -EAGAIN) {
      // our own cancel (want_read off), or interrupted: re-arm if wanted
    } else if (err == -EINVAL && was_multishot && !d.received_any &&
               ms_recvmsg_) {
      ms_recvmsg_ = false;
      info_.multishot_recvmsg = false;
      spdlog::info("uring: multishot recvmsg unsupported (EINVAL), using "
                   "{} single-shot recvmsg per channel",
                   dgram_recv_depth_);
    } else if (is_fatal_dgram_recv_error(err)) {
      fail(r, err, "recvmsg");
      ++n;
    } else {
      ++stats_.dgram_recv_errors;
      spdlog::debug("uring: udp fd {}: recvmsg: {} (not fatal)", r->fd,
                    errno_name(-err));
      if (++d.rx_errors >= kDgramErrorsBeforeBackoff) {
        d.rx_errors = 0;
        d.rx_backoff = true;  // sync() arms the timer; no hot loop
      }
    }
  }
  after(r);
  return n;
}

int UringBackendImpl::on_dgram_send_cqe(Op* op, const Cqe& c) {
  ChanRec* r = op->rec;
  DgramState& d = *r->dg;
  DgramSendSlot& s = *d.txs[op->slot];
  finish(op);
  --d.tx_inflight;
  if (r->detached || r->errored) {
    after(r);
    return 0;
  }
  int err = c.res;
  if (err >= 0) {
    ++stats_.dgram_sent;
    d.retry_rounds = 0;
  } else if (err == -EAGAIN || err == -EWOULDBLOCK || err == -ENOBUFS ||
             err == -ENOMEM || err == -EINTR) {
    // Socket buffer full / transient: send it again after a short pause
    // (sync() arms the timer; the other sends in flight go on).
    ++stats_.dgram_send_retries;
    d.tx_retry.push_back(s.item);
    d.tx_wait = true;
  } else {
    // Refused (EMSGSIZE, unreachable, EPERM, ECONNREFUSED from an earlier
    // ICMP report ...): drop this one, never fatal.
    ++stats_.dgram_dropped;
    spdlog::debug("uring: udp fd {}: dropping a {}-byte datagram: {}", r->fd,
                  op->len, errno_name(-err));
  }
  after(r);  // more of the batch, or the next batch
  return 0;
}

int UringBackendImpl::on_recv_cqe(ChanRec* r, const Cqe& c) {
  Op& op = r->recv;
  bool final = !(c.flags & IORING_CQE_F_MORE);
  bool was_multishot = op.multishot;
  if (final) {
    finish(&op);
  } else if (op.cancel_sent && op.cancels == 0) {
    op.cancel_sent = false;  // the cancel missed it: after() sends another
  }
  const char* data = nullptr;
  int bid = -1;
  if (c.flags & IORING_CQE_F_BUFFER) {
    bid = static_cast<int>(c.flags >> IORING_CQE_BUFFER_SHIFT);
    data = stream_ring_.buf(bid);
  } else if (!was_multishot) {
    data = r->scratch.get();
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
    ch.input().append(data, static_cast<size_t>(c.res));
    recycle(bid);
    r->received_any = true;
    if (ch.want_read() && !r->held_eof) {
      size_t total = static_cast<size_t>(c.res) + r->held;
      r->held = 0;
      ch.on_input(total);
      ++n;
    } else {
      r->held += static_cast<size_t>(c.res);
    }
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
  } else if (c.res == -ECANCELED || c.res == -EINTR || c.res == -EAGAIN) {
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
  Op& op = r->send;
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
    if (r->sending.empty() && r->sending.capacity() > kShrinkAbove) {
      r->sending.shrink();
    }
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

// ------------------------------------------------------------- deferred --

int UringBackendImpl::deliver_held(ChanRec* r) {
  int n = 0;
  if (r->held > 0) {
    size_t h = r->held;
    r->held = 0;
    r->ch->on_input(h);
    ++n;
  }
  if (r->held_eof && !r->detached && !r->errored && r->ch->want_read() &&
      r->held == 0) {
    r->held_eof = false;
    r->ch->on_eof();
    ++n;
  }
  return n;
}

// Datagrams held back while want_read() was off, oldest first, until
// want_read() turns off again (or the channel is detached / failed).
int UringBackendImpl::deliver_held_dgrams(ChanRec* r) {
  DgramState& d = *r->dg;
  int n = 0;
  while (!d.held.empty() && !r->detached && !r->errored &&
         r->ch->want_read()) {
    // Only CQE handling pushes to held, never a callback: the views stay
    // valid through the call.
    const DatagramQueue::Item& it = d.held.item(0);
    r->ch->on_datagram({reinterpret_cast<const sockaddr*>(&it.addr),
                        it.addr_len, d.held.payload(it)});
    d.held.pop(1);
    ++n;
  }
  return n;
}

void UringBackendImpl::finalize(ChanRec* r) {
  Channel* ch = r->ch;
  recs_.erase(r);  // frees r (in-flight send buffer, scratch)
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

}  // namespace

// ----------------------------------------------------------- public API --

std::string describe_uring_setup_flags(unsigned flags) {
  struct {
    unsigned bit;
    const char* name;
  } const names[] = {
      {IORING_SETUP_IOPOLL, "IOPOLL"},
      {IORING_SETUP_SQPOLL, "SQPOLL"},
      {IORING_SETUP_SQ_AFF, "SQ_AFF"},
      {IORING_SETUP_CQSIZE, "CQSIZE"},
      {IORING_SETUP_CLAMP, "CLAMP"},
      {IORING_SETUP_ATTACH_WQ, "ATTACH_WQ"},
      {IORING_SETUP_R_DISABLED, "R_DISABLED"},
      {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},
      {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
      {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
      {IORING_SETUP_SQE128, "SQE128"},
      {IORING_SETUP_CQE32, "CQE32"},
      {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
      {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
  };
  std::string out;
  unsigned rest = flags;
  for (const auto& n : names) {
    if (flags & n.bit) {
      if (!out.empty()) out += '|';
      out += n.name;
      rest &= ~n.bit;
    }
  }
  if (rest) {
    if (!out.empty()) out += '|';
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%x", rest);
    out += hex;
  }
  return out.empty() ? "0" : out;
}

std::string UringInfo::describe() const {
  char feat[16];
  std::snprintf(feat, sizeof feat, "0x%x", features);
  std::string s = "flags=" + describe_uring_setup_flags(setup_flags);
  s += " features=";
  s += feat;
  s += " sq=" + std::to_string(sq_entries);
  s += " cq=" + std::to_string(cq_entries);
  s += " multishot_accept=";
  s += multishot_accept ? "yes" : "no";
  s += " multishot_recv=";
  s += multishot_recv ? "yes" : "no";
  if (buf_ring) {
    s += " buf_ring=" + std::to_string(buf_count) + "x" +
         std::to_string(buf_size);
  } else {
    s += " buf_ring=no";
  }
  if (!datagrams) {
    s += " datagrams=no";
  } else if (multishot_recvmsg) {
    s += " multishot_recvmsg=yes dgram_ring=" +
         std::to_string(dgram_buf_count) + "x" +
         std::to_string(dgram_buf_size);
  } else {
    s += " multishot_recvmsg=no";
  }
  return s;
}

std::string probe_uring() {
  if (read_sysctl_int("/proc/sys/kernel/io_uring_disabled") == 2) {
    return "io_uring disabled by sysctl kernel.io_uring_disabled=2";
  }
  io_uring ring{};
  io_uring_params p{};
  int rc = io_uring_queue_init_params(8, &ring, &p);
  if (rc < 0) return setup_error(-rc);
  std::string why = missing_kernel_support(&ring, p.features);
  if (why.empty()) {
    // Setup can pass while io_uring_enter is filtered: do one NOP.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, 42);
    rc = io_uring_submit(&ring);
    if (rc < 0) {
      why = "io_uring_enter: " + errno_name(-rc);
    } else {
      io_uring_cqe* cqe = nullptr;
      __kernel_timespec ts{1, 0};
      rc = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
      if (rc < 0) {
        why = "io_uring NOP did not complete: " + errno_name(-rc);
      } else {
        io_uring_cqe_seen(&ring, cqe);
      }
    }
  }
  io_uring_queue_exit(&ring);
  return why;
}

std::unique_ptr<UringBackend> make_uring_backend_tuned(
    const BackendOptions& options, const UringTuning& tuning) {
  auto b = std::make_unique<UringBackendImpl>();
  if (!b->init(options, tuning)) return nullptr;
  return b;
}

std::unique_ptr<Backend> make_uring_backend(const BackendOptions& options) {
  return make_uring_backend_tuned(options, UringTuning{});
}

}  // namespace sluice::io
