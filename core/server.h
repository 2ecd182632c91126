// Server: a listening socket, N event loops (one per thread), and the
// connections they serve, all through one Handler.
//
// Threads: start() creates `threads` loops, each on its own thread with its
// own back end instance. Loop 0 also owns the listening socket; accepted
// connections are spread round-robin over all loops (posted to the chosen
// loop, which then owns the connection for its whole life).
//
// Reaching connections from anywhere: a connection's id names its loop
// (ids are dealt per loop: (id - 1) % loop_count() is the loop's index),
// so run_on(id, fn) posts fn to that loop, which looks the connection up
// there. for_each(), gather() and broadcast() post one task per loop.
// None of them ever runs inline, not even when called on the target's own
// loop: they never re-enter the handler, and may be called under the
// caller's own lock. They return false, and run nothing, when the server
// is not running (before start(), or once stop() has begun); a task they
// did post always runs, before its loop quits.
//
// Order: tasks posted from one thread to one loop run in the order they
// were posted (one FIFO queue per loop). Tasks from different threads or
// loops are not ordered with each other: replies that several loops send
// to one connection with send_to() may overtake each other, so a server
// that answers pipelined requests from other loops numbers its replies
// (examples/kv_server.cc does).
//
// Thread rules:
//  * start(), stop() and the destructor: a thread that is not one of the
//    server's loop threads (typically main). stop() is idempotent.
//  * port(), io_name(), connection_count(), accepted_count(),
//    refused_count(), refused_by_limit_count(), accept_error_count(),
//    source_stats(), loop_totals(), loop_count(): any thread after
//    start(), until the destructor (after stop() they keep the final
//    figures).
//  * run_on(), for_each(), gather(), broadcast(), post(), run_after(),
//    run_every(), cancel_timer(): any thread, any time (safe during and
//    after stop(): they return false then).
//  * loop(i): the reference is valid from start() until stop() returns;
//    use it by EventLoop's own rules (post()/quit() from any thread, the
//    rest on that loop's thread, e.g. from a handler callback there).
//  * Handler callbacks: on the connection's loop thread (see handler.h);
//    on_loop_start and on_server_stop on each loop's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "codec/codec.h"
#include "core/connection.h"
#include "core/event_loop.h"
#include "core/handler.h"
#include "core/idle_state.h"
#include "core/log.h"
#include "core/loop_stats.h"
#include "core/net.h"
#include "core/source_limit.h"
#include "core/transport.h"
#include "io/backend.h"

namespace sluice {

// Every member has a default initializer, so designated initializers work
// under -Wextra: ServerOptions{.port = 7300, .threads = 2}.
struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (see port())
  std::string io{};   // back-end name; empty: io::default_backend()
  io::BackendOptions io_options{};
  size_t threads = 1;
  ListenOptions listen{};    // backlog, SO_REUSEADDR, SO_REUSEPORT
  TcpOptions tcp{};          // per accepted socket: TCP_NODELAY (on), keepalive ...
  ConnectionLimits limits{};
  IdleOptions idle{};        // per connection; Handler::on_idle (0 = off)
  // Close a connection once it is idle (any kind set in `idle`), after
  // Handler::on_idle, unless the handler closed it. on_close gets kIdle and
  // close_detail() says which kind, for how long; one log line per close
  // (at most one a second per loop, with a count of the rest).
  bool idle_close = false;
  // Most connections served at once (0: unlimited). One accepted over the
  // limit is closed at once (a rate-limited log line says so), so the
  // kernel's backlog keeps draining instead of filling up.
  size_t max_connections = 0;
  // Per-source limits (core/source_limit.h): a cap on the connections one
  // source address holds, and a token bucket on how fast it may open them.
  // A connection over either is closed at accept with a reset (no FIN
  // handshake or TIME_WAIT kept for it); counted in source_stats(), and a
  // rate-limited log line says so. For a transport (rudp) they apply when
  // a handshake would make a connection. Off by default.
  SourceLimitOptions per_source{};
  // How long stop() lets connections flush what they owe.
  std::chrono::milliseconds stop_deadline{2000};
  // Makes loop `loop_index`'s back end (called by start(), on the calling
  // thread, once per loop); empty: io::create(io, io_options). For back ends that
  // are not in the registry: a simulated network (io/sim_world.h), or a
  // user's own. Returning null fails start() with -ENOTSUP.
  BackendFactory backend_factory{};
  // Serve a transport other than TCP (rudp::transport(), rudp/rudp.h): one
  // per loop, bound to host:port instead of the listening socket; the
  // `listen` and `tcp` options do not apply, and the connections use the
  // transport's codec (its message framing; passing a codec of your own
  // too fails start() with -EINVAL). Null: TCP.
  std::shared_ptr<TransportFactory> transport{};
  // TLS on every connection (docs/TLS.md): the certificate, key and
  // policy, checked by start() (a bad file or option fails it with
  // -EINVAL). Handlers do not change: on_open follows the handshake, and
  // a connection whose handshake fails or times out never reaches the
  // handler (one rate-limited log line; counted in tls_stats()). TCP
  // only: with a transport it fails start() with -EINVAL.
  std::optional<TlsOptions> tls{};
  // Loop lag (core/loop_lag.h): each loop samples how late it runs a
  // timer this often, into loop_totals().loop_lag. Zero: off.
  Clock::duration lag_probe{0};
  // PROXY protocol header from a balancer in front (core/proxy_protocol.h;
  // docs/OPERATIONS.md, "PROXY protocol"). Only behind a trusted balancer:
  // the header sets the address the server believes, and kOptional lets
  // any direct client send one. The header is read before TLS and before
  // the handler hears on_open; from then on Connection::peer_addr(),
  // peer() in log lines and the per-source limits use the client it
  // names. Per-source limits then apply once the header is in, not at
  // accept (the socket's address is the balancer's): a refused connection
  // is reset. A connection without a usable header within
  // proxy_header_timeout is cut off; a v2 header over proxy_header_max
  // bytes (at least 232, at most 64 KiB + 16) is refused. TCP only.
  ProxyProtocol proxy_protocol = ProxyProtocol::kOff;
  std::chrono::milliseconds proxy_header_timeout{5000};
  size_t proxy_header_max = 4096;
};

