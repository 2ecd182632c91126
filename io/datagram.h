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

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/buffer.h"

namespace sluice::io {

// Largest UDP payload sluice receives or sends (IPv4 limit, rounded).
constexpr size_t kMaxDatagram = 65536;

// ECN codepoints (RFC 3168): the low two bits of the IPv4 TOS byte / the
// IPv6 traffic class.
enum Ecn : uint8_t { kNotEct = 0, kEct1 = 1, kEct0 = 2, kCe = 3 };

struct Datagram {
  const sockaddr* addr;
  socklen_t addr_len;
  std::string_view data;
  // The ECN codepoint it arrived with (Ecn), where the socket reports it
  // (IP_RECVTOS / IPV6_RECVTCLASS on: see enable_ecn in core/net.h); 0
  // when unknown.
  uint8_t ecn = 0;
};

// Control-message room for a received datagram's TOS / traffic class: one
// IP_TOS (a byte) or IPV6_TCLASS (an int) cmsg, and room for both (a dual-
// stack socket with both options on). Back ends give each receive this
// much msg_control; a socket that did not ask gets none filled in.
constexpr size_t kEcnControlSize = 2 * CMSG_SPACE(sizeof(int));

// The ECN codepoint in a received message's control data (0 if none).
inline uint8_t ecn_from_cmsg(const cmsghdr* c) {
  if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) {
    if (c->cmsg_len >= CMSG_LEN(1)) return *CMSG_DATA(c) & 3;
  } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS) {
    if (c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int v;
      std::memcpy(&v, CMSG_DATA(c), sizeof v);
      return static_cast<uint8_t>(v & 3);
    }
  }
  return 0;
}

inline uint8_t ecn_from_msghdr(const msghdr& h) {
  if (h.msg_controllen == 0 || (h.msg_flags & MSG_CTRUNC)) return 0;
  for (const cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), const_cast<cmsghdr*>(c))) {
    if (uint8_t e = ecn_from_cmsg(c)) return e;
  }
  return 0;
}

class DatagramQueue {
 public:
  struct Item {
    sockaddr_storage addr;
    socklen_t addr_len;
    size_t offset;  // into the payload buffer
    size_t size;
    uint8_t ecn;  // received datagrams: their ECN codepoint
  };

  void push(const sockaddr* addr, socklen_t len, std::string_view data, uint8_t ecn = 0) {
    Item it{};
    std::memcpy(&it.addr, addr, len);
    it.addr_len = len;
    it.ecn = ecn;
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
  // A received item as the Datagram it was.
  Datagram datagram(const Item& it) const {
    return {reinterpret_cast<const sockaddr*>(&it.addr), it.addr_len, payload(it), it.ecn};
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
