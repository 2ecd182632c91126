#include "core/resolve.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sluice {
namespace {

// A bracketed IPv6 literal ("[::1]", as in URLs) names the same address.
std::string unbracket(const std::string& host) {
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    return host.substr(1, host.size() - 2);
  }
  return host;
}

int lookup(const std::string& host, uint16_t port, int socktype, int flags,
           std::vector<SocketAddress>* out, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = flags | AI_NUMERICSERV;
  const std::string h = unbracket(host);
  const std::string service = std::to_string(port);
  addrinfo* res = nullptr;
  errno = 0;
  const int rc = ::getaddrinfo(h.c_str(), service.c_str(), &hints, &res);
  const int err = errno;  // EAI_SYSTEM's detail, before anything else runs
  if (rc != 0) {
    if (error) *error = rc == EAI_SYSTEM ? std::strerror(err) : ::gai_strerror(rc);
    return gai_error(rc, err);
  }
  out->clear();
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    SocketAddress a;
    std::memcpy(&a.addr, ai->ai_addr, ai->ai_addrlen);
    a.len = ai->ai_addrlen;
    // /etc/hosts may list one address twice (and without a socktype
    // getaddrinfo repeats each per protocol): try each once.
    const bool seen = std::any_of(out->begin(), out->end(), [&](const SocketAddress& b) {
      return b.len == a.len && std::memcmp(&b.addr, &a.addr, a.len) == 0;
    });
    if (!seen) out->push_back(a);
  }
  ::freeaddrinfo(res);
  if (out->empty()) {
    if (error) *error = "no IPv4 or IPv6 address";
    return -EHOSTUNREACH;
  }
  return 0;
}

}  // namespace

int resolve_numeric(const std::string& host, uint16_t port, int socktype,
                    std::vector<SocketAddress>* out) {
  // AI_NUMERICHOST: getaddrinfo parses the literal and never asks a name
  // service, so this cannot block.
  const int rc = lookup(host, port, socktype, AI_NUMERICHOST, out, nullptr);
  return rc == 0 ? 0 : -EINVAL;
}

int resolve_host(const std::string& host, uint16_t port, int socktype,
                 std::vector<SocketAddress>* out, std::string* error) {
  if (host.empty()) {
    if (error) *error = "empty host name";
    return -EINVAL;
  }
  return lookup(host, port, socktype, 0, out, error);
}

std::string numeric_host(const SocketAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.addr.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.addr)->sin_addr, buf, sizeof buf);
  } else if (a.addr.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.addr)->sin6_addr, buf,
                sizeof buf);
  }
  return buf;
}

bool is_loopback(const SocketAddress& a) {
  if (a.addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a.addr);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.addr);
  return a.addr.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

int gai_error(int eai, int sys_errno) {
  switch (eai) {
    case 0:
      return 0;
    case EAI_NONAME:
    case EAI_FAIL:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
      return -EHOSTUNREACH;
    case EAI_AGAIN:
      return -EAGAIN;
    case EAI_MEMORY:
      return -ENOMEM;
    case EAI_SYSTEM:
      return sys_errno > 0 ? -sys_errno : -EIO;
    default:
      return -EINVAL;
  }
}

}  // namespace sluice
