// Small socket helpers shared by servers and clients. Thread-safe (they
// touch only their arguments). Errors are returned as -errno.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace sluice {

// Resolves a numeric host ("127.0.0.1", "::1", "0.0.0.0", "localhost") and
// port into addr. Returns 0 or -EINVAL.
int make_address(const std::string& host, uint16_t port, sockaddr_storage* addr,
                 socklen_t* len);

struct ListenOptions {
  int backlog = 1024;
  bool reuse_addr = true;
  bool reuse_port = false;
};

// socket + bind + listen, close-on-exec. Returns the fd or -errno.
int listen_tcp(const std::string& host, uint16_t port, const ListenOptions& opts);

// The port a bound socket got (for port 0), or 0 on error.
uint16_t local_port(int fd);

// "host:port" of the peer ("[::1]:port" for IPv6), or "?" on error.
std::string peer_name(int fd);

// Blocking connect with close-on-exec; returns fd or -errno. For tests and
// simple clients.
int connect_tcp(const std::string& host, uint16_t port);

}  // namespace sluice
