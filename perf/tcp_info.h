// TCP_INFO figures the bench tools report (perf/rudp_bulk, perf/ccbench.py):
// the kernel's own count of retransmitted bytes. Kept in a translation unit
// of its own because <linux/tcp.h> (which has the 64-bit byte counters)
// clashes with glibc's <netinet/tcp.h>.
#pragma once

#include <cstdint>

namespace sluice::perf {

struct TcpCounters {
  uint64_t bytes_sent = 0;     // tcpi_bytes_sent: data bytes sent, retransmissions included
  uint64_t bytes_retrans = 0;  // tcpi_bytes_retrans
  uint64_t bytes_acked = 0;    // tcpi_bytes_acked
  uint32_t total_retrans = 0;  // tcpi_total_retrans (segments)
  uint32_t snd_mss = 0;
  double rtt_ms = 0, min_rtt_ms = 0;
  uint64_t cwnd_bytes = 0;     // tcpi_snd_cwnd x tcpi_snd_mss
  uint64_t pacing_rate = 0;    // bytes/s (tcpi_pacing_rate)
  uint64_t delivery_rate = 0;  // bytes/s (tcpi_delivery_rate)
  uint32_t lost = 0;           // tcpi_lost: segments now presumed lost
  bool has_bytes = false;      // the kernel filled the byte counters (4.6+ / 4.19+)
};

// false (errno set) if getsockopt(TCP_INFO) fails.
bool tcp_counters(int fd, TcpCounters* out);

}  // namespace sluice::perf
