#include "servers/heartbeat_service.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "codec/heartbeat.h"
#include "core/log.h"
#include "core/connection.h"
#include "core/event_loop.h"
#include "core/idle_timer.h"
#include "core/net.h"

namespace sluice::servers {

namespace hb = codec::heartbeat;

namespace {

// Per-connection state (Connection::state<TcpPeer>()).
struct TcpPeer {
  std::string reason;  // set when this side decides to drop the peer
};

std::string timeout_reason(const HeartbeatOptions& o) {
  return fmt::format("timeout missed={}", o.misses);
}

// Each loop's budget of join/drop lines (HeartbeatOptions::peer_lines_per_s),
// on the loop's clock (virtual under simulation). Loop thread only.
class PeerLines {
 public:
  bool allow(Clock::time_point now, uint32_t per_s, bool drop) {
    if (per_s == 0) return true;
    if (now - window_ >= std::chrono::seconds(1)) {
      if (joins_ + drops_ > 0) {
        spdlog::info("{} join and {} drop lines not shown in {:.1f} s (over {} a second on "
                     "this loop)",
                     joins_, drops_,
                     std::chrono::duration<double>(now - window_).count(), per_s);
      }
      window_ = now;
      used_ = joins_ = drops_ = 0;
    }
    if (used_ < per_s) {
      ++used_;
      return true;
    }
    ++(drop ? drops_ : joins_);
    return false;
  }

 private:
  Clock::time_point window_{};
  uint32_t used_ = 0;
  uint64_t joins_ = 0, drops_ = 0;
};
thread_local PeerLines t_peer_lines;

void log_drop(std::string_view proto, const std::string& peer, std::string_view conn,
              const std::string& reason) {
  // Protocol errors are the peer's fault and worth a warning; the rest is
  // ordinary churn.
  const auto level = reason.rfind("protocol error", 0) == 0 ? spdlog::level::warn
                                                            : spdlog::level::info;
  spdlog::log(level, "drop {} proto={}{} reason={}", peer, proto, conn, reason);
}

}  // namespace

// ---------------------------------------------------------------- TCP ----

HeartbeatTcpHandler::HeartbeatTcpHandler(HeartbeatOptions options, PeerObserver observer)
    : options_(options), observer_(std::move(observer)) {}

void HeartbeatTcpHandler::on_open(Connection& conn) {
  conn.state_slot().emplace<TcpPeer>();
  counters_.joins.fetch_add(1, std::memory_order_relaxed);
  if (t_peer_lines.allow(conn.loop().clock(), options_.peer_lines_per_s, false)) {
    spdlog::info("join {} proto={} conn=#{}", conn.peer(), options_.stream_proto, conn.id());
  }
  if (observer_) observer_({PeerEvent::Kind::kJoin, conn.peer(), "", conn.loop().clock()});
}

void HeartbeatTcpHandler::on_message(Connection& conn, std::string_view payload) {
  hb::Message m;
  const hb::ParseError err = hb::parse(payload, &m);
  if (err != hb::ParseError::kNone) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    if (auto* p = conn.find_state<TcpPeer>(); p && p->reason.empty()) {
      p->reason = "protocol error (" + hb::describe(err, payload) + ")";
    }
    conn.close();  // graceful: PONGs already owed still go out, then FIN (lingering close)
    return;
  }
  switch (m.type) {
    case hb::Type::kPing:
      counters_.pings.fetch_add(1, std::memory_order_relaxed);
      conn.send(hb::view(hb::pong_for(m)));
      if (options_.sample_rtt && conn.fd() >= 0) {  // rudp connections have no descriptor
        if (const int64_t us = tcp_rtt_us(conn.fd()); us > 0) {
          counters_.rtt.observe_ns(static_cast<uint64_t>(us) * 1000);
        }
      }
      break;
    case hb::Type::kData:
      counters_.data.fetch_add(1, std::memory_order_relaxed);
      conn.send(payload);
      break;
    case hb::Type::kPong:
      break;  // the server sends no PINGs; a stray PONG is harmless
  }
}

void HeartbeatTcpHandler::on_idle(Connection& conn, IdleKind kind) {
  if (kind != IdleKind::kReader) return;
  counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
  if (auto* p = conn.find_state<TcpPeer>(); p && p->reason.empty()) {
    p->reason = timeout_reason(options_);
  }
  // The peer is presumed dead: do not wait for it to take what it is owed.
  conn.abort();
}

