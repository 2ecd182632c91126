// Loopback UDP client helpers shared by the back-end tests
// (blocking_backend_test, uring_backend_test), which drive the Backend
// interface directly over 127.0.0.1.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

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

// SO_RCVTIMEO and SO_SNDTIMEO.
void set_timeouts(int fd, std::chrono::milliseconds t);

// The client side of a UDP echo check, for a thread of its own. One socket
// per entry of *client_ports (bound here, its port written there) sends
// payload(size, 100 * client + k) for each sizes[k] in turn, round-robin,
// and waits (up to 20 s) for the echo, which must be identical and come
// from server_port. Each failure is reported with ADD_FAILURE; returns how
// many there were.
int udp_round_robin_echo(uint16_t server_port, const std::vector<size_t>& sizes,
                         std::vector<uint16_t>* client_ports,
                         const std::function<std::string(size_t, uint64_t)>& payload);

// A datagram as a test channel saw it.
struct Received {
  uint16_t port;  // source port
  std::string data;
};

}  // namespace sluice::testing
