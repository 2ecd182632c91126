// Ring setup for the io_uring back end: the setup-flag fallback ladder,
// R_DISABLED and enabling the ring on the loop thread, kernel feature
// detection (which generation of io_uring, which opcodes, buffer rings),
// probe_uring() and the descriptions of what was accepted. See io/uring.h
// for the ladder itself.
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>

#include "io/uring.h"
#include "io/uring_impl.h"

namespace sluice::io {
namespace uring_internal {

std::string errno_name(int err) {  // err > 0
  const char* name = strerrorname_np(err);
  std::string s = name ? name : std::to_string(err);
  s += " (";
  s += std::strerror(err);
  s += ")";
  return s;
}

namespace {

constexpr unsigned kMaxEntries = 32768;  // IORING_MAX_ENTRIES
// What multishot recvmsg writes in front of each payload: the out header,
// room for any source address and the TOS / traffic-class cmsg
// (Datagram::ecn).
constexpr size_t kDgramHeader =
    sizeof(io_uring_recvmsg_out) + sizeof(sockaddr_storage) + kEcnControlSize;
static_assert(kDgramHeader % 16 == 0);
// Default datagram buffer: exactly one kMaxDatagram payload plus header.
constexpr size_t kDgramDefaultBufSize = kMaxDatagram + kDgramHeader;

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

}  // namespace

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
    buf_ring_ = stream_ring_.setup(&ring_, stream_buf_count(tuning.buf_count),
                                   std::max(tuning.buf_size, 64u), kBufGroup,
                                   "streams");
  }
  ms_recv_ = buf_ring_ && k60;
  ms_accept_ = k519 && !tuning.disable_multishot_accept;

  // Datagrams: IORING_OP_RECVMSG/SENDMSG (5.3+). Multishot recvmsg (6.0+)
  // takes provided buffers from a group of its own, each buffer holding
  // the recvmsg_out header, the source address, control data and the payload.
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
    ms_recvmsg_ = dgram_ring_.setup(&ring_, dgram_buf_count(tuning.dgram_buf_count),
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
  // Once per process at info (every loop of a server probes the same
  // kernel), the other loops at debug.
  static std::atomic<bool> described{false};
  const bool first = !described.exchange(true, std::memory_order_relaxed);
  spdlog::log(first ? spdlog::level::info : spdlog::level::debug, "uring backend: {}",
              info_.describe());
  return true;
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

}  // namespace uring_internal

// ----------------------------------------------------------- public API --

using uring_internal::errno_name;
using uring_internal::missing_kernel_support;
using uring_internal::read_sysctl_int;
using uring_internal::setup_error;

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

}  // namespace sluice::io
