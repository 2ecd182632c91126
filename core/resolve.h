// Host names to socket addresses (getaddrinfo, IPv4 and IPv6).
//
// resolve_numeric() never blocks and never asks a name service: it takes
// only numeric addresses ("127.0.0.1", "::1", "[::1]"), so callers try it
// first and numeric hosts cost nothing extra. resolve_host() asks the
// system's resolver (/etc/hosts, DNS ...) and may block for as long as
// resolv.conf's timeouts allow: never call it on an event loop's thread
// (core/resolver.h runs it on a helper thread; a command-line tool may call
// it up front, before any loop runs).
//
// Thread rules: both functions are thread-safe (they touch only their
// arguments).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

struct SocketAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;

  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&addr); }
};

// host:port for a numeric host, in out (one address). 0, or -EINVAL when
// host is not a numeric IPv4/IPv6 address. socktype: SOCK_STREAM or
// SOCK_DGRAM.
int resolve_numeric(const std::string& host, uint16_t port, int socktype,
                    std::vector<SocketAddress>* out);

// Every address host:port has (AF_UNSPEC: IPv4 and IPv6), in the order
// getaddrinfo prefers (RFC 6724), duplicates dropped. 0, or a -errno for
// the failure (see gai_error()), with getaddrinfo's own words
// (gai_strerror) in *error when error is not null.
int resolve_host(const std::string& host, uint16_t port, int socktype,
                 std::vector<SocketAddress>* out, std::string* error);

// The address alone, numeric ("127.0.0.1", "::1"; no port, no brackets):
// what takes a numeric host (rudp::ClientOptions, bind_udp) can use it.
std::string numeric_host(const SocketAddress& a);

// Whether the address is a loopback one (127.0.0.0/8, ::1).
bool is_loopback(const SocketAddress& a);

// getaddrinfo's EAI_* code as a -errno, so resolution failures travel
// where connect failures do: an unknown name (EAI_NONAME, EAI_NODATA,
// EAI_FAIL) is -EHOSTUNREACH, a temporary failure (EAI_AGAIN) -EAGAIN,
// EAI_MEMORY -ENOMEM, EAI_SYSTEM -sys_errno, anything else -EINVAL.
int gai_error(int eai, int sys_errno);

}  // namespace sluice