void HeartbeatTcpHandler::on_close(Connection& conn, CloseReason reason, int err) {
  std::string why;
  if (auto* p = conn.find_state<TcpPeer>(); p && !p->reason.empty()) {
    why = p->reason;
  } else {
    switch (reason) {
      case CloseReason::kPeerClosed:
        why = "closed by peer";
        break;
      case CloseReason::kPeerReset:
        why = err == -ECONNRESET ? "closed by peer (reset)"
                                 : fmt::format("connection error ({})", std::strerror(-err));
        break;
      case CloseReason::kFrameError:
        counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        why = "protocol error (" + conn.close_detail() + ")";
        break;
      case CloseReason::kServerStop:
        why = "server stopping";
        break;
      case CloseReason::kLocal:
        why = "closed locally";
        break;
      case CloseReason::kRefused:
      case CloseReason::kTooSlow:
      case CloseReason::kIdle:
        why = to_string(reason);
        break;
    }
  }
  counters_.drops.fetch_add(1, std::memory_order_relaxed);
  if (t_peer_lines.allow(conn.loop().clock(), options_.peer_lines_per_s, true)) {
    log_drop(options_.stream_proto, conn.peer(), fmt::format(" conn=#{}", conn.id()), why);
  }
  if (observer_) observer_({PeerEvent::Kind::kDrop, conn.peer(), why, conn.loop().clock()});
}

// ---------------------------------------------------------------- UDP ----

// The peers one UDP socket has heard from, keyed by address. Loop thread of
// that socket only.
class HeartbeatUdpHandler::PeerTable {
 public:
  PeerTable(HeartbeatUdpHandler& h, UdpEndpoint& ep) : h_(h), ep_(ep) {}

  void on_datagram(const io::Datagram& d) {
    Key key;
    if (!make_key(d.addr, d.addr_len, &key)) return;
    hb::Message m;
    const hb::ParseError err = hb::parse(d.data, &m);
    auto it = peers_.find(key);
    if (it == peers_.end()) {
      if (err != hb::ParseError::kNone) {
        // Junk from an address we never accepted: nothing to drop, and no
        // state is created for it.
        h_.counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("udp: ignored a datagram from {}: {}", address_name(d.addr, d.addr_len),
                      hb::describe(err, d.data));
        return;
      }
      if (peers_.size() >= h_.options_.max_udp_peers) {
        ++refused_;
        if (uint64_t skipped = 0; refusal_log_.allow(ep_.loop().clock(), &skipped)) {
          spdlog::warn("udp: peer table full ({} peers); ignoring new senders ({} so far)",
                       peers_.size(), refused_);
        }
        return;
      }
      it = join(key, d);
    }
    Peer& peer = *it->second;
    peer.idle->on_read();
    peer.reprieved = false;
    if (err != hb::ParseError::kNone) {
      h_.counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      drop(key, "protocol error (" + hb::describe(err, d.data) + ")");
      return;
    }
    switch (m.type) {
      case hb::Type::kPing:
        h_.counters_.pings.fetch_add(1, std::memory_order_relaxed);
        ep_.send_to(d.addr, d.addr_len, hb::view(hb::pong_for(m)));
        break;
      case hb::Type::kData:
        h_.counters_.data.fetch_add(1, std::memory_order_relaxed);
        ep_.send_to(d.addr, d.addr_len, d.data);
        break;
      case hb::Type::kPong:
        break;
    }
  }

  // The socket is closing: every peer is dropped.
  void drop_all(const std::string& reason) {
    while (!peers_.empty()) drop(peers_.begin()->first, reason);
  }

