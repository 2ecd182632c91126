// Handler: what user code implements. The same handler runs unchanged on
// every IO back end.
//
// Thread rules: every callback for a connection runs on that connection's
// loop thread. With Server threads > 1 one Handler object is called from
// several loop threads at once, so keep per-connection state in the
// connection (Connection::state<T>()), per-loop state indexed by the loop
// (on_loop_start gives the index), or make the handler itself thread-safe.
//
// Re-entrancy: callbacks never nest for one connection except through the
// calls that close it (close(), abort(), shutdown() may run on_close
// before they return; see core/connection.h). send() never calls back.
// Server::run_on/for_each/broadcast/post never run inline, even on the
// target's own loop: they may be called under the caller's own lock.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/idle_state.h"

namespace sluice {

class Connection;
class EventLoop;

enum class CloseReason : uint8_t {
  kPeerClosed,   // the peer closed (EOF) and everything owed was sent
  kPeerReset,    // socket error: reset, broken pipe, timeout ...
  kLocal,        // Connection::close()/abort() by the application
  kFrameError,   // the codec rejected the peer's input
  kServerStop,   // the server is shutting down
  kRefused,      // over a limit, or the back end could not take it
  kTooSlow,      // output over ConnectionLimits::max_output (peer not reading)
  kIdle,         // idle for the configured time (ServerOptions::idle_close)
};

const char* to_string(CloseReason r);

class Handler {
 public:
  virtual ~Handler() = default;
  virtual void on_open(Connection& conn) { (void)conn; }
  // With a codec: one decoded frame (payload only). Raw: the bytes that
  // arrived. The view is valid only during the call.
  virtual void on_message(Connection& conn, std::string_view data) = 0;
  // The peer shut down its write side. Default: close once everything owed
  // has been sent (Connection::close() is graceful).
  virtual void on_peer_shutdown(Connection& conn);
  // After a flush attempt, more than high_water bytes still wait: reading
  // from this peer is paused. Runs after the callback that queued them
  // returned, never inside send().
  virtual void on_high_water(Connection& conn, size_t pending) {
    (void)conn;
    (void)pending;
  }
  // Output fell back to the low-water mark: reading resumed.
  virtual void on_drain(Connection& conn) { (void)conn; }
  // The connection has been idle in this way for the configured time (see
  // IdleOptions on ServerOptions / Connection::set_idle; repeats every
  // period while the condition lasts). May arrive while a graceful close
  // is still flushing (is_open() false), so a handler can abort() a flush
  // that makes no progress. Typical reaction: close() or abort().
  virtual void on_idle(Connection& conn, IdleKind kind) {
    (void)conn;
    (void)kind;
  }
  // Last call for this connection; `err` is -errno for kPeerReset, and
  // -ETIMEDOUT for kServerStop and kIdle when the core gave up on a
  // graceful close and dropped output still owed (the stop deadline
  // passed; the peer stayed idle while we flushed): the peer did not get
  // everything sent to it. 0 otherwise.
  // Connection::close_detail() says more for kFrameError, kTooSlow, kIdle.
  virtual void on_close(Connection& conn, CloseReason reason, int err) {
    (void)conn;
    (void)reason;
    (void)err;
  }

  // Server hooks (a Client never calls them).
  // Loop `index` (0 .. threads-1) is about to serve, on its own thread:
  // set up per-loop state and loop timers here. Runs before any of its
  // connections opens.
  virtual void on_loop_start(EventLoop& loop, size_t index) {
    (void)loop;
    (void)index;
  }
  // Server::stop() began: on each loop's thread, before that loop's
  // connections are closed (they are still open and can be sent to; the
  // server's cross-thread calls already return false).
  virtual void on_server_stop(EventLoop& loop, size_t index) {
    (void)loop;
    (void)index;
  }
};

}  // namespace sluice
