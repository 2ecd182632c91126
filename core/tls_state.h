// A TLS connection's state (Connection::Tls): made at start() for TLS
// connections only, so a plaintext connection pays one null pointer.
//
// Thread rules: the connection's loop thread only, like the Connection.
#pragma once

#include <memory>

#include "base/buffer.h"
#include "core/connection.h"
#include "core/timer_queue.h"
#include "core/tls_engine.h"

namespace sluice {

struct Connection::Tls {
  std::unique_ptr<TlsEngine> engine;
  // Plaintext send() queued: it waits here until the handshake is done,
  // and between a send() and the flush that encrypts it (one SSL_write,
  // so many small sends become full records). No storage when empty.
  Buffer plain;
  TimerId deadline = 0;   // the handshake's; 0 once done or cancelled
  bool opened = false;    // the handshake is done and the handler heard on_open
  bool failed = false;    // the handshake (or a record) failed: closing
  bool notified = false;  // our close_notify is queued
  bool peer_notified = false;  // the peer's close_notify arrived
  bool truncated = false;      // its FIN came without one, while we were open
};

}  // namespace sluice
