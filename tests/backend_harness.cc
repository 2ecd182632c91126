#include "tests/backend_harness.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <gtest/gtest.h>

#include "io/datagram.h"

namespace sluice::testing {

int udp_local(uint16_t* port, int bufsize) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (bufsize > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (port) *port = ntohs(a.sin_port);
  return fd;
}

sockaddr_in local_addr(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

bool send_to(int fd, uint16_t port, std::string_view data) {
  const sockaddr_in a = local_addr(port);
  for (;;) {
    // MSG_NOSIGNAL: harmless on UDP sockets (they never raise SIGPIPE).
    ssize_t n = ::sendto(fd, data.data(), data.size(), MSG_NOSIGNAL,
                         reinterpret_cast<const sockaddr*>(&a), sizeof a);
    if (n < 0 && errno == EINTR) continue;
    return n == static_cast<ssize_t>(data.size());
  }
}

bool recv_dgram(int fd, std::string* out, uint16_t* from_port) {
  out->resize(io::kMaxDatagram);
  for (;;) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    ssize_t n = ::recvfrom(fd, out->data(), out->size(), 0,
                           reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    out->resize(static_cast<size_t>(n));
    if (from_port) *from_port = ntohs(from.sin_port);
    return from.sin_family == AF_INET &&
           from.sin_addr.s_addr == htonl(INADDR_LOOPBACK);
  }
}

long kernel_rx_queue(uint16_t port) {
  FILE* f = std::fopen("/proc/net/udp", "r");
  if (!f) return -1;
  char line[512];
  char want[32];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  long result = -1;
  while (std::fgets(line, sizeof line, f)) {
    char local[64], remote[64];
    unsigned st;
    unsigned long tx, rx;
    if (std::sscanf(line, " %*d: %63s %63s %x %lx:%lx", local, remote, &st,
                    &tx, &rx) == 5 &&
        std::strcmp(local, want) == 0) {
      result = static_cast<long>(rx);
    }
  }
  std::fclose(f);
  return result;
}

uint32_t seq_of(std::string_view d) {
  uint32_t seq = UINT32_MAX;
  if (d.size() >= 4) std::memcpy(&seq, d.data(), 4);
  return seq;
}

void set_timeouts(int fd, std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int udp_round_robin_echo(uint16_t server_port, const std::vector<size_t>& sizes,
                         std::vector<uint16_t>* client_ports,
                         const std::function<std::string(size_t, uint64_t)>& payload) {
  const size_t clients = client_ports->size();
  int bad = 0;
  std::vector<int> fds;
  for (size_t i = 0; i < clients; ++i) {
    fds.push_back(udp_local(&(*client_ports)[i], 1 << 20));
    set_timeouts(fds.back(), std::chrono::seconds(20));
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    for (size_t i = 0; i < clients; ++i) {
      const std::string want = payload(sizes[k], 100 * i + k);
      std::string got;
      uint16_t from = 0;
      if (fds[i] < 0 || !send_to(fds[i], server_port, want) ||
          !recv_dgram(fds[i], &got, &from)) {
        ++bad;
        ADD_FAILURE() << "client " << i << " size " << sizes[k] << ": no echo";
        continue;
      }
      if (got != want) {
        ++bad;
        ADD_FAILURE() << "client " << i << " size " << sizes[k] << ": got " << got.size()
                      << " bytes, content "
                      << (got.size() == want.size() ? "differs" : "short");
      }
      if (from != server_port) {
        ++bad;
        ADD_FAILURE() << "echo came from port " << from;
      }
    }
  }
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  return bad;
}

}  // namespace sluice::testing
