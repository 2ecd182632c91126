// min_epoll_echo: the yardstick for sluice's epoll back end. The least code
// that is still a correct echo server: level-triggered epoll, nonblocking
// sockets, one read per readiness event and an immediate write of what was
// read. Only a short write (the peer is slow) costs extra: the rest is kept
// and the socket switches from EPOLLIN to EPOLLOUT until it is flushed.
// One thread. Exits on SIGTERM/SIGINT (signalfd in the same epoll set).
//
//   min_epoll_echo --port 7000 [--proto udp]
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "perf/peers/peer_util.h"

namespace {

constexpr size_t kBuf = 64 * 1024;

struct Conn {
  std::string pending;  // bytes read but not yet written
};

void set_events(int ep, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  ::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

}  // namespace

int main(int argc, char** argv) {
  peers::Args args = peers::parse_args(argc, argv, "min_epoll_echo");
  const bool udp = args.proto == "udp";

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

  unsigned port = 0;
  int lfd = peers::bind_socket(args, udp, true, &port);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0 || sfd < 0) peers::die("epoll/signalfd");
  for (int fd : {lfd, sfd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  peers::print_listening(args, port, "min-epoll");

  std::vector<Conn> conns;  // indexed by fd
  std::vector<char> buf(kBuf);
  std::vector<epoll_event> evs(1024);
  for (;;) {
    int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      peers::die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const int fd = evs[i].data.fd;
      const uint32_t e = evs[i].events;
      if (fd == sfd) return 0;
      if (udp && fd == lfd) {  // one datagram per readiness event
        sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t r = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &flen);
        if (r >= 0) ::sendto(fd, buf.data(), static_cast<size_t>(r), 0, reinterpret_cast<sockaddr*>(&from), flen);
        continue;
      }
      if (fd == lfd) {
        for (;;) {
          int c = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;  // EAGAIN (or a transient error: LT retries)
          peers::set_nodelay(c);
          if (static_cast<size_t>(c) >= conns.size()) conns.resize(static_cast<size_t>(c) + 1024);
          conns[static_cast<size_t>(c)].pending.clear();
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      Conn& conn = conns[static_cast<size_t>(fd)];
      if (e & EPOLLOUT) {  // flushing a short write; not reading meanwhile
        ssize_t w = ::send(fd, conn.pending.data(), conn.pending.size(), MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) {
          ::close(fd);
          continue;
        }
        if (w > 0) conn.pending.erase(0, static_cast<size_t>(w));
        if (conn.pending.empty()) set_events(ep, fd, EPOLLIN);
        continue;
      }
      ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
      if (r == 0 || (r < 0 && errno != EAGAIN)) {
        ::close(fd);  // EOF or error
        continue;
      }
      if (r < 0) continue;
      ssize_t w = ::send(fd, buf.data(), static_cast<size_t>(r), MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN) {
        ::close(fd);
        continue;
      }
      if (w < r) {
        size_t done = w > 0 ? static_cast<size_t>(w) : 0;
        conn.pending.assign(buf.data() + done, static_cast<size_t>(r) - done);
        set_events(ep, fd, EPOLLOUT);
      }
    }
  }
}
