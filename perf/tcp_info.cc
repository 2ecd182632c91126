#include "perf/tcp_info.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstring>

namespace sluice::perf {

bool tcp_counters(int fd, TcpCounters* out) {
  struct tcp_info ti;
  std::memset(&ti, 0, sizeof ti);
  socklen_t len = sizeof ti;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return false;
  *out = TcpCounters{};
  out->total_retrans = ti.tcpi_total_retrans;
  out->snd_mss = ti.tcpi_snd_mss;
  out->rtt_ms = ti.tcpi_rtt / 1000.0;
  out->cwnd_bytes = uint64_t{ti.tcpi_snd_cwnd} * ti.tcpi_snd_mss;
  out->lost = ti.tcpi_lost;
  if (len >= offsetof(struct tcp_info, tcpi_pacing_rate) + sizeof ti.tcpi_pacing_rate)
    out->pacing_rate = ti.tcpi_pacing_rate;
  if (len >= offsetof(struct tcp_info, tcpi_delivery_rate) + sizeof ti.tcpi_delivery_rate)
    out->delivery_rate = ti.tcpi_delivery_rate;
  if (len >= offsetof(struct tcp_info, tcpi_min_rtt) + sizeof ti.tcpi_min_rtt)
    out->min_rtt_ms = ti.tcpi_min_rtt / 1000.0;
  if (len >= offsetof(struct tcp_info, tcpi_bytes_retrans) + sizeof ti.tcpi_bytes_retrans) {
    out->has_bytes = true;
    out->bytes_sent = ti.tcpi_bytes_sent;
    out->bytes_retrans = ti.tcpi_bytes_retrans;
    out->bytes_acked = ti.tcpi_bytes_acked;
  }
  return true;
}

}  // namespace sluice::perf
