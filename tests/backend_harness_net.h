// Loopback TCP sockets and payloads for the tests that drive a Backend
// directly (tests/backend_scenarios.*, blocking_backend_test,
// uring_backend_test, reactor_backend_test). Plain blocking client sockets;
// every call copies errno at once and returns -errno or false.
//
// Thread rules: none of these keep state; any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <sys/socket.h>

namespace sluice::testing {

// Listening TCP socket on 127.0.0.1:0 (its port in *port), backlog 1024,
// or -errno. rcvbuf > 0 sets SO_RCVBUF first (accepted sockets inherit it).
int tcp_listen_local(uint16_t* port, int rcvbuf = 0);

// Connects `fd` to 127.0.0.1:port; 0 or -errno. An EINTR does not abort the
// connect (without DEFER_TASKRUN an io_uring's task work interrupts blocking
// calls on the thread that issued it, the loop thread in these tests): it
// waits up to 30 s for the connect to finish.
int tcp_connect_fd(int fd, uint16_t port);

// Blocking client socket with 30 s send/recv timeouts, or -errno.
// rcvbuf/sndbuf > 0 set SO_RCVBUF/SO_SNDBUF before the connect.
int tcp_client(uint16_t port, int rcvbuf = 0, int sndbuf = 0);

// Sends all of data (64 KiB per call, EINTR retried); false on error or
// timeout. `progress`, if given, counts what went.
bool send_all(int fd, std::string_view data, std::atomic<size_t>* progress = nullptr);

// Reads until n bytes, EOF, error or timeout; `chunk` bytes per recv and a
// `pause` after each (a slow reader).
std::string recv_n(int fd, size_t n, size_t chunk = 256 * 1024,
                   std::chrono::microseconds pause = std::chrono::microseconds(0));

// Reads until EOF, error or timeout.
std::string read_to_eof(int fd);

// One recv of a byte on a connection the server should have refused:
// 0 (EOF) or -ECONNRESET mean refused; anything else means not.
int recv_result(int fd);

// Closes with an RST instead of a FIN (SO_LINGER 0).
void hard_close(int fd);

// A deterministic, non-periodic byte pattern: any loss, duplication or
// reordering changes what comes back.
std::string pattern(size_t n, uint64_t seed);

// A datagram: sequence number in its first 4 bytes, the pattern after
// (at least 4 bytes).
std::string numbered(uint32_t seq, size_t size);

// "No address" for DatagramQueue::push (send to the connected peer): a
// valid pointer with length 0 (memcpy from nullptr is UB even for 0 bytes).
const sockaddr* no_addr();

// The highest open descriptor number (from /proc/self/fd), or -1.
int highest_fd();

}  // namespace sluice::testing
