#include "tests/fault_check.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace sluice::testing {

ClientResult exchange(int fd, const std::string& wire, std::mt19937_64& rng,
                      std::chrono::steady_clock::time_point deadline) {
  ClientResult r;
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  size_t sent = 0;
  bool shut = false;
  char buf[65536];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.end = ClientResult::kTimeout;
      return r;
    }
    pollfd p{fd, POLLIN, 0};
    if (sent < wire.size()) p.events |= POLLOUT;
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      r.end = ClientResult::kReset;
      return r;
    }
    if (p.revents & POLLOUT) {
      const size_t max = (rng() % 4 == 0) ? 65536 : 64;
      const size_t n = std::min(wire.size() - sent, 1 + static_cast<size_t>(rng() % max));
      const ssize_t w = ::send(fd, wire.data() + sent, n, MSG_NOSIGNAL);
      if (w > 0) sent += static_cast<size_t>(w);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        // The server is gone; what it sent before may still be readable.
        sent = wire.size();
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        r.got.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        r.end = r.got.size() == wire.size() ? ClientResult::kComplete : ClientResult::kEof;
        return r;
      } else if (errno != EAGAIN && errno != EINTR) {
        r.end = r.got.size() == wire.size() && shut ? ClientResult::kComplete
                                                    : ClientResult::kReset;
        return r;
      }
    }
    if (!shut && r.got.size() == wire.size() && sent == wire.size()) {
      // Everything came back: half-close and expect the server's close.
      ::shutdown(fd, SHUT_WR);
      shut = true;
    }
  }
}

}  // namespace sluice::testing
