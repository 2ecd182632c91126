#include "base/buffer.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <utility>

#include "base/sys.h"

namespace sluice {

Buffer::Buffer(size_t initial_size)
    : data_(new char[kCheapPrepend + initial_size]),
      cap_(kCheapPrepend + initial_size) {}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::move(other.data_)),
      cap_(std::exchange(other.cap_, 0)),
      reader_(std::exchange(other.reader_, 0)),
      writer_(std::exchange(other.writer_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Buffer tmp(std::move(other));
    swap(tmp);
  }
  return *this;
}

void Buffer::swap(Buffer& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(cap_, other.cap_);
  std::swap(reader_, other.reader_);
  std::swap(writer_, other.writer_);
}

void Buffer::retrieve(size_t n) {
  assert(n <= readable());
  if (n < readable()) {
    reader_ += n;
  } else {
    retrieve_all();
  }
}

void Buffer::retrieve_all() {
  // A moved-from buffer has no storage (cap_ == 0) until its next append.
  reader_ = writer_ = std::min(kCheapPrepend, cap_);
}

std::string Buffer::retrieve_as_string(size_t n) {
  std::string s(peek(), n);
  retrieve(n);
  return s;
}

void Buffer::append(const void* data, size_t n) {
  ensure_writable(n);
  std::memcpy(begin_write(), data, n);
  writer_ += n;
}

void Buffer::ensure_writable(size_t n) {
  if (writable() < n) grow_or_compact(n);
}

void Buffer::grow_or_compact(size_t n) {
  const size_t used = readable();
  if (data_ && writable() + prependable() >= n + kCheapPrepend) {
    // Enough room overall: slide the readable bytes to the front instead of
    // allocating. memmove because the ranges may overlap.
    std::memmove(data_.get() + kCheapPrepend, peek(), used);
  } else {
    // Grow geometrically so appends are amortised O(1).
    size_t want = kCheapPrepend + used + n;
    size_t new_cap = std::max(want, cap_ * 2);
    std::unique_ptr<char[]> fresh(new char[new_cap]);
    if (used) std::memcpy(fresh.get() + kCheapPrepend, peek(), used);
    data_ = std::move(fresh);
    cap_ = new_cap;
  }
  reader_ = kCheapPrepend;
  writer_ = kCheapPrepend + used;
}

void Buffer::prepend(const void* data, size_t n) {
  assert(n <= prependable());
  reader_ -= n;
  std::memcpy(data_.get() + reader_, data, n);
}

ssize_t Buffer::read_fd(int fd) {
  char spill[kSpillSize];
  const size_t space = writable();
  if (space >= kDirectReadMin) {
    ssize_t n = sys::recv(fd, begin_write(), space, 0);
    if (n <= 0) return n < 0 ? -errno : 0;
    writer_ += static_cast<size_t>(n);
    if (static_cast<size_t>(n) < space) return n;  // took all there was
    // Filled up: more may be waiting. Never block for it; an error or EOF
    // here is left for the next call to report.
    ssize_t more = sys::recv(fd, spill, sizeof spill, MSG_DONTWAIT);
    if (more > 0) append(spill, static_cast<size_t>(more));
    return n + std::max<ssize_t>(more, 0);
  }
  struct iovec vec[2];
  vec[0].iov_base = begin_write();
  vec[0].iov_len = space;
  vec[1].iov_base = spill;
  vec[1].iov_len = sizeof spill;
  ssize_t n = sys::readv(fd, vec, 2);
  if (n < 0) return -errno;
  if (static_cast<size_t>(n) <= space) {
    writer_ += static_cast<size_t>(n);
  } else {
    writer_ = cap_;
    append(spill, static_cast<size_t>(n) - space);
  }
  return n;
}

void Buffer::shrink(size_t reserve) {
  const size_t keep = std::max(readable() + reserve, kInitialSize);
  if (cap_ <= kCheapPrepend + keep * 2) return;  // not worth a copy
  Buffer fresh(keep);
  fresh.append(peek(), readable());
  swap(fresh);
}

}  // namespace sluice
