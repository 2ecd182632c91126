// Client: an outbound TCP connection, adopted by an event loop as a
// Connection, so after the connect its IO runs on that loop's back end
// (any back end) with the usual Handler callbacks, codec, backpressure and
// idle detection.
//
// The connect itself never blocks the loop: it runs on a Connector's helper
// thread (nonblocking connect + poll, bounded by connect_timeout) and the
// connected descriptor is posted back to the loop.
//
// Host names: a numeric host ("127.0.0.1", "::1") is used as it is, with
// no extra thread or latency. Any other name is looked up by the
// Connector's Resolver on its helper thread (getaddrinfo, IPv4 and IPv6;
// the loop never blocks), on every connect(), and the addresses are tried
// in turn until one connects (see connector.h). An unknown name fails the
// attempt with -EHOSTUNREACH (resolve_failure() has getaddrinfo's words);
// connect_timeout does not count the lookup, which the system's resolver
// bounds. Reconnecting is the
// user's policy (see Backoff): call connect() again after on_close or a
// failed attempt, e.g. from a loop timer.
//
// Lifetime: the Connector must outlive the Client's loop (see connector.h).
// Destroy a Client on its loop thread once live() == 0 (abort() first), or
// after its loop has stopped for good.
//
// Thread rules: loop thread only (the loop passed in), including the
// constructor's caller once the loop runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "core/connection.h"
#include "core/connector.h"
#include "core/handler.h"
#include "core/idle_state.h"
#include "core/net.h"
#include "core/resolve.h"

namespace sluice {

class EventLoop;

struct ClientOptions {
  std::string host = "127.0.0.1";  // numeric, or a name (see above)
  uint16_t port = 0;
  std::chrono::milliseconds connect_timeout{3000};
  TcpOptions tcp;  // applied before connect()
  ConnectionLimits limits;
  IdleOptions idle;
  // TLS (a client context: TlsContext::make_client), shared by any number
  // of Clients, which then resume each other's sessions. The server's
  // certificate must name `host` unless its TlsOptions::server_name says
  // otherwise. With TLS, connect()'s done runs once the handshake ended:
  // 0 after on_open, else -EPROTO (failed: verification, refused ...) or
  // -ETIMEDOUT (handshake_timeout), and the handler hears nothing.
  std::shared_ptr<const TlsContext> tls;
};

class Client final : public Connection::Owner {
 public:
  // result: 0 once connected (on_open has run; with TLS, once the
  // handshake is done), else -errno.
  using ConnectDone = std::function<void(int result)>;

  // handler, codec (may be null: raw bytes) and connector must outlive it.
  Client(EventLoop& loop, Connector& connector, Handler& handler,
         const codec::Codec* codec, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts one connect attempt. False (and done is not called) while an
  // attempt is pending or the connection is open (one that is closing does
  // not count).
  bool connect(ConnectDone done);
  bool connecting() const { return request_ != 0 || lookup_ != 0; }
  // The latest connection until the back end released it (check
  // is_open()), or null.
  Connection* connection() { return current_; }
  // Cancels a pending attempt and aborts the connection (on_close follows).
  void abort();
  // Connections not yet released by the back end (the open one included).
  size_t live() const { return conns_.size(); }
  const ClientOptions& options() const { return options_; }
  // TLS: why the latest handshake failed (connect()'s done got -EPROTO or
  // -ETIMEDOUT), e.g. "certificate verify failed: ..."; "" after one that
  // succeeded. The handler never sees such a connection, so this is where
  // a tool finds the reason to print.
  const std::string& tls_failure() const { return tls_failure_; }
  // Why the latest lookup of options().host failed (connect()'s done got
  // its -errno), e.g. "Name or service not known"; "" after one that
  // succeeded or when the host is numeric.
  const std::string& resolve_failure() const { return resolve_failure_; }

 private:
  void release(Connection& conn) override;
  void tls_done(Connection& conn, TlsEvent event) override;
  void adopt(int fd, const ConnectDone& done);
  void start_connect(std::vector<SocketAddress> addrs, ConnectDone done);

  EventLoop& loop_;
  Connector& connector_;
  Handler& handler_;
  const codec::Codec* codec_;
  ClientOptions options_;
  Connection::Shared shared_{handler_, *this, codec_, options_.limits, false, nullptr,
                             options_.tls.get(), options_.host};
  ConnectDone tls_pending_;  // TLS: done, until the handshake ends
  std::string tls_failure_;
  std::string resolve_failure_;
  std::vector<std::unique_ptr<Connection>> conns_;  // open + still detaching
  Connection* current_ = nullptr;
  uint64_t request_ = 0;  // pending Connector request
  uint64_t lookup_ = 0;   // pending Resolver request (a host name)
};

}  // namespace sluice
