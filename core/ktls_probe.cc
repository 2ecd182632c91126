#include "core/ktls_probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace sluice {

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string failed(const char* what, int err) {
  return fmt::format("probe failed: {}: {}", what, std::strerror(err));
}

KtlsProbe run_probe() {
  KtlsProbe p;
  Fd lfd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (lfd.fd < 0) {
    p.detail = failed("socket", errno);
    return p;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(lfd.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      ::listen(lfd.fd, 1) < 0 ||
      ::getsockname(lfd.fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    p.detail = failed("loopback listener", errno);
    return p;
  }
  Fd cfd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  // A blocking connect to our own loopback listener completes at once
  // (the kernel queues it; no accept is needed for ESTABLISHED).
  if (cfd.fd < 0 || ::connect(cfd.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    p.detail = failed("loopback connect", errno);
    return p;
  }
  // The ULP needs an established socket; it is only attached here, no
  // keys are set, and the socket is closed right after.
  static const char kUlp[] = "tls";
  if (::setsockopt(cfd.fd, SOL_TCP, TCP_ULP, kUlp, sizeof kUlp - 1) < 0) {
    const int err = errno;
    p.detail = err == ENOENT
                   ? "the kernel has no tls module (TCP_ULP \"tls\": ENOENT; CONFIG_TLS off?)"
                   : fmt::format("TCP_ULP \"tls\" refused: {}", std::strerror(err));
    return p;
  }
  p.available = true;
  p.detail = "the kernel accepts TCP_ULP \"tls\"";
  return p;
}

}  // namespace

const KtlsProbe& ktls_probe() {
  static const KtlsProbe probe = run_probe();
  return probe;
}

}  // namespace sluice
