// Endpoint: one UDP socket speaking rudp: it checks and demultiplexes
// datagrams by connection id, runs the handshake, owns the sessions, and
// serves their connections' channels (io::ChannelOps).
//
// Handshake (docs/RUDP.md, "Handshake"):
//   client                                   server
//   INITIAL(id C, no cookie, padded 1200) -->
//                                         <-- RETRY(cookie)    no state kept
//   INITIAL(id C, cookie) ----------------->  cookie checked: a session (id S)
//                                         <-- ACCEPT(id S)
//   DATA(to S) ... <-----------------------> DATA(to C) ...
// The cookie is a MAC (HMAC-SHA256, a per-endpoint secret) over the
// client's address, port and id and a time stamp, so the server creates
// state only for a peer that has shown it receives at its address, and a
// spoofed flood costs one MAC and one RETRY (no larger than the INITIAL)
// per datagram. Like SYN cookies and QUIC's Retry.
//
// Thread rules: the loop thread of the loop it was made for, except the
// constructor (any thread, before the loop runs it).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/net.h"
#include "core/udp_endpoint.h"
#include "io/backend.h"
#include "rudp/options.h"
#include "rudp/session.h"

namespace sluice {
class EventLoop;
}

namespace sluice::rudp {

// Datagrams an endpoint turned away, and handshakes it ran.
struct EndpointStats {
  uint64_t datagrams = 0;
  uint64_t bad_header = 0;   // short, wrong version, bad checksum, unknown type
  uint64_t unknown_id = 0;   // DATA for no session (late, or forged)
  uint64_t wrong_peer = 0;   // DATA for a session from another address
  uint64_t initials = 0;
  uint64_t retries_sent = 0;
  uint64_t bad_cookies = 0;
  uint64_t accepted = 0;
  uint64_t refused = 0;      // the server would not take it (limit, stopping)
  uint64_t limited = 0;      // INITIALs dropped by Options::handshake_limit
};

class Endpoint final : public io::ChannelOps,
                       public DatagramHandler,
                       public UdpEndpoint::Owner,
                       public SessionHost {
 public:
  enum class Role { kServer, kClient };
  // Server: a new session wants its connection. Make it (its
  // Connection::start() attaches through ops, to this session) and return
  // it, or null to refuse (the session is reset).
  using AcceptFn = std::function<bool(Session& s)>;
  // Client: the handshake ended: 0 and the session, or -errno and null.
  using ConnectFn = std::function<void(int result, Session* s)>;

  // Takes ownership of fd, a bound UDP socket.
  Endpoint(EventLoop& loop, int fd, const Options& opts, Role role);
  ~Endpoint() override;
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // Attaches the socket to the loop's back end. 0 or -errno.
  int start();
  // Destroys an endpoint whose owner is going away. While the loop runs:
  // its sessions are reset (their connections must be gone already), the
  // socket closes through the back end, and the object deletes itself
  // after (nothing of it is touched by tasks still queued). Once the loop
  // has stopped: at once.
  static void retire(std::unique_ptr<Endpoint> ep);
  void set_accept(AcceptFn fn) { accept_ = std::move(fn); }
  // Client: starts the handshake with addr. Once only.
  void connect(const sockaddr* addr, socklen_t len, ConnectFn done);
  // Server: stop accepting; once no session is left, close the socket and
  // call `released`. After `deadline`, sessions still closing are reset.
  void stop(std::chrono::milliseconds deadline, std::function<void()> released);
  // Client: close the socket once the session is gone (or at once).
  void close_when_done(std::function<void()> released) { stop({}, std::move(released)); }

  // Makes the next attach() bind to `s` (see AcceptFn / the Client).
  void bind_next(Session* s) { pending_ = s; }
  uint16_t local_port() const { return port_; }
  size_t session_count() const { return sessions_.size(); }
  const EndpointStats& stats() const { return stats_; }
  bool released() const { return released_; }
  const Options& options() const { return opts_; }

  // io::ChannelOps: the connections' channels.
  int attach(io::Channel& ch) override;
  void update(io::Channel& ch) override;
  void detach(io::Channel& ch) override;
  int shutdown_write(io::Channel& ch) override;
  bool send_unreliable(io::Channel& ch, std::string_view message) override;

  // SessionHost.
  EventLoop& loop() override { return loop_; }
  bool send_datagram(Session& s, std::string_view d) override;
  size_t send_room() const override;
  void finished(Session& s) override;
  bool closing() const override { return stopping_; }
  void ecn_failed(Session& s) override;

 private:
  // DatagramHandler, UdpEndpoint::Owner.
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override;
  void release(UdpEndpoint& ep) override;

  void on_initial(const io::Datagram& d, std::string_view body);
  void on_retry(const io::Datagram& d, std::string_view body);
  void on_accept_packet(const io::Datagram& d, std::string_view body);
  void send_initial();
  void on_connect_timer();
  void connect_done(int result, Session* s);
  void send_accept(const sockaddr* to, socklen_t len, uint32_t client_id, uint32_t server_id);
  std::string make_cookie(const sockaddr* addr, socklen_t len, uint32_t id, uint32_t stamp) const;
  bool check_cookie(const sockaddr* addr, socklen_t len, uint32_t id, std::string_view c) const;
  uint32_t now_seconds() const;
  cc::Config cc_config();  // opts_.cc_config with a seed for this connection
  uint32_t fresh_id();
  Params local_params() const;
  void maybe_release();
  static std::string peer_key(const sockaddr* addr, socklen_t len, uint32_t id);

  EventLoop& loop_;
  Options opts_;
  Role role_;
  std::unique_ptr<UdpEndpoint> udp_;
  uint16_t port_ = 0;
  std::mt19937_64 rng_;
  std::array<unsigned char, 32> secret_{};
  std::unordered_map<uint32_t, std::unique_ptr<Session>> sessions_;  // by local id
  std::map<std::string, uint32_t> by_peer_;  // server: (address, client id) -> local id
  std::vector<std::unique_ptr<Session>> graveyard_;
  bool burying_ = false;
  Session* pending_ = nullptr;
  AcceptFn accept_;
  EndpointStats stats_;
  std::string out_;  // handshake datagrams being built
  std::optional<SourceLimiter> initial_limit_;  // Options::handshake_limit on
  // Client handshake.
  ConnectFn connect_done_;
  sockaddr_storage server_{};
  socklen_t server_len_ = 0;
  uint32_t client_id_ = 0;
  std::string cookie_;
  int retries_seen_ = 0;
  TimerId connect_timer_ = 0;
  Clock::time_point connect_deadline_;
  std::chrono::milliseconds connect_backoff_{250};
  // Stopping.
  bool stopping_ = false;
  bool released_ = false;
  std::function<void()> on_released_;
  TimerId stop_timer_ = 0;
  std::shared_ptr<char> alive_ = std::make_shared<char>();  // see Session
};

}  // namespace sluice::rudp
