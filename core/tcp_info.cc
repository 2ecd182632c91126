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

int tcp_progress(int fd, TcpProgress* out) {
  tcp_info info;
  std::memset(&info, 0, sizeof info);
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) return -errno;
  // Kernels older than 4.1 return a shorter struct without the counter.
  if (len < offsetof(tcp_info, tcpi_bytes_acked) + sizeof info.tcpi_bytes_acked) return -ENOSYS;
  out->bytes_acked = info.tcpi_bytes_acked;
  out->since_data_recv = std::chrono::milliseconds(info.tcpi_last_data_recv);
  out->since_ack_recv = std::chrono::milliseconds(info.tcpi_last_ack_recv);
  return 0;
}

}  // namespace sluice
