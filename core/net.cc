#include "core/net.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sluice {

int make_address(const std::string& host, uint16_t port, sockaddr_storage* addr,
                 socklen_t* len) {
  std::memset(addr, 0, sizeof *addr);
  const std::string h = host == "localhost" ? "127.0.0.1" : host;
  auto* v4 = reinterpret_cast<sockaddr_in*>(addr);
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof *v4;
    return 0;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(addr);
  std::string h6 = h;
  if (h6.size() > 2 && h6.front() == '[' && h6.back() == ']') {
    h6 = h6.substr(1, h6.size() - 2);
  }
  if (::inet_pton(AF_INET6, h6.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof *v6;
    return 0;
  }
  return -EINVAL;
}

int listen_tcp(const std::string& host, uint16_t port, const ListenOptions& opts) {
  sockaddr_storage addr;
  socklen_t len;
  if (int rc = make_address(host, port, &addr, &len); rc < 0) return rc;
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (opts.reuse_addr) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (opts.reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (opts.defer_accept_s > 0 &&
      ::setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &opts.defer_accept_s,
                   sizeof opts.defer_accept_s) < 0) {
    const int err = errno;
    ::close(fd);
    return -err;
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0 ||
      ::listen(fd, opts.backlog) < 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

namespace {

// One integer from /proc/sys (this network namespace's view), or -1.
int read_sysctl(const char* path) {
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return -1;
  int v = -1;
  if (std::fscanf(f, "%d", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

}  // namespace

std::vector<std::string> listen_warnings(const ListenOptions& opts) {
  return listen_warnings(opts, read_sysctl("/proc/sys/net/ipv4/tcp_syncookies"),
                         read_sysctl("/proc/sys/net/core/somaxconn"),
                         read_sysctl("/proc/sys/net/ipv4/tcp_max_syn_backlog"));
}

std::vector<std::string> listen_warnings(const ListenOptions& opts, int syncookies,
                                         int somaxconn, int max_syn_backlog) {
  std::vector<std::string> out;
  if (syncookies == 0) {
    std::string w = "net.ipv4.tcp_syncookies is 0: a SYN flood fills the SYN queue";
    if (max_syn_backlog > 0) w += " (tcp_max_syn_backlog " + std::to_string(max_syn_backlog) + ")";
    w += " and new clients time out; set it to 1 (the default)";
    out.push_back(std::move(w));
  }
  if (somaxconn > 0 && opts.backlog > somaxconn) {
    out.push_back("listen backlog " + std::to_string(opts.backlog) +
                  " is capped by net.core.somaxconn " + std::to_string(somaxconn) +
                  ": raise it to queue that many connections");
  }
  return out;
}

int reserve_port(const std::string& host, int type, uint16_t* port) {
  sockaddr_storage addr;
  socklen_t len;
  if (int rc = make_address(host, 0, &addr, &len); rc < 0) return rc;
  int fd = ::socket(addr.ss_family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    const int err = errno;
    ::close(fd);
    return -err;
  }
  *port = local_port(fd);
  return fd;
}

int apply_tcp_options(int fd, const TcpOptions& o) {
  int first = 0;
  auto set = [&](int level, int name, int value) {
    if (::setsockopt(fd, level, name, &value, sizeof value) < 0 && first == 0) first = -errno;
  };
  set(IPPROTO_TCP, TCP_NODELAY, o.no_delay ? 1 : 0);
  if (o.keep_alive) {
    set(SOL_SOCKET, SO_KEEPALIVE, 1);
    if (o.keep_idle_s > 0) set(IPPROTO_TCP, TCP_KEEPIDLE, o.keep_idle_s);
    if (o.keep_interval_s > 0) set(IPPROTO_TCP, TCP_KEEPINTVL, o.keep_interval_s);
    if (o.keep_count > 0) set(IPPROTO_TCP, TCP_KEEPCNT, o.keep_count);
  }
  if (o.user_timeout.count() > 0) {
    set(IPPROTO_TCP, TCP_USER_TIMEOUT, static_cast<int>(o.user_timeout.count()));
  }
  return first;
}

int set_udp_ecn(int fd, bool receive, uint8_t codepoint) {
  sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return -errno;
  const int on = receive ? 1 : 0;
  auto set_tos = [&](int level, int name) {
    int tos = 0;
    socklen_t l = sizeof tos;
    if (::getsockopt(fd, level, name, &tos, &l) < 0) return -errno;
    tos = (tos & ~3) | (codepoint & 3);
    return ::setsockopt(fd, level, name, &tos, sizeof tos) < 0 ? -errno : 0;
  };
  if (addr.ss_family == AF_INET6) {
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &on, sizeof on) < 0) return -errno;
    if (int rc = set_tos(IPPROTO_IPV6, IPV6_TCLASS); rc < 0) return rc;
    // IPv4 peers of a dual-stack socket.
    ::setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &on, sizeof on);
    set_tos(IPPROTO_IP, IP_TOS);
    return 0;
  }
  if (::setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &on, sizeof on) < 0) return -errno;
  return set_tos(IPPROTO_IP, IP_TOS);
}

int bind_udp(const std::string& host, uint16_t port, const UdpSocketOptions& o) {
  sockaddr_storage addr;
  socklen_t len;
  if (int rc = make_address(host, port, &addr, &len); rc < 0) return rc;
  int fd = ::socket(addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  int err = 0;
  if (o.reuse_addr && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) err = errno;
  if (!err && o.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
    err = errno;
  }
  // Buffer sizes are hints the kernel caps (rmem_max); failure is not fatal.
  if (o.rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o.rcvbuf, sizeof o.rcvbuf);
  if (o.sndbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o.sndbuf, sizeof o.sndbuf);
  if (!err && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) err = errno;
  if (err) {
    ::close(fd);
    return -err;
  }
  return fd;
}

std::string address_name(const sockaddr* addr, socklen_t len) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in a;
    std::memcpy(&a, addr, sizeof a);
    ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(a.sin_port));
  }
  if (addr->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 a;
    std::memcpy(&a, addr, sizeof a);
    ::inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(a.sin6_port));
  }
  return "?";
}

