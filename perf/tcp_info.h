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
  bool has_bytes = false;      // the kernel filled the byte counters (4.6+ / 4.19+)
};

// false (errno set) if getsockopt(TCP_INFO) fails.
bool tcp_counters(int fd, TcpCounters* out);

}  // namespace sluice::perf
