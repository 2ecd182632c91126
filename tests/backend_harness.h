// Loopback UDP client helpers shared by the back-end tests
// (blocking_backend_test, uring_backend_test), which drive the Backend
// interface directly over 127.0.0.1.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::testing {

// UDP socket bound to 127.0.0.1:0 (its port in *port), or -errno.
// bufsize > 0 sets SO_RCVBUF and SO_SNDBUF.
int udp_local(uint16_t* port, int bufsize = 0);

// 127.0.0.1:port.
sockaddr_in local_addr(uint16_t port);

// One datagram to 127.0.0.1:port; true if all of it was sent.
bool send_to(int fd, uint16_t port, std::string_view data);

// One datagram (blocking, bounded by the socket's SO_RCVTIMEO); false on
// timeout / error or a source that is not 127.0.0.1.
bool recv_dgram(int fd, std::string* out, uint16_t* from_port = nullptr);

// /proc/net/udp: bytes queued in the kernel for the socket bound to
// 127.0.0.1:port (rx_queue), or -1 if not found.
long kernel_rx_queue(uint16_t port);

// The sequence number in the first 4 bytes of a datagram, or UINT32_MAX.
uint32_t seq_of(std::string_view d);

// A datagram as a test channel saw it.
struct Received {
  uint16_t port;  // source port
  std::string data;
};

}  // namespace sluice::testing
