// Shared bits of the peer echo servers: the tiny command line every peer
// takes (--port N [--host A] [--proto tcp|udp], plus any flags of its own
// given as Extra), a listening socket, and
// the "listening on HOST:PORT" line the harness reads. Header-only so each
// peer stays one small, readable file.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>

namespace peers {

struct Args {
  std::string host = "127.0.0.1";
  unsigned port = 0;
  std::string proto = "tcp";
};

// A peer's own "--flag VALUE" (or --flag=VALUE): *value keeps its default
// unless the flag is given.
struct Extra {
  const char* flag;
  std::string* value;
};

inline Args parse_args(int argc, char** argv, const char* name, std::initializer_list<Extra> extras = {}) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&](const char* flag) -> const char* {
      size_t n = std::strlen(flag);
      if (s == flag && i + 1 < argc) return argv[++i];
      if (s.size() > n + 1 && s.compare(0, n, flag) == 0 && s[n] == '=') return argv[i] + n + 1;
      return nullptr;
    };
    if (const char* v = value("--port")) {
      a.port = static_cast<unsigned>(std::strtoul(v, nullptr, 10));
    } else if (const char* v2 = value("--host")) {
      a.host = v2;
    } else if (const char* v3 = value("--proto")) {
      a.proto = v3;
    } else {
      bool known = false;
      for (const Extra& x : extras) {
        if (const char* v4 = value(x.flag)) {
          *x.value = v4;
          known = true;
          break;
        }
      }
      if (known) continue;
      std::fprintf(stderr, "usage: %s --port N [--host 127.0.0.1] [--proto tcp|udp]", name);
      for (const Extra& x : extras) std::fprintf(stderr, " [%s %s]", x.flag, x.value->c_str());
      std::fprintf(stderr, "\n");
      std::exit(s == "--help" || s == "-h" ? 0 : 2);
    }
  }
  if (a.port > 65535 || (a.proto != "tcp" && a.proto != "udp")) {
    std::fprintf(stderr, "%s: bad --port or --proto\n", name);
    std::exit(2);
  }
  return a;
}

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// A bound (and for TCP listening) IPv4 socket; *port gets the real port.
inline int bind_socket(const Args& a, bool udp, bool nonblocking, unsigned* port) {
  int fd = ::socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) die("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(a.port));
  if (::inet_pton(AF_INET, a.host.c_str(), &sa.sin_addr) != 1) {
    std::fprintf(stderr, "bad --host %s (IPv4 literal expected)\n", a.host.c_str());
    std::exit(2);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die("bind");
  if (!udp && ::listen(fd, 4096) < 0) die("listen");
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  *port = ntohs(sa.sin_port);
  return fd;
}

inline void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

inline void print_listening(const Args& a, unsigned port, const char* what) {
  std::printf("listening on %s:%u io=%s proto=%s\n", a.host.c_str(), port, what, a.proto.c_str());
  std::fflush(stdout);
}

}  // namespace peers
