#include "servers/rudp_stats_log.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/connection.h"
#include "rudp/rudp.h"

namespace sluice::servers {

void RudpStatsLog::on_close(Connection& conn, CloseReason reason, int err) {
  closed_.fetch_add(1, std::memory_order_relaxed);
  // Read before the wrapped handler runs: it may abort or forget the
  // connection's state, and the session may let go of it after on_close.
  if (std::optional<rudp::Stats> s = rudp::stats(conn)) {
    with_stats_.fetch_add(1, std::memory_order_relaxed);
    packets_sent_.fetch_add(s->packets_sent, std::memory_order_relaxed);
    retransmitted_.fetch_add(s->retransmitted, std::memory_order_relaxed);
    lost_.fetch_add(s->packets_lost, std::memory_order_relaxed);
    spurious_.fetch_add(s->spurious, std::memory_order_relaxed);
    pto_.fetch_add(s->pto_count, std::memory_order_relaxed);
    srtt_ns_.fetch_add(static_cast<uint64_t>(s->srtt.count()), std::memory_order_relaxed);
    spdlog::debug("conn #{} {}: closed ({}): rudp {}", conn.id(), conn.peer(), to_string(reason),
                  s->str());
  } else {
    spdlog::debug("conn #{} {}: closed ({}): no rudp figures (session already gone)", conn.id(),
                  conn.peer(), to_string(reason));
  }
  inner_.on_close(conn, reason, err);
}

std::string RudpStatsLog::summary() const {
  const uint64_t n = with_stats_.load(std::memory_order_relaxed);
  const double mean_srtt_ms =
      n ? static_cast<double>(srtt_ns_.load(std::memory_order_relaxed)) / 1e6 / n : 0.0;
  return fmt::format(
      "rudp: {} connections closed ({} with figures): {} packets sent, {} B retransmitted, {} "
      "lost, {} spurious, {} pto, mean srtt {:.3f} ms",
      closed_.load(std::memory_order_relaxed), n, packets_sent_.load(std::memory_order_relaxed),
      retransmitted_.load(std::memory_order_relaxed), lost_.load(std::memory_order_relaxed),
      spurious_.load(std::memory_order_relaxed), pto_.load(std::memory_order_relaxed),
      mean_srtt_ms);
}

}  // namespace sluice::servers
