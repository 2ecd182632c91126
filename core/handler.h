// Handler: what user code implements. The same handler runs unchanged on
// every IO back end.
//
// Thread rules: every callback for a connection runs on that connection's
// loop thread. With Server threads > 1 one Handler object is called from
// several loop threads at once, so keep per-connection state in
// Connection::context() (or make the handler itself thread-safe).
#pragma once

#include <cstddef>
#include <string_view>

#include "core/idle_state.h"

namespace sluice {

class Connection;

enum class CloseReason : uint8_t {
  kPeerClosed,   // the peer closed (EOF) and everything owed was sent
  kPeerReset,    // socket error: reset, broken pipe, timeout ...
  kLocal,        // Connection::close()/abort() by the application
  kFrameError,   // the codec rejected the peer's input
  kServerStop,   // the server is shutting down
  kRefused,      // over a limit, or the back end could not take it
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
  // Output above the high-water mark: reading from this peer is paused.
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
  // Last call for this connection; `err` is -errno for kPeerReset.
  virtual void on_close(Connection& conn, CloseReason reason, int err) {
    (void)conn;
    (void)reason;
    (void)err;
  }
};

}  // namespace sluice
