// Helpers for socket-level tests: blocking client sockets, payloads, and
// process resource counts. Test code only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace sluice::testing {

// True in --config=asan/ubsan/tsan builds (.bazelrc defines
// SLUICE_SANITIZED): instrumentation keeps freed memory resident and slows
// every call, so memory and latency bounds only print there; functional
// checks still apply.
#ifdef SLUICE_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

size_t count_fds();   // entries in /proc/self/fd
size_t rss_bytes();   // resident set size from /proc/self/statm
size_t thread_count();  // entries in /proc/self/task

std::string random_bytes(size_t n, uint64_t seed);

// Blocking client socket to 127.0.0.1:port, or -errno.
int connect_local(uint16_t port);
void set_recv_timeout(int fd, int ms);

// Writes all of data in random-sized chunks (1 byte .. 64 KiB, biased to
// small sizes) so the server sees arbitrary splits. False on error.
bool write_chunked(int fd, std::string_view data, std::mt19937_64& rng);

// Reads exactly n bytes (recv timeout must be set). Returns what it got;
// shorter on EOF, error or timeout.
std::string read_n(int fd, size_t n);

// True when the peer has closed: recv returns 0 or an error (reset)
// within timeout_ms.
bool wait_closed(int fd, int timeout_ms);

// Sends `data` chunked from a second thread while reading the echo here,
// so payloads larger than the socket buffers cannot deadlock. Returns the
// bytes echoed back.
std::string echo_through(int fd, const std::string& data, uint64_t seed);

// Drives `conns` connections at once from one poll() loop: each sends
// `bytes` random bytes and expects them back. Connections the server
// refuses (closed before echoing) are counted, not failed.
struct ConcurrentResult {
  size_t ok = 0;        // every byte echoed and verified
  size_t refused = 0;   // closed by the server before echoing anything
  size_t corrupt = 0;   // wrong bytes, or cut off midway
  size_t connect_failed = 0;
};
ConcurrentResult concurrent_echo(uint16_t port, size_t conns, size_t bytes,
                                 int timeout_ms);

// A length-codec frame: 4-byte big-endian length, then the payload.
std::string frame(std::string_view payload);

}  // namespace sluice::testing