// A server timer (run_after/run_every); 0 is never a valid one.
using ServerTimer = uint64_t;

class Server {
 public:
  // `codec` may be null (raw bytes). The handler must outlive the server.
  Server(ServerOptions options, Handler& handler,
         std::unique_ptr<codec::Codec> codec = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, listens and starts the loop threads. Returns 0, or -errno and
  // sets *error (bad address, port in use, back end unavailable ...).
  int start(std::string* error);
  // Stops accepting, closes every connection after it flushed what it owes
  // (up to stop_deadline), and joins the loop threads.
  void stop();
  // The same, letting connections flush for at most `deadline` (overrides
  // ServerOptions::stop_deadline) before they are aborted.
  void stop(std::chrono::milliseconds deadline);

  uint16_t port() const { return port_; }
  const std::string& io_name() const { return io_name_; }
  size_t connection_count() const { return live_.load(std::memory_order_relaxed); }
  // Connections accepted since start() (the refused ones included).
  uint64_t accepted_count() const { return accepted_.load(std::memory_order_relaxed); }
  // Connections closed at accept: max_connections and the per-source
  // limits together.
  uint64_t refused_count() const { return refused_.load(std::memory_order_relaxed); }
  // Of those, the ones closed because of max_connections (the rest are
  // source_stats().over_cap + over_rate).
  uint64_t refused_by_limit_count() const {
    return refused_limit_.load(std::memory_order_relaxed);
  }
  // Failed accept() calls on the listening socket (EMFILE, ENOBUFS ...).
  uint64_t accept_error_count() const { return accept_errors_.load(std::memory_order_relaxed); }
  // Bytes, messages, frame errors, idle events and loop lag, summed over
  // the loops (core/loop_stats.h): the loops count, this only reads.
  ServerLoopTotals loop_totals() const;
  // The per-source limiter's counters (all zero when per_source is off).
  SourceLimitStats source_stats() const;
  const codec::Codec* codec() const { return codec_.get(); }
  // Lingering closes so far (ConnectionLimits::linger_*). Any thread.
  LingerStats linger_stats() const;
  // TLS handshakes so far (all zero without ServerOptions::tls). Any thread.
  TlsStats tls_stats() const;

  // ---- Connections from any thread (see "Reaching connections") ----
  // Runs fn on connection `id`'s loop: fn(&conn), or fn(nullptr) if the
  // connection is gone (closed: on_close has run, or never existed).
  bool run_on(uint64_t id, std::function<void(Connection*)> fn);
  // Sends one message (framed by the codec) to connection `id`, if it is
  // still open when its loop gets to it; dropped silently otherwise.
  bool send_to(uint64_t id, std::string payload);
  // Runs fn on every open connection, each on its own loop; then `done`,
  // once, on the loop that finished last (it sees everything fn did).
  bool for_each(std::function<void(Connection&)> fn, std::function<void()> done = nullptr);
  // Map and collect: each(conn) on every open connection; what they return
  // (nullopt: nothing) reaches done(results) once, on the loop that
  // finished last. No lock of the caller's is needed: each loop fills its
  // own part.
  template <class T>
  bool gather(std::function<std::optional<T>(Connection&)> each,
              std::function<void(std::vector<T>)> done);
  // The same with T worked out from what `each` returns (an optional<T>):
  //   server.gather([](Connection& c) { return std::optional(c.id()); }, ...)
  template <class Each, class Done>
    requires std::is_invocable_v<Each&, Connection&>
  bool gather(Each each, Done done) {
    using T = typename std::invoke_result_t<Each&, Connection&>::value_type;
    return gather<T>(std::function<std::optional<T>(Connection&)>(std::move(each)),
                     std::function<void(std::vector<T>)>(std::move(done)));
  }
  // Sends one message to every open connection (or those `to` accepts).
  // Framed once, not per connection; on the reactors a connection that
  // owes nothing is sent that one copy directly (no per-connection copy);
  // each connection's output cap applies
  // (ConnectionLimits::max_output). False: not running, or the codec
  // cannot frame the payload.
  bool broadcast(std::string_view payload, std::function<bool(Connection&)> to = nullptr);

  // ---- Loops, tasks and timers ----
  size_t loop_count() const { return options_.threads; }
  EventLoop& loop(size_t index);
  // Runs fn on loop `index`'s thread (never inline).
  bool post(size_t index, std::function<void()> fn);
  // Timers on loop `index`'s thread (default 0), from any thread. Return 0
  // when the server is not running. Server timers are cancelled when
  // stop() begins (after on_server_stop).
  ServerTimer run_after(Clock::duration delay, std::function<void()> fn, size_t index = 0);
  ServerTimer run_every(Clock::duration interval, std::function<void()> fn,
                        size_t index = 0);
  // Any thread; takes effect on the timer's loop (posted): a periodic
  // timer may fire once more meanwhile. False: not running (a timer that
  // already ended is ignored).
  bool cancel_timer(ServerTimer timer);

 private:
  class Acceptor;
  struct Slot;  // one loop, its thread and its connections

  void on_accepted(int fd);
  // Per-source admission of a new connection (hold until forget()).
  bool admit_source(const PeerAddr& peer, Slot& slot);
  // A counted connection is gone: live_, and its source's hold if it took
  // one (held).
  void forget(const PeerAddr& peer, bool held);
  // Whether per-source admission happens at accept (with PROXY protocol
  // it waits for the header: admit_proxied()).
  bool admits_at_accept() const;
  bool admit_proxied(Connection& conn, Slot& slot);
  void adopt(Slot& slot, int fd, const PeerAddr& peer);
  Connection* adopt_peer(Slot& slot, const PeerAddr& peer);
  Connection* start_connection(Slot& slot, std::unique_ptr<Connection> conn);
  int start_transports(std::string* error);
  int start_acceptor(std::string* error);
  void launch_loops();
  void stop_slot(Slot& slot);
  // Posts fn(slot) to the loop with that index, under run_mu_ (shared).
  bool post_slot(size_t index, std::function<void(Slot&)> fn);
  // for_each with the loop's index: the core of for_each/gather/broadcast.
  bool visit(std::function<void(size_t, Connection&)> fn, std::function<void()> done);
  ServerTimer add_timer(Clock::duration d, bool repeat, std::function<void()> fn,
                        size_t index);

  ServerOptions options_;
  Handler& handler_;
  std::unique_ptr<codec::Codec> codec_;
  std::vector<std::unique_ptr<Slot>> slots_;
  // The listening socket; destroyed on loop 0's thread after it stops.
  std::unique_ptr<Acceptor> acceptor_;
  uint16_t port_ = 0;
  std::string io_name_;
  std::promise<void> posts_done_;  // set once stop() posted its last task
  // Cross-thread calls post only while running_; stop() clears it first
  // (exclusive lock), so every task they posted runs before its loop quits.
  mutable std::shared_mutex run_mu_;
  bool running_ = false;  // guarded by run_mu_
  std::atomic<uint64_t> next_timer_{0};
  // Counted from accept (before the connection reaches its loop), so the
  // max_connections check cannot be overrun by a burst.
  std::atomic<size_t> live_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<uint64_t> refused_limit_{0};  // the part of refused_ due to max_connections
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> accept_errors_{0};
  // One per loop, made by start() before the loops run and kept until the
  // destructor, so loop_totals() may read them even while stop() tears
  // the loops down.
  std::vector<std::unique_ptr<LoopStats>> loop_stats_;
  // Indexed by LingerEvent; bumped by the loops (relaxed: counters only).
  std::atomic<uint64_t> linger_[5] = {};
  // Indexed by TlsEvent; bumped by the loops.
  std::atomic<uint64_t> tls_events_[5] = {};  // by TlsEvent
  // Made by start() from options_.tls; shared by every loop's connections.
  std::unique_ptr<TlsContext> tls_;
  LogLimiter refusal_log_;  // loop 0 thread only
  // Per-source limits: null when off. Accepts run on loop 0 and closes on
  // every loop, hence the lock (held for a table lookup, never across IO).
  std::unique_ptr<SourceLimiter> sources_;
  mutable std::mutex sources_mu_;
  size_t next_slot_ = 0;  // loop 0 thread only
  bool started_ = false;
  bool stopped_ = false;
};

template <class T>
bool Server::gather(std::function<std::optional<T>(Connection&)> each,
                    std::function<void(std::vector<T>)> done) {
  // One part per loop, each written only by its loop; done() reads them
  // all after the last loop's release (visit's countdown).
  auto parts = std::make_shared<std::vector<std::vector<T>>>(loop_count());
  return visit(
      [parts, each = std::move(each)](size_t index, Connection& conn) {
        if (std::optional<T> v = each(conn)) (*parts)[index].push_back(std::move(*v));
      },
      [parts, done = std::move(done)] {
        std::vector<T> all;
        for (std::vector<T>& part : *parts) {
          for (T& v : part) all.push_back(std::move(v));
        }
        done(std::move(all));
      });
}

}  // namespace sluice