 private:
  // Address bytes: family tag, port, address (4 or 16 bytes).
  struct Key {
    std::array<char, 20> b{};
    uint8_t n = 0;
    bool operator==(const Key& o) const {
      return n == o.n && std::memcmp(b.data(), o.b.data(), n) == 0;
    }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<std::string_view>()(std::string_view(k.b.data(), k.n));
    }
  };
  struct Peer {
    std::string name;
    std::unique_ptr<IdleTimer> idle;
    // A timeout found the socket holding unread datagrams (they may be
    // this peer's: the loop, or a blocking receiver thread, is behind), so
    // the verdict waited one more window. Cleared by the peer's next
    // datagram.
    bool reprieved = false;
  };

  static bool make_key(const sockaddr* a, socklen_t len, Key* k) {
    if (a->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
      sockaddr_in v4;
      std::memcpy(&v4, a, sizeof v4);
      k->b[0] = 4;
      std::memcpy(&k->b[1], &v4.sin_port, 2);
      std::memcpy(&k->b[3], &v4.sin_addr, 4);
      k->n = 7;
      return true;
    }
    if (a->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
      sockaddr_in6 v6;
      std::memcpy(&v6, a, sizeof v6);
      k->b[0] = 6;
      std::memcpy(&k->b[1], &v6.sin6_port, 2);
      std::memcpy(&k->b[3], &v6.sin6_addr, 16);
      k->n = 19;
      return true;
    }
    return false;
  }

  using Map = std::unordered_map<Key, std::unique_ptr<Peer>, KeyHash>;

  Map::iterator join(const Key& key, const io::Datagram& d) {
    auto peer = std::make_unique<Peer>();
    peer->name = address_name(d.addr, d.addr_len);
    // `this` outlives the timer: the table destroys its peers (and so
    // their timers) before it goes.
    peer->idle = std::make_unique<IdleTimer>(ep_.loop(), [this, key](IdleKind kind) {
      if (kind != IdleKind::kReader) return;
      // One socket serves every peer, so the kernel cannot say whose
      // datagrams are waiting: while any are, give the peer one more
      // window rather than drop it for what we have not read yet. (Once
      // only: under sustained overload the queue never empties.)
      Peer& p = *peers_.at(key);
      if (!p.reprieved && input_queued(ep_.fd())) {
        p.reprieved = true;
        return;
      }
      h_.counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
      drop(key, timeout_reason(h_.options_));
    });
    peer->idle->start(h_.options_.idle());
    auto it = peers_.emplace(key, std::move(peer)).first;
    h_.notify(PeerEvent::Kind::kJoin, it->second->name, "", ep_.loop().clock());
    return it;
  }

  void drop(const Key& key, const std::string& reason) {
    auto it = peers_.find(key);
    if (it == peers_.end()) return;
    std::unique_ptr<Peer> peer = std::move(it->second);
    peers_.erase(it);
    h_.notify(PeerEvent::Kind::kDrop, peer->name, reason, ep_.loop().clock());
    // `peer` (and its timer) go here; when called from that timer's
    // callback, IdleTimer copes with being destroyed mid-callback.
  }

  HeartbeatUdpHandler& h_;
  UdpEndpoint& ep_;
  Map peers_;
  uint64_t refused_ = 0;
  LogLimiter refusal_log_;
};

HeartbeatUdpHandler::HeartbeatUdpHandler(HeartbeatOptions options, PeerObserver observer)
    : options_(options), observer_(std::move(observer)) {}

HeartbeatUdpHandler::~HeartbeatUdpHandler() = default;

void HeartbeatUdpHandler::notify(PeerEvent::Kind kind, const std::string& peer,
                                 const std::string& reason, Clock::time_point at) {
  if (kind == PeerEvent::Kind::kJoin) {
    counters_.joins.fetch_add(1, std::memory_order_relaxed);
    if (t_peer_lines.allow(at, options_.peer_lines_per_s, false)) {
      spdlog::info("join {} proto=udp", peer);
    }
  } else {
    counters_.drops.fetch_add(1, std::memory_order_relaxed);
    if (t_peer_lines.allow(at, options_.peer_lines_per_s, true)) log_drop("udp", peer, "", reason);
  }
  if (observer_) observer_({kind, peer, reason, at});
}

void HeartbeatUdpHandler::on_open(UdpEndpoint& ep) {
  auto table = std::make_unique<PeerTable>(*this, ep);
  ep.state<PeerTable*>() = table.get();  // non-owning; tables_ owns it
  std::lock_guard<std::mutex> lock(mu_);
  tables_[&ep] = std::move(table);
}

void HeartbeatUdpHandler::on_datagram(UdpEndpoint& ep, const io::Datagram& d) {
  if (auto* t = ep.find_state<PeerTable*>(); t && *t) (*t)->on_datagram(d);
}

void HeartbeatUdpHandler::on_close(UdpEndpoint& ep) {
  std::unique_ptr<PeerTable> table;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tables_.find(&ep);
    if (it == tables_.end()) return;
    table = std::move(it->second);
    tables_.erase(it);
  }
  ep.state_slot().reset();
  const int err = ep.close_error();
  table->drop_all(err == 0 ? std::string("server stopping")
                           : fmt::format("socket error ({})", std::strerror(-err)));
  // Destroyed here, on the loop thread: its timers are cancelled.
}

}  // namespace sluice::servers
