// mem_bench's client process: opens the idle connections and drives the
// active ones. Plain blocking sockets to 127.0.0.1, nothing of sluice's, so
// its memory never mixes with the server's (and one process may hold at
// most RLIMIT_NOFILE descriptors: the two ends need two processes).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "perf/mem_bench.h"

namespace sluice::perf::mem {

bool send_msg(int fd, const Msg& m) {
  return ::send(fd, &m, sizeof m, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof m);
}

bool recv_msg(int fd, Msg* m, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  int r;
  while ((r = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  if (r <= 0) return false;
  return ::recv(fd, m, sizeof *m, MSG_WAITALL) == static_cast<ssize_t>(sizeof *m);
}

namespace {

// A connected socket with 5 s send/receive/connect timeouts, or -errno.
int open_conn(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  timeval tv{5, 0};
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    int err = errno == EINPROGRESS ? ETIMEDOUT : errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

// One message out on every fd, then every echo back (checked). 0 or -errno.
int echo_round(const std::vector<int>& fds, size_t size, uint8_t seq) {
  std::vector<char> out(size, static_cast<char>(seq)), in(size);
  for (int fd : fds) {
    if (::send(fd, out.data(), size, MSG_NOSIGNAL) != static_cast<ssize_t>(size)) return -errno;
  }
  for (int fd : fds) {
    ssize_t r = ::recv(fd, in.data(), size, MSG_WAITALL);
    if (r < 0) return errno == EAGAIN ? -ETIMEDOUT : -errno;
    if (static_cast<size_t>(r) != size) return -ECONNRESET;
    if (in != out) return -EBADMSG;
  }
  return 0;
}

// Closes with a reset: no TIME_WAIT left over for the next back end.
void abort_close(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

}  // namespace

int client_main(int ctl) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the server process
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  std::vector<int> conns;
  for (;;) {
    Msg m, r;
    if (!recv_msg(ctl, &m, -1)) return 1;
    switch (m.op) {
      case Op::kWarm: {
        int fd = open_conn(m.port);
        r.a = fd < 0 ? fd : echo_round({fd}, 64, 1);
        if (fd >= 0) ::close(fd);
        break;
      }
      case Op::kConnect:
        conns.reserve(static_cast<size_t>(m.a));
        while (static_cast<int64_t>(conns.size()) < m.a) {
          int fd = open_conn(m.port);
          if (fd < 0) {
            r.a = fd;
            break;
          }
          conns.push_back(fd);
        }
        r.b = static_cast<int64_t>(conns.size());
        break;
      case Op::kActive: {
        std::vector<int> active;
        for (size_t i = 0; i < conns.size(); i += static_cast<size_t>(m.a)) active.push_back(conns[i]);
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(m.b);
        while (r.a == 0 && std::chrono::steady_clock::now() < end) {
          r.a = echo_round(active, static_cast<size_t>(m.c), static_cast<uint8_t>(r.b));
          if (r.a == 0) ++r.b;
        }
        r.c = static_cast<int64_t>(active.size());
        break;
      }
      case Op::kQuit:
        for (int fd : conns) abort_close(fd);
        send_msg(ctl, r);
        return 0;
      case Op::kReply:
        return 1;
    }
    if (!send_msg(ctl, r)) return 1;
  }
}

}  // namespace sluice::perf::mem
