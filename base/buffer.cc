#include "base/buffer.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <utility>

#include "base/sys.h"

namespace sluice {

namespace {
thread_local BlockCache* t_cache = nullptr;

char* new_block(size_t want, size_t* cap) {
  if (BlockCache* c = t_cache) {
    if (char* p = c->take(want, cap)) return p;
  }
  *cap = want;
  return new char[want];
}
}  // namespace

BlockCache::Scope::Scope() {
  if (t_cache == nullptr) {
    installed_ = new BlockCache;
    t_cache = installed_;
  }
}

BlockCache::Scope::~Scope() {
  if (installed_ != nullptr) {
    t_cache = nullptr;
    delete installed_;
  }
}

BlockCache* BlockCache::local() { return t_cache; }

char* BlockCache::take(size_t want, size_t* cap) {
  size_t best = count_;
  for (size_t i = 0; i < count_; ++i) {
    if (blocks_[i].cap >= want && (best == count_ || blocks_[i].cap < blocks_[best].cap)) {
      best = i;
    }
  }
  if (best == count_) return nullptr;
  const Block b = blocks_[best];
  blocks_[best] = blocks_[--count_];
  *cap = b.cap;
  return b.p;
}

void BlockCache::give(char* block, size_t cap) {
  if (cap > kMaxBlock) {
    delete[] block;
    return;
  }
  if (count_ == kMaxBlocks) {
    // Full: replace the smallest if this one is bigger (a big block saves
    // the most growing), else drop this one.
    size_t small = 0;
    for (size_t i = 1; i < count_; ++i) {
      if (blocks_[i].cap < blocks_[small].cap) small = i;
    }
    if (blocks_[small].cap >= cap) {
      delete[] block;
      return;
    }
    delete[] blocks_[small].p;
    blocks_[small] = {block, cap};
    return;
  }
  blocks_[count_++] = {block, cap};
}

BlockCache::~BlockCache() {
  for (size_t i = 0; i < count_; ++i) delete[] blocks_[i].p;
}

Buffer::Buffer(size_t initial_size) {
  size_t cap = 0;
  data_ = new_block(kCheapPrepend + initial_size, &cap);
  cap_ = cap;
  reader_ = writer_ = kCheapPrepend;
}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
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

void Buffer::release_storage() noexcept {
  if (data_ != nullptr) {
    if (BlockCache* c = t_cache) {
      c->give(data_, cap_);
    } else {
      delete[] data_;
    }
  }
  data_ = nullptr;
  cap_ = reader_ = writer_ = 0;
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
  // Without storage both stay 0 (see the class comment).
  reader_ = writer_ = data_ ? kCheapPrepend : 0;
}

std::string Buffer::retrieve_as_string(size_t n) {
  std::string s(peek(), n);
  retrieve(n);
  return s;
}

void Buffer::append(const void* data, size_t n) {
  // An empty append to a buffer without storage would memcpy to null (UB,
  // UBSan: heartbeat_codec_test); it must not allocate either.
  if (n == 0) return;
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
    std::memmove(data_ + kCheapPrepend, peek(), used);
  } else {
    // Grow geometrically so appends are amortised O(1); a first block is
    // at least kInitialSize.
    const size_t want = kCheapPrepend + used + n;
    size_t new_cap = std::max({want, cap_ * 2, kCheapPrepend + kInitialSize});
    char* fresh = new_block(new_cap, &new_cap);
    if (used) std::memcpy(fresh + kCheapPrepend, peek(), used);
    release_storage();
    data_ = fresh;
    cap_ = new_cap;
  }
  reader_ = kCheapPrepend;
  writer_ = kCheapPrepend + used;
}

void Buffer::prepend(const void* data, size_t n) {
  if (n == 0) return;
  assert(n <= prependable());
  reader_ -= n;
  std::memcpy(data_ + reader_, data, n);
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
  // From the heap, not the cache: the cache would hand back a big block.
  const size_t used = readable();
  char* fresh = new char[kCheapPrepend + keep];
  if (used) std::memcpy(fresh + kCheapPrepend, peek(), used);
  release_storage();
  data_ = fresh;
  cap_ = kCheapPrepend + keep;
  reader_ = kCheapPrepend;
  writer_ = kCheapPrepend + used;
}

}  // namespace sluice
