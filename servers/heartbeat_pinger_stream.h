// Internal to //servers:heartbeat_pinger: the session over a connection
// (TCP through sluice::Client, rudp through rudp::Client): reconnects with
// backoff, PINGs on a timer, counts PONGs (see heartbeat_pinger.h). Both
// clients have the same API (connect, connection, abort, live,
// connecting) and deliver each PONG as one message to the Handler, so one
// session serves both; heartbeat_pinger_tcp.cc and heartbeat_pinger_rudp.cc
// only build the client.
//
// Thread rules: the pinger's loop thread only.
#pragma once

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "codec/heartbeat.h"
#include "core/client.h"
#include "core/connection.h"
#include "core/handler.h"
#include "rudp/rudp.h"
#include "servers/heartbeat_pinger_session.h"

namespace sluice::servers::pinger_detail {

namespace hb = codec::heartbeat;

inline const char* reason_text(CloseReason r) { return to_string(r); }

// rudp::Client holds a UDP socket of its own for its life: let the back
// end release it while the loop still runs (a TCP Client has none).
// (rudp::Client::abort() during a handshake hands the socket to a retired
// endpoint that closes in the background, which the pinger cannot wait
// for: release it instead, which cancels the handshake.)
inline void finish_client(Client& c) { c.abort(); }
inline bool socket_released(const Client&) { return true; }
inline void finish_client(rudp::Client& c) {
  if (!c.connecting()) c.abort();
  c.release_socket(nullptr);
}
inline bool socket_released(const rudp::Client& c) { return c.socket_released(); }
// Why the latest TLS handshake failed ("" without TLS: rudp has none).
inline const std::string& tls_failure(const Client& c) { return c.tls_failure(); }
inline const std::string& tls_failure(const rudp::Client&) {
  static const std::string none;
  return none;
}

template <class C>
class StreamSession final : public Session, public Handler {
 public:
  // make_client(handler) builds the session's client for `handler` (the
  // session itself).
  using MakeClient = std::function<std::unique_ptr<C>(Handler&)>;
  StreamSession(Pinger::Impl& p, size_t index, const MakeClient& make_client)
      : Session(p, index), client_(make_client(*this)) {}

  void start() override { connect(); }

  void go_silent() override {
    silent_ = true;
    cancel_timers();
    // Stop watching the server too: what we want to see is the server
    // dropping us, not us giving up first.
    if (Connection* c = client_->connection()) c->set_idle({});
    spdlog::info("session {}: stops sending pings", index_);
  }

  void finish(Clock::time_point end) override {
    finished_ = true;
    cancel_timers();
    account_end(end);
    finish_client(*client_);
  }

  bool released() const override {
    return client_->live() == 0 && !client_->connecting() && socket_released(*client_);
  }

  // Handler (loop thread).
  void on_open(Connection& conn) override {
    if (ever_up_) {
      ++p_.stats.reconnects;
      spdlog::info("session {}: reconnected to {} after {} attempts", index_, conn.peer(),
                   backoff_.attempts());
    } else {
      spdlog::debug("session {}: connected to {}", index_, conn.peer());
    }
    ever_up_ = true;
    p_.any_up = true;
    // Not backoff_.reset() here: a server that accepts and then closes,
    // resets or answers garbage must see the delays grow. See on_message.
    healthy_ = false;
    first_seq_ = next_seq_;
    if (silent_) {
      conn.set_idle({});
      return;
    }
    ping(conn);
    // `this` outlives its timers: cancel_timers() runs before a session
    // is destroyed (finish) and whenever the connection goes.
    ping_timer_ = p_.loop->run_every(p_.opts.interval, [this] {
      Connection* c = client_->connection();
      if (c && c->is_open() && !silent_) ping(*c);
    });
  }

  void on_message(Connection& conn, std::string_view payload) override {
    hb::Message m;
    const hb::ParseError err = hb::parse(payload, &m);
    if (err != hb::ParseError::kNone) {
      spdlog::warn("session {}: protocol error from {}: {}", index_, conn.peer(),
                   hb::describe(err, payload));
      conn.abort();
      return;
    }
    if (m.type != hb::Type::kPong || !answered(m.seq, Clock::now())) return;
    // Healthy: the server answered a PING sent one interval after the
    // connect, so it served this connection for an interval. Only then do
    // failures start from the minimum delay again, which bounds reconnects
    // to one per interval even against a server that answers once and
    // then drops every connection.
    if (!healthy_ && m.seq > first_seq_) {
      healthy_ = true;
      backoff_.reset();
    }
  }

  void on_idle(Connection& conn, IdleKind kind) override {
    if (kind != IdleKind::kReader) return;
    spdlog::info("session {}: nothing from {} for {} ms", index_, conn.peer(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(silence_limit()).count());
    conn.abort();
  }

  void on_close(Connection& conn, CloseReason reason, int err) override {
    if (ping_timer_) p_.loop->cancel(ping_timer_);
    ping_timer_ = 0;
    if (finished_) return;
    give_up();
    const std::string why = reason == CloseReason::kPeerReset
                                ? fmt::format("{}: {}", reason_text(reason), std::strerror(-err))
                                : reason_text(reason);
    if (silent_) {
      spdlog::info("session {}: dropped by {} after going silent ({})", index_, conn.peer(), why);
      return;  // a "dead" peer stays dead
    }
    spdlog::info("session {}: connection to {} lost ({}); reconnecting", index_, conn.peer(), why);
    schedule_retry();
  }

 private:
  void connect() {
    if (finished_ || silent_) return;
    client_->connect([this](int rc) {
      if (rc >= 0) return;  // on_open has run
      ++p_.stats.connect_failures;
      spdlog::debug("session {}: connect: {}", index_, std::strerror(-rc));
      if (rc == -EINVAL) {
        p_.fail(rc, "bad server address " + p_.opts.host);
        return;
      }
      if (const std::string& why = tls_failure(*client_); !why.empty()) {
        const std::string what = fmt::format("TLS handshake with {}:{} failed: {}", p_.opts.host,
                                             p_.opts.port, why);
        // Refused before any session was up: a configuration error (the
        // wrong CA or name, a server without TLS) that retrying cannot
        // fix. A handshake that timed out (-ETIMEDOUT) may be a busy
        // server: retried.
        if (rc == -EPROTO && !p_.any_up) {
          p_.fail(rc, what);
          return;
        }
        spdlog::warn("session {}: {}; retrying", index_, what);
      }
      schedule_retry();
    });
  }

  void schedule_retry() {
    if (finished_ || silent_ || retry_timer_) return;
    retry_timer_ = p_.loop->run_after(next_delay(), [this] {
      retry_timer_ = 0;
      connect();
    });
  }

  void ping(Connection& conn) {
    const Clock::time_point now = Clock::now();
    const uint64_t seq = next_seq_++;
    if (conn.send(hb::view(hb::encode_ping(seq, ns_of(now))))) sent(seq, now);
  }

  std::unique_ptr<C> client_;
  bool healthy_ = false;  // see on_message
  uint64_t first_seq_ = 0;  // the current connection's first PING
};

}  // namespace sluice::servers::pinger_detail
