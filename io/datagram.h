// Datagram types for UDP channels.
//
// DatagramQueue holds outgoing datagrams in FIFO order: payloads are packed
// into one Buffer and headers into a vector, so queueing a datagram costs
// no allocation once the queue has warmed up, and a back end can hand a
// batch to sendmmsg/io_uring without copying.
//
// Thread rules: owned by one channel; loop thread only (or a back end's IO
// thread while the back end holds it, like Buffer).
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/buffer.h"

namespace sluice::io {

// Largest UDP payload sluice receives or sends (IPv4 limit, rounded).
constexpr size_t kMaxDatagram = 65536;

struct Datagram {
  const sockaddr* addr;
  socklen_t addr_len;
  std::string_view data;
};

class DatagramQueue {
 public:
  struct Item {
    sockaddr_storage addr;
    socklen_t addr_len;
    size_t offset;  // into the payload buffer
    size_t size;
  };

  void push(const sockaddr* addr, socklen_t len, std::string_view data) {
    Item it{};
    std::memcpy(&it.addr, addr, len);
    it.addr_len = len;
    it.offset = payload_.readable();
    it.size = data.size();
    payload_.append(data);
    items_.push_back(it);
  }

  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }
  // The i-th queued datagram (0 = oldest). Views stay valid until the next
  // push or pop.
  const Item& item(size_t i) const { return items_[head_ + i]; }
  std::string_view payload(const Item& it) const {
    return {payload_.peek() + it.offset, it.size};
  }
  // Drops the n oldest datagrams.
  void pop(size_t n) {
    head_ += n;
    if (head_ == items_.size()) {
      items_.clear();
      payload_.retrieve_all();
      head_ = 0;
    }
  }

 private:
  std::vector<Item> items_;
  size_t head_ = 0;
  Buffer payload_;  // offsets are relative to its read position, which
                    // only moves when the queue empties
};

}  // namespace sluice::io
