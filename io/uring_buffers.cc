// Provided-buffer rings; see io/uring_buffers.h.
#include "io/uring_buffers.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "io/uring_impl.h"

namespace sluice::io::uring_internal {
namespace {

constexpr unsigned kMaxBufRing = 32768;  // kernel limit for ring_entries

}  // namespace

bool BufRing::setup(io_uring* ring, unsigned want_count, unsigned want_size,
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

void BufRing::recycle(int bid) {
  if (bid < 0 || !br) return;
  io_uring_buf_ring_add(br, buf(bid), size, static_cast<unsigned short>(bid),
                        mask, 0);
  io_uring_buf_ring_advance(br, 1);
}

void BufRing::release() {
  if (br) ::munmap(br, br_bytes);
  if (bufs) ::munmap(bufs, bufs_bytes);
  br = nullptr;
  bufs = nullptr;
}

}  // namespace sluice::io::uring_internal
