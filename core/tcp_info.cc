// TCP_INFO lives in its own file: <linux/tcp.h> (which has
// tcpi_bytes_acked) and glibc's <netinet/tcp.h> cannot share a
// translation unit.
#include <linux/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "core/net.h"

namespace sluice {

int64_t tcp_bytes_acked(int fd) {
  tcp_info info;
  std::memset(&info, 0, sizeof info);
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) return -errno;
  // Kernels older than 4.1 return a shorter struct without the counter.
  if (len < offsetof(tcp_info, tcpi_bytes_acked) + sizeof info.tcpi_bytes_acked) return -ENOSYS;
  return static_cast<int64_t>(info.tcpi_bytes_acked);
}

}  // namespace sluice
