// Provided-buffer rings for the io_uring back end (private to //io:uring):
// one per buffer group, set up where multishot recv / recvmsg is expected
// (6.0+). See io/uring.h for their sizes and what each group serves.
//
// Thread rules: the back end's loop thread only (recycle() publishes
// buffers to the kernel through the ring's tail).
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>

namespace sluice::io::uring_internal {

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
             uint16_t group, const char* what);

  // Gives buffer bid back to the kernel (bid < 0: none).
  void recycle(int bid);

  // After the ring is gone.
  void release();
};

}  // namespace sluice::io::uring_internal
