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
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

namespace sluice::io {
namespace {

constexpr unsigned kMaxEntries = 32768;      // IORING_MAX_ENTRIES
constexpr unsigned kMaxBufRing = 32768;      // kernel limit for ring_entries
constexpr uint16_t kBufGroup = 0;            // our one provided-buffer group
constexpr size_t kScratchSize = 16 * 1024;   // single-shot recv fallback
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

enum class OpKind : uint8_t { kAccept, kRecv, kSend, kTimer, kWake };

struct alignas(8) Op {
  explicit Op(OpKind k, ChanRec* r = nullptr) : kind(k), rec(r) {}
  OpKind kind;
  ChanRec* rec;             // null for back-end ops (wake)
  bool inflight = false;    // final CQE not reaped yet
  bool cancel_sent = false; // a cancel for this arming was queued
  bool multishot = false;   // how it was armed
  unsigned cancels = 0;     // cancel SQEs aimed at it, CQE not reaped yet
  size_t len = 0;           // send: bytes in the SQE
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
  __kernel_timespec ts{};           // accept backoff
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
  bool arm_timer(ChanRec* r);
  bool arm_wake();
  void recycle(int bid);
  void sync(ChanRec* r);
  void queue(ChanRec* r);
  void after(ChanRec* r);
  void fail(ChanRec* r, int err, const char* what);
  int process_pending();
  int deliver_held(ChanRec* r);
  void finalize(ChanRec* r);
  size_t reap(std::vector<Cqe>& out);
  int dispatch(const Cqe& c);
  int on_accept_cqe(ChanRec* r, const Cqe& c);
  int on_recv_cqe(ChanRec* r, const Cqe& c);
  int on_send_cqe(ChanRec* r, const Cqe& c);
  int on_timer_cqe(ChanRec* r, const Cqe& c);
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

  io_uring_buf_ring* br_ = nullptr;
  size_t br_bytes_ = 0;
  char* bufs_ = nullptr;
  size_t bufs_bytes_ = 0;
  unsigned buf_count_ = 0;
  unsigned buf_size_ = 0;
  int br_mask_ = 0;

  bool ms_accept_ = false;
  bool ms_recv_ = false;
  bool buf_ring_ = false;

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
    unsigned count = std::clamp(tuning.buf_count, 1u, kMaxBufRing);
    if (count & (count - 1)) {  // round down to a power of two
      unsigned pow = 1;
      while (pow * 2 <= count) pow *= 2;
      spdlog::warn("uring: buf_count {} is not a power of two, using {}",
                   count, pow);
      count = pow;
    }
    unsigned size = std::max(tuning.buf_size, 64u);
    long page = ::sysconf(_SC_PAGESIZE);
    br_bytes_ = count * sizeof(io_uring_buf);
    br_bytes_ = (br_bytes_ + page - 1) / page * page;
    bufs_bytes_ = size_t{count} * size;
    void* brm = ::mmap(nullptr, br_bytes_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void* bm = ::mmap(nullptr, bufs_bytes_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (brm == MAP_FAILED || bm == MAP_FAILED) {
      int err = errno;
      spdlog::warn("uring: mmap for buffer ring failed: {}", errno_name(err));
      if (brm != MAP_FAILED) ::munmap(brm, br_bytes_);
      if (bm != MAP_FAILED) ::munmap(bm, bufs_bytes_);
    } else {
      br_ = static_cast<io_uring_buf_ring*>(brm);
      bufs_ = static_cast<char*>(bm);
      io_uring_buf_reg reg{};
      reg.ring_addr = reinterpret_cast<uintptr_t>(br_);
      reg.ring_entries = count;
      reg.bgid = kBufGroup;
      int r = io_uring_register_buf_ring(&ring_, &reg, 0);
      if (r < 0) {
        spdlog::info("uring: no provided-buffer ring ({}), single-shot recv",
                     errno_name(-r));
        ::munmap(br_, br_bytes_);
        ::munmap(bufs_, bufs_bytes_);
        br_ = nullptr;
        bufs_ = nullptr;
      } else {
        buf_ring_ = true;
        buf_count_ = count;
        buf_size_ = size;
        br_mask_ = io_uring_buf_ring_mask(count);
        io_uring_buf_ring_init(br_);
        for (unsigned i = 0; i < count; ++i) {
          io_uring_buf_ring_add(br_, bufs_ + size_t{i} * size, size,
                                static_cast<unsigned short>(i), br_mask_,
                                static_cast<int>(i));
        }
        io_uring_buf_ring_advance(br_, static_cast<int>(count));
      }
    }
  }
  ms_recv_ = buf_ring_ && k60;
  ms_accept_ = k519 && !tuning.disable_multishot_accept;

  info_.multishot_accept = ms_accept_;
  info_.multishot_recv = ms_recv_;
  info_.buf_ring = buf_ring_;
  info_.buf_count = buf_count_;
  info_.buf_size = buf_size_;

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
  if (br_) ::munmap(br_, br_bytes_);
  if (bufs_) ::munmap(bufs_, bufs_bytes_);
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

bool UringBackendImpl::arm_timer(ChanRec* r) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  unsigned ms = tuning_.accept_backoff_ms;
  r->ts.tv_sec = ms / 1000;
  r->ts.tv_nsec = static_cast<long long>(ms % 1000) * 1000 * 1000;
  io_uring_prep_timeout(sqe, &r->ts, 0, 0);
  track(&r->timer, sqe);
  ++stats_.accept_backoffs;
  return true;
}

bool UringBackendImpl::arm_wake() {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  io_uring_prep_read(sqe, wake_fd_, &wake_buf_, sizeof wake_buf_, 0);
  track(&wake_op_, sqe);
  return true;
}

void UringBackendImpl::recycle(int bid) {
  if (bid < 0 || !br_) return;
  io_uring_buf_ring_add(br_, bufs_ + size_t(bid) * buf_size_, buf_size_,
                        static_cast<unsigned short>(bid), br_mask_, 0);
  io_uring_buf_ring_advance(br_, 1);
}

// Brings the submitted ops of a channel in line with what it wants. Only
// queues SQEs; never calls back. If the SQ cannot take more, retries from
// the next wait().
void UringBackendImpl::sync(ChanRec* r) {
  bool ok = true;
  if (r->detached) {
    for (Op* op : {&r->accept, &r->recv, &r->send, &r->timer}) {
      if (ok && op->inflight && !op->cancel_sent) ok = send_cancel(op);
    }
    if (!ok) queue(r);
    return;
  }
  Channel& ch = *r->ch;
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
  if (!ok || (!r->errored && ch.want_read() && (r->held > 0 || r->held_eof)))
    queue(r);
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
        arm_timer(r);  // re-arm accept when it fires
      }
    }
  }
  after(r);
  return n;
}

int UringBackendImpl::on_timer_cqe(ChanRec* r, const Cqe&) {
  finish(&r->timer);
  after(r);
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
    data = bufs_ + size_t(bid) * buf_size_;
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
    if (!r->errored && r->ch->want_read() && (r->held > 0 || r->held_eof)) {
      n += deliver_held(r);
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
