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

int64_t tcp_rtt_us(int fd) {
  tcp_info info;
  std::memset(&info, 0, sizeof info);
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) return -errno;
  return info.tcpi_rtt;
}

int tcp_fin_acked(int fd) {
  tcp_info info;
  std::memset(&info, 0, sizeof info);
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) return -errno;
  // The kernel's TCP states (include/net/tcp_states.h; glibc's
  // <netinet/tcp.h> names them, but cannot share this file): FIN_WAIT2 = 5,
  // TIME_WAIT = 6 (both FINs exchanged and ours acknowledged), CLOSE = 7
  // (nothing left to deliver: closed or reset). FIN_WAIT1 and CLOSING mean
  // ours is still unacknowledged.
  switch (info.tcpi_state) {
    case 5: case 6: case 7: return 1;
    default: return 0;
  }
}

}  // namespace sluice
