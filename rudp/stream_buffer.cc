#include "rudp/stream_buffer.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

namespace sluice::rudp {

namespace {

// Chunks recently given back on this thread, for the next connection (or
// message) that needs one: a request/response connection empties its
// buffer after every message, and a 64 KiB malloc/free pair per message
// made glibc consolidate its heap (5% of an echo server's CPU). Bounded,
// and per thread, so an idle connection holds nothing.
struct ChunkCache {
  static constexpr size_t kMax = 16;
  std::vector<std::unique_ptr<char[]>> spare;
};
thread_local ChunkCache t_cache;

std::unique_ptr<char[]> take_chunk() {
  if (!t_cache.spare.empty()) {
    auto c = std::move(t_cache.spare.back());
    t_cache.spare.pop_back();
    return c;
  }
  return std::make_unique_for_overwrite<char[]>(StreamBuffer::kChunk);
}

void give_chunk(std::unique_ptr<char[]> c) {
  if (t_cache.spare.size() < ChunkCache::kMax) t_cache.spare.push_back(std::move(c));
}

}  // namespace

void StreamBuffer::append(std::string_view data) {
  while (!data.empty()) {
    const size_t end = head_ + size_;  // one past the last byte, from chunk 0's start
    const size_t within = end % kChunk;
    // _for_overwrite: make_unique<char[]> would zero 64 KiB per chunk, and
    // a request/response connection empties its buffer (freeing the chunk)
    // after every message: that memset was 28% of an rudp echo server's
    // CPU with 64-byte messages.
    if (end == chunks_.size() * kChunk) chunks_.push_back(take_chunk());
    const size_t n = std::min(data.size(), kChunk - within);
    std::memcpy(chunks_[end / kChunk].get() + within, data.data(), n);
    size_ += n;
    data.remove_prefix(n);
  }
}

std::string_view StreamBuffer::peek(size_t offset, size_t max) const {
  if (offset >= size_) return {};
  const size_t pos = head_ + offset;
  const size_t within = pos % kChunk;
  const size_t n = std::min({max, kChunk - within, size_ - offset});
  return {chunks_[pos / kChunk].get() + within, n};
}

void StreamBuffer::drop_front(size_t n) {
  n = std::min(n, size_);
  size_ -= n;
  head_ += n;
  while (head_ >= kChunk) {
    give_chunk(std::move(chunks_.front()));
    chunks_.pop_front();
    head_ -= kChunk;
  }
  if (size_ == 0) {
    for (auto& c : chunks_) give_chunk(std::move(c));
    chunks_.clear();
    head_ = 0;
  }
}

}  // namespace sluice::rudp
