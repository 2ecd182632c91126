// rudp: reliable, message-oriented connections over UDP, on every IO back
// end, with the Handler API of TCP unchanged (docs/RUDP.md).
//
//   Server: ServerOptions opts; opts.transport = rudp::transport();
//           Server server(opts, handler);   // no codec: rudp frames messages
//   Client: rudp::Client client(loop, handler, {.port = server.port()});
//           client.connect([](int rc) { ... });
//
// Each Connection::send() is one message, delivered whole and in order
// (up to Options::max_message); Connection::send_unreliable() sends one
// that may be lost. Per-connection figures: rudp::stats(conn).
//
// Layering: rudp/ is built on core/ (Server's TransportFactory seam,
// Connection, UdpEndpoint); core/ never includes rudp/.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "core/connection.h"
#include "core/transport.h"
#include "rudp/options.h"
#include "rudp/stats.h"

namespace sluice {
class EventLoop;
}

namespace sluice::rudp {

class Endpoint;

// For ServerOptions::transport.
std::shared_ptr<TransportFactory> transport(Options options = {});

// The framing of messages on the stream: a 4-byte big-endian length, then
// the message (what every rudp connection's codec is).
std::unique_ptr<codec::Codec> message_codec(const Options& options);

// The connection's rudp figures; nullopt if it is not a rudp connection.
// Once the session let go of it (failed, reset, cut off by a stop), its
// last figures, so on_close can still log them. Loop thread.
std::optional<Stats> stats(const Connection& conn);

struct ClientOptions {
  std::string host = "127.0.0.1";  // numeric IPv4 or IPv6, or "localhost"
  uint16_t port = 0;
  Options rudp;
  ConnectionLimits limits;
  IdleOptions idle;
};

// An outbound rudp connection on a loop, like sluice::Client for TCP: one
// UDP socket (bound at the first connect) for the client's life; each
// connect() is a new handshake and a new connection.
//
// Lifetime: destroy it on its loop thread, or after its loop stopped.
// Destroyed while the loop runs, it aborts its connection and lets go of
// its socket in the background, through the back end: keep the loop
// running until that is done (release_socket() and its callback say when;
// a loop that quits at once leaks the socket and what the session held).
// A session still finishing its close (draining) is cut short: the peer
// has had its CLOSE, or times out.
//
// Thread rules: loop thread only (the loop passed in).
class Client final : public Connection::Owner {
 public:
  using ConnectDone = std::function<void(int result)>;
  Client(EventLoop& loop, Handler& handler, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts a handshake; done(0) once connected (on_open has run), else
  // done(-errno): -ETIMEDOUT (no answer within connect_timeout), a bad
  // address, a socket error. False while an attempt is pending or the
  // connection is open.
  bool connect(ConnectDone done);
  bool connecting() const { return connecting_; }
  Connection* connection() { return current_; }
  void abort();
  // Connections not yet released (the open one included).
  size_t live() const { return conns_.size(); }
  // The socket's local port (0 before the first connect).
  uint16_t local_port() const;
  // Lets go of the socket while the loop runs: sessions still closing are
  // cut short (reset), then the back end releases the socket and
  // `released` runs (loop thread; at once when there is no socket). Close
  // or abort the connection first. Without it, a client destroyed after
  // its loop stopped leaves a completion back end (uring, blocking)
  // holding the socket. A later connect() opens a new socket.
  void release_socket(std::function<void()> released);
  // No socket held (none yet, or release_socket() finished).
  bool socket_released() const;
  const ClientOptions& options() const { return options_; }

 private:
  void release(Connection& conn) override;

  EventLoop& loop_;
  Handler& handler_;
  ClientOptions options_;
  std::unique_ptr<codec::Codec> codec_;
  Connection::Shared shared_;
  std::unique_ptr<Endpoint> endpoint_;
  std::vector<std::unique_ptr<Connection>> conns_;
  Connection* current_ = nullptr;
  bool connecting_ = false;
  uint64_t next_id_ = 1;
};

}  // namespace sluice::rudp
