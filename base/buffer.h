// Buffer: a growable byte queue with cheap prepend and scatter reads.
//
// Layout (muduo-style):
//
//   +-------------------+------------------+------------------+
//   | prependable bytes |  readable bytes  |  writable bytes  |
//   +-------------------+------------------+------------------+
//   0      <=      reader_index   <=   writer_index    <=   capacity
//
// Invariants: reader_ <= writer_ <= cap_; kCheapPrepend bytes are kept in
// front after every compaction so a header can be prepended without moving
// the payload. A moved-from buffer is empty with no storage (cap_ == 0) and
// allocates on its next append. Storage is not zero-filled and is reused across reads, so a
// steady stream causes no heap allocation per read.
//
// Thread rules: a Buffer is not synchronised; it belongs to one thread at a
// time (a connection's loop thread, or a back end's IO thread while it holds
// the buffer in flight).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace sluice {

class Buffer {
 public:
  static constexpr size_t kCheapPrepend = 16;
  static constexpr size_t kInitialSize = 2048;
  // Stack spill area used by read_fd: one read can take this much beyond
  // the buffer's free space, so a large read costs at most one grow.
  static constexpr size_t kSpillSize = 64 * 1024;
  // With at least this much free space read_fd does a plain recv() into the
  // buffer (the spill is read only if that filled it): cheaper for the
  // kernel than readv, which copies in and checks an iovec array per call.
  static constexpr size_t kDirectReadMin = 1024;

  explicit Buffer(size_t initial_size = kInitialSize);
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t readable() const { return writer_ - reader_; }
  size_t writable() const { return cap_ - writer_; }
  size_t prependable() const { return reader_; }
  size_t capacity() const { return cap_; }
  bool empty() const { return reader_ == writer_; }
  // Whether p points into this buffer's storage.
  bool holds(const char* p) const {
    const auto at = reinterpret_cast<uintptr_t>(p);
    const auto base = reinterpret_cast<uintptr_t>(data_.get());
    return data_ && at >= base && at < base + cap_;
  }

  const char* peek() const { return data_.get() + reader_; }
  std::string_view view() const { return {peek(), readable()}; }

  // Drops n readable bytes (n <= readable()).
  void retrieve(size_t n);
  void retrieve_all();
  std::string retrieve_as_string(size_t n);

  // `data` must not point into this buffer (see holds()).
  void append(const void* data, size_t n);
  void append(std::string_view s) { append(s.data(), s.size()); }

  // Makes room for n more bytes, compacting before growing.
  void ensure_writable(size_t n);
  char* begin_write() { return data_.get() + writer_; }
  void has_written(size_t n) { writer_ += n; }
  // Undo the last n written bytes (n <= readable()).
  void unwrite(size_t n) { writer_ -= n; }

  // Puts n bytes in front of the readable bytes (n <= prependable()).
  void prepend(const void* data, size_t n);

  // Reads what a stream socket has, up to the free space plus a stack spill
  // area: one recv() when the free space is at least kDirectReadMin (and a
  // second, MSG_DONTWAIT, into the spill only when the first filled it),
  // otherwise one readv() over both. Works on blocking sockets too: only
  // the first call can block. Returns bytes read, 0 on EOF, or -errno
  // (errno copied at once).
  ssize_t read_fd(int fd);

  // Releases memory beyond max(readable + reserve, kInitialSize); used after
  // a burst so an idle connection does not pin a large allocation.
  void shrink(size_t reserve = 0);

  void swap(Buffer& other) noexcept;

 private:
  void grow_or_compact(size_t n);

  std::unique_ptr<char[]> data_;
  size_t cap_ = 0;
  size_t reader_ = kCheapPrepend;
  size_t writer_ = kCheapPrepend;
};

}  // namespace sluice
