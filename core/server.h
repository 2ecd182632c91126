// Server: a listening socket, N event loops (one per thread), and the
// connections they serve, all through one Handler.
//
// Threads: start() creates `threads` loops, each on its own thread with its
// own back end instance. Loop 0 also owns the listening socket; accepted
// connections are spread round-robin over all loops (posted to the chosen
// loop, which then owns the connection for its whole life).
//
// Thread rules:
//  * start(), stop() and the destructor: a thread that is not one of the
//    server's loop threads (typically main). stop() is idempotent.
//  * port(), io_name(), connection_count(): any thread after start().
//  * Handler callbacks: on the connection's loop thread (see handler.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "codec/codec.h"
#include "core/connection.h"
#include "core/event_loop.h"
#include "core/handler.h"
#include "core/idle_state.h"
#include "core/net.h"
#include "io/backend.h"

namespace sluice {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (see port())
  std::string io;     // back-end name; empty: io::default_backend()
  io::BackendOptions io_options;
  size_t threads = 1;
  ListenOptions listen;      // backlog, SO_REUSEADDR, SO_REUSEPORT
  TcpOptions tcp;            // per accepted socket: TCP_NODELAY (on), keepalive ...
  ConnectionLimits limits;
  IdleOptions idle;          // per connection; Handler::on_idle (0 = off)
  // Most connections served at once (0: unlimited). One accepted over the
  // limit is closed at once (a rate-limited log line says so), so the
  // kernel's backlog keeps draining instead of filling up.
  size_t max_connections = 0;
  // How long stop() lets connections flush what they owe.
  std::chrono::milliseconds stop_deadline{2000};
};

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
  // Connections closed at accept because of max_connections.
  uint64_t refused_count() const { return refused_.load(std::memory_order_relaxed); }
  const codec::Codec* codec() const { return codec_.get(); }
  // Lingering closes so far (ConnectionLimits::linger_*). Any thread.
  LingerStats linger_stats() const;

 private:
  class Acceptor;
  struct Slot;  // one loop, its thread and its connections

  void on_accepted(int fd);
  void adopt(Slot& slot, int fd);
  void stop_slot(Slot& slot);

  ServerOptions options_;
  Handler& handler_;
  std::unique_ptr<codec::Codec> codec_;
  std::vector<std::unique_ptr<Slot>> slots_;
  // The listening socket; destroyed on loop 0's thread after it stops.
  std::unique_ptr<Acceptor> acceptor_;
  uint16_t port_ = 0;
  std::string io_name_;
  std::promise<void> posts_done_;  // set once stop() posted its last task
  // Counted from accept (before the connection reaches its loop), so the
  // max_connections check cannot be overrun by a burst.
  std::atomic<size_t> live_{0};
  std::atomic<uint64_t> refused_{0};
  // Indexed by LingerEvent; bumped by the loops (relaxed: counters only).
  std::atomic<uint64_t> linger_[5] = {};
  Clock::time_point last_refusal_log_{};  // loop 0 thread only
  uint64_t refusals_unlogged_ = 0;        // loop 0 thread only
  std::atomic<uint64_t> next_id_{1};
  size_t next_slot_ = 0;  // loop 0 thread only
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace sluice
