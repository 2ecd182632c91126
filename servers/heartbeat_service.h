// The heartbeat protocol's server side (docs/PROTOCOL.md), as handlers for
// Server (TCP) and UdpServer (UDP): answer every PING with a PONG, echo
// DATA, and drop a peer when nothing has arrived from it for
// interval x misses (reader-idle). Each join and each drop is ONE log line
// naming the peer and the reason (up to peer_lines_per_s a second per
// loop; the rest are counted and summarised):
//
//   join 127.0.0.1:50312 proto=tcp conn=#3
//   drop 127.0.0.1:50312 proto=tcp conn=#3 reason=timeout missed=3
//
// Drop reasons: "timeout missed=N", "closed by peer", "protocol error (...)",
// "connection error (...)", "server stopping".
//
// Thread rules: one handler object serves every loop of its server; per
// peer state lives with the connection (TCP) or in a per-endpoint table
// (UDP), touched only by that loop's thread. Counters are atomic. The
// observer (for tests) is called on loop threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/handler.h"
#include "core/idle_state.h"
#include "core/metrics.h"
#include "core/timer_queue.h"
#include "core/udp_endpoint.h"

namespace sluice::servers {

struct HeartbeatOptions {
  std::chrono::milliseconds interval{1000};
  int misses = 3;
  // UDP: most peers remembered per socket; datagrams from further new
  // addresses are ignored (a spoofing sender cannot grow the table).
  size_t max_udp_peers = 100000;
  // Join and drop lines each loop prints per second (0: all of them).
  // Past that, lines are counted, and the next line printed after the
  // second is over says how many were not shown: a million peers joining
  // must not become a million log lines.
  uint32_t peer_lines_per_s = 20;
  // The connection handler's name for its transport in join/drop lines:
  // "tcp", or "rudp" when the same handler serves rudp connections.
  std::string stream_proto = "tcp";
  // TCP: at each PING, record the kernel's smoothed RTT to the peer in
  // HeartbeatCounters::rtt (one getsockopt per PING; for metrics).
  bool sample_rtt = false;

  Clock::duration timeout() const { return interval * misses; }
  // What a Server needs for this service's TCP handler.
  IdleOptions idle() const {
    IdleOptions o;
    o.reader = timeout();
    return o;
  }
};

// A join or a drop, for tests and metrics.
struct PeerEvent {
  enum class Kind { kJoin, kDrop };
  Kind kind;
  std::string peer;
  std::string reason;  // drops only
  Clock::time_point at;
};
using PeerObserver = std::function<void(const PeerEvent&)>;

struct HeartbeatCounters {
  std::atomic<uint64_t> joins{0};
  std::atomic<uint64_t> drops{0};
  std::atomic<uint64_t> pings{0};
  std::atomic<uint64_t> data{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> timeouts{0};  // peers found silent (each then dropped)
  metrics::SharedHistogram rtt;       // HeartbeatOptions::sample_rtt
};

// TCP: use with a Server built with heartbeat's length-prefix codec
// (codec::heartbeat::make_tcp_codec()) and ServerOptions::idle = idle().
class HeartbeatTcpHandler final : public Handler {
 public:
  explicit HeartbeatTcpHandler(HeartbeatOptions options, PeerObserver observer = {});

  void on_open(Connection& conn) override;
  void on_message(Connection& conn, std::string_view payload) override;
  void on_idle(Connection& conn, IdleKind kind) override;
  void on_close(Connection& conn, CloseReason reason, int err) override;

  const HeartbeatCounters& counters() const { return counters_; }

 private:
  HeartbeatOptions options_;
  PeerObserver observer_;
  HeartbeatCounters counters_;
};

// UDP: use with a UdpServer.
class HeartbeatUdpHandler final : public DatagramHandler {
 public:
  explicit HeartbeatUdpHandler(HeartbeatOptions options, PeerObserver observer = {});
  ~HeartbeatUdpHandler() override;

  void on_open(UdpEndpoint& ep) override;
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override;
  void on_close(UdpEndpoint& ep) override;

  const HeartbeatCounters& counters() const { return counters_; }

 private:
  class PeerTable;
  friend class PeerTable;
  // `at`: the endpoint's loop clock (virtual time on a simulated back end).
  void notify(PeerEvent::Kind kind, const std::string& peer, const std::string& reason,
              Clock::time_point at);

  HeartbeatOptions options_;
  PeerObserver observer_;
  HeartbeatCounters counters_;
  std::mutex mu_;  // guards tables_ (touched on open/close only)
  std::unordered_map<UdpEndpoint*, std::unique_ptr<PeerTable>> tables_;
};

}  // namespace sluice::servers
