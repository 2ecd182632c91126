// StreamBuffer: the bytes a sender holds until they are acknowledged: a
// queue of fixed-size chunks, appended at the back, dropped from the front
// as acknowledgements arrive, read anywhere in between (retransmissions).
// Unlike one contiguous Buffer it never moves what it holds: with a 4 MiB
// send buffer freed a few KiB at a time, compacting a contiguous buffer
// cost two thirds of a bulk sender's CPU in memmove.
//
// Memory: what it holds, rounded up to whole chunks; nothing when empty.
// Thread rules: one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>

namespace sluice::rudp {

class StreamBuffer {
 public:
  static constexpr size_t kChunk = 64 << 10;

  void append(std::string_view data);
  // Up to `max` bytes from `offset` (relative to the front), contiguous:
  // fewer at a chunk boundary or the end.
  std::string_view peek(size_t offset, size_t max) const;
  void drop_front(size_t n);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  std::deque<std::unique_ptr<char[]>> chunks_;
  size_t head_ = 0;  // offset of the first byte in chunks_.front()
  size_t size_ = 0;
};

}  // namespace sluice::rudp
