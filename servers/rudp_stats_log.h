// RudpStatsLog: wraps a server's Handler for --proto rudp. Every callback
// goes to the wrapped handler unchanged (the servers run the very handler
// they run over TCP); on each close the connection's rudp figures
// (rudp::stats: RTT, window, retransmissions, losses) are logged at debug
// level, one line per connection, and summed for one info line at stop.
//
// Thread rules: like any Handler (core/handler.h): callbacks on the loop
// threads; the totals are atomic, summary() any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "core/handler.h"

namespace sluice::servers {

class RudpStatsLog final : public Handler {
 public:
  explicit RudpStatsLog(Handler& inner) : inner_(inner) {}

  void on_open(Connection& conn) override { inner_.on_open(conn); }
  void on_message(Connection& conn, std::string_view data) override {
    inner_.on_message(conn, data);
  }
  void on_peer_shutdown(Connection& conn) override { inner_.on_peer_shutdown(conn); }
  void on_high_water(Connection& conn, size_t pending) override {
    inner_.on_high_water(conn, pending);
  }
  void on_drain(Connection& conn) override { inner_.on_drain(conn); }
  void on_idle(Connection& conn, IdleKind kind) override { inner_.on_idle(conn, kind); }
  void on_close(Connection& conn, CloseReason reason, int err) override;
  void on_loop_start(EventLoop& loop, size_t index) override { inner_.on_loop_start(loop, index); }
  void on_server_stop(EventLoop& loop, size_t index) override {
    inner_.on_server_stop(loop, index);
  }

  // "rudp: 12 connections closed: 3400 packets sent, 0 B retransmitted, 0
  // lost, 0 spurious, 0 pto, mean srtt 0.05 ms" (no stats: "0 connections").
  std::string summary() const;
  // Summed over the closed connections (any thread).
  uint64_t retransmitted_bytes() const { return retransmitted_.load(std::memory_order_relaxed); }
  uint64_t lost_packets() const { return lost_.load(std::memory_order_relaxed); }

 private:
  Handler& inner_;
  std::atomic<uint64_t> closed_{0};
  std::atomic<uint64_t> with_stats_{0};
  std::atomic<uint64_t> packets_sent_{0};
  std::atomic<uint64_t> retransmitted_{0};
  std::atomic<uint64_t> lost_{0};
  std::atomic<uint64_t> spurious_{0};
  std::atomic<uint64_t> pto_{0};
  std::atomic<uint64_t> srtt_ns_{0};  // summed, for the mean
};

}  // namespace sluice::servers