uint16_t local_port(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return 0;
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

std::string peer_name(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return "?";
  return address_name(reinterpret_cast<const sockaddr*>(&addr), len);
}

PeerAddr PeerAddr::of(int fd) {
  sockaddr_storage addr;
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return {};
  return from(reinterpret_cast<const sockaddr*>(&addr), len);
}

PeerAddr PeerAddr::from(const sockaddr* sa, socklen_t len) {
  PeerAddr p;
  sockaddr_storage addr{};
  std::memcpy(&addr, sa, std::min<size_t>(len, sizeof addr));
  if (addr.ss_family == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in a;
    std::memcpy(&a, &addr, sizeof a);
    p.family = AF_INET;
    p.port = ntohs(a.sin_port);
    std::memcpy(p.addr, &a.sin_addr, sizeof a.sin_addr);
  } else if (addr.ss_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 a;
    std::memcpy(&a, &addr, sizeof a);
    p.family = AF_INET6;
    p.port = ntohs(a.sin6_port);
    std::memcpy(p.addr, &a.sin6_addr, sizeof a.sin6_addr);
  }
  return p;
}

std::string PeerAddr::str() const {
  char buf[INET6_ADDRSTRLEN];
  if (family == AF_INET) {
    ::inet_ntop(AF_INET, addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(port);
  }
  if (family == AF_INET6) {
    ::inet_ntop(AF_INET6, addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(port);
  }
  return "?";
}

size_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  return static_cast<size_t>(rl.rlim_cur);
}

int connect_tcp(const std::string& host, uint16_t port) {
  sockaddr_storage addr;
  socklen_t len;
  if (int rc = make_address(host, port, &addr, &len); rc < 0) return rc;
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool input_queued(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

}  // namespace sluice
