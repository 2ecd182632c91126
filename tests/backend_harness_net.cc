#include "tests/backend_harness_net.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/backend_harness.h"

namespace sluice::testing {

int tcp_listen_local(uint16_t* port, int rcvbuf) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a = local_addr(0);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(fd, 1024) < 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int tcp_connect_fd(int fd, uint16_t port) {
  const sockaddr_in a = local_addr(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) return 0;
  int err = errno;
  if (err != EINTR) return -err;
  pollfd p{fd, POLLOUT, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, 30000);
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) return -ETIMEDOUT;
  socklen_t len = sizeof err;
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return -err;
}

int tcp_client(uint16_t port, int rcvbuf, int sndbuf) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (sndbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  set_timeouts(fd, std::chrono::seconds(30));
  int rc = tcp_connect_fd(fd, port);
  if (rc < 0) {
    ::close(fd);
    return rc;
  }
  return fd;
}

bool send_all(int fd, std::string_view data, std::atomic<size_t>* progress) {
  while (!data.empty()) {
    const size_t chunk = std::min<size_t>(data.size(), 64 * 1024);
    ssize_t n = ::send(fd, data.data(), chunk, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
    if (progress) progress->fetch_add(static_cast<size_t>(n));
  }
  return true;
}

std::string recv_n(int fd, size_t n, size_t chunk, std::chrono::microseconds pause) {
  std::string out;
  out.reserve(n);
  std::vector<char> buf(chunk);
  while (out.size() < n) {
    ssize_t r = ::recv(fd, buf.data(), std::min(chunk, n - out.size()), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.append(buf.data(), static_cast<size_t>(r));
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
  return out;
}

std::string read_to_eof(int fd) {
  std::string out;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.append(buf.data(), static_cast<size_t>(r));
  }
  return out;
}

int recv_result(int fd) {
  char c;
  ssize_t r = ::recv(fd, &c, 1, 0);
  if (r < 0) return -errno;
  return static_cast<int>(r);
}

void hard_close(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

namespace {
uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

std::string pattern(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    // Byte i of word i/8 of a splitmix stream keyed by the seed.
    s[i] = static_cast<char>(splitmix((i >> 3) ^ (seed << 40)) >> ((i & 7) * 8));
  }
  return s;
}

std::string numbered(uint32_t seq, size_t size) {
  std::string s = pattern(std::max<size_t>(size, 4), 0xD6 + seq);
  std::memcpy(s.data(), &seq, 4);
  return s;
}

const sockaddr* no_addr() {
  static const sockaddr_storage none{};
  return reinterpret_cast<const sockaddr*>(&none);
}

int highest_fd() {
  int highest = -1;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') highest = std::max(highest, std::atoi(e->d_name));
    }
    ::closedir(d);
  }
  return highest;
}

}  // namespace sluice::testing
