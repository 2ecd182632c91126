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
// the payload. Storage is not zero-filled and is reused across appends, so
// a steady stream causes no heap allocation per message.
//
// Storage only while it holds bytes: a default-constructed (or moved-from,
// or released) buffer has none (cap_ == 0, reader_ == writer_ == 0) and
// allocates on its first append; release() gives it back once the bytes
// are gone. Connections keep their buffers in that state while idle, so an
// idle connection costs no buffer memory (docs/ARCHITECTURE.md, "Memory per
// connection"). Blocks come from the thread's BlockCache when the thread
// has one (event-loop threads do): a block a connection just released is
// the next one's, still in cache, and a buffer that held 32 KiB a moment
// ago starts at that size again instead of growing there by doubling.
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

  // No storage until the first append.
  Buffer() = default;
  // Storage for initial_size bytes (plus the prepend area) at once.
  explicit Buffer(size_t initial_size);
  ~Buffer() { release_storage(); }
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t readable() const { return writer_ - reader_; }
  size_t writable() const { return cap_ - writer_; }
  size_t prependable() const { return reader_; }
  size_t capacity() const { return cap_; }
  bool empty() const { return reader_ == writer_; }
  // Whether the buffer has storage (capacity() > 0).
  bool allocated() const { return data_ != nullptr; }

  const char* peek() const { return data_ + reader_; }
  std::string_view view() const { return {peek(), readable()}; }

  // Drops n readable bytes (n <= readable()).
  void retrieve(size_t n);
  void retrieve_all();
  std::string retrieve_as_string(size_t n);

  // `data` must not point into this buffer (it may move when it grows).
  void append(const void* data, size_t n);
  void append(std::string_view s) { append(s.data(), s.size()); }

  // Makes room for n more bytes, compacting before growing.
  void ensure_writable(size_t n);
  char* begin_write() { return data_ + writer_; }
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
  // Gives the storage back (to the thread's BlockCache, or the heap) if
  // the buffer is empty; a no-op otherwise.
  void release() {
    if (reader_ == writer_) release_storage();
  }

  void swap(Buffer& other) noexcept;

 private:
  void grow_or_compact(size_t n);
  void release_storage() noexcept;

  char* data_ = nullptr;  // owned: from BlockCache::take() or the heap
  size_t cap_ = 0;
  size_t reader_ = 0;
  size_t writer_ = 0;
};

// A few recently released buffer blocks, kept for reuse by one thread.
// Enabled per thread (BlockCache::Scope; EventLoop::run() opens one for
// its thread): threads without one, such as the blocking back end's
// helpers, use the heap directly, so a thread per connection does not pin
// a cached block per connection. Bounded: at most kMaxBlocks blocks of at
// most kMaxBlock bytes each; anything else goes back to the heap.
//
// Thread rules: thread-local; a block may be freed by another thread's
// cache or the heap (blocks are plain new[] allocations).
class BlockCache {
 public:
  static constexpr size_t kMaxBlocks = 8;
  static constexpr size_t kMaxBlock = 256 * 1024;

  // Installs a cache for the calling thread for the scope's lifetime
  // (nested scopes keep the outer one).
  class Scope {
   public:
    Scope();
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    BlockCache* installed_ = nullptr;
  };

  // The calling thread's cache, or nullptr.
  static BlockCache* local();

  // A block of at least `want` bytes (*cap set to its size), or nullptr if
  // none is cached. Prefers the smallest block that fits.
  char* take(size_t want, size_t* cap);
  // Keeps the block if there is room, else frees it.
  void give(char* block, size_t cap);

  ~BlockCache();

 private:
  struct Block {
    char* p;
    size_t cap;
  };
  Block blocks_[kMaxBlocks] = {};
  size_t count_ = 0;
};

}  // namespace sluice
