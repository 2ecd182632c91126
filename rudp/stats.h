// Per-connection rudp statistics (rudp::stats(conn), printed by the tools).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sluice::rudp {

struct Stats {
  std::chrono::nanoseconds srtt{};
  std::chrono::nanoseconds rttvar{};
  std::chrono::nanoseconds min_rtt{};
  uint64_t cwnd = 0;
  uint64_t pacing_rate = 0;    // bytes/s the controller paces at (0: unpaced)
  uint64_t delivery_rate = 0;  // bytes/s, the newest delivery-rate sample
  std::string cc;              // controller name and state ("cubic/css")
  uint64_t bytes_in_flight = 0;
  uint64_t packets_sent = 0;
  uint64_t bytes_sent = 0;        // datagram bytes, headers included
  uint64_t packets_received = 0;
  uint64_t stream_bytes_sent = 0;  // first transmissions
  uint64_t retransmitted = 0;      // stream bytes sent again (after a loss or a probe)
  uint64_t redundant = 0;          // unacknowledged small data sent again with new (Options::redundant_bytes)
  uint64_t packets_lost = 0;       // declared lost
  uint64_t spurious = 0;           // declared lost, then acknowledged after all
  uint64_t duplicates = 0;         // packets received twice (dropped)
  uint64_t pto_count = 0;          // probe timeouts
  uint64_t unreliable_sent = 0;
  uint64_t unreliable_dropped = 0;  // queue overflow here, or stale/paused on receipt
  uint64_t protocol_errors = 0;     // the peer broke the protocol: reset
  uint64_t malformed = 0;           // packets that failed to parse (dropped)
  uint64_t local_drops = 0;         // the socket's queue was full: sent as lost
  uint64_t persistent_congestion = 0;  // persistent congestion declared (RFC 9002 §7.6)
  uint64_t ecn_ce = 0;              // CE marks the peer reported on our packets (congestion events)
  uint64_t ecn_ce_received = 0;     // packets that reached us marked CE
  bool ecn_failed = false;          // ECN validation failed: no marking, loss only
  uint64_t recv_buffered = 0;       // peer's bytes held here: not yet taken, or out of order
  uint64_t send_buffered = 0;       // bytes taken from the connection, not yet acknowledged
  std::string str() const;  // one line, for logs and tools
};

}  // namespace sluice::rudp
