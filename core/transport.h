// Transport: a connection-oriented transport that is not the kernel's TCP,
// run by a Server in place of its listening socket (rudp/ is one: reliable
// messages over UDP). Its connections are ordinary Connections with no
// descriptor, whose channels the transport serves through io::ChannelOps,
// so the Handler, the codec, backpressure, idle detection and the server's
// cross-thread API work on them unchanged.
//
// Layering: core/ defines the seam and never includes a transport; a
// transport (rudp/) depends on core/.
//
// Life on one server loop:
//   TransportFactory::make (start()'s thread, before the loop runs: binds,
//   so errors surface from Server::start) -> Transport::start(host) (loop
//   thread) -> host.adopt(peer) for each connection it accepts ->
//   Transport::stop() when the server stops (no new connections; the
//   server then closes the open ones) -> once every connection is released
//   and the transport has nothing left to send it lets go of its socket
//   and calls host.released(); the loop may then end.
//
// Thread rules: make() on the thread that calls Server::start(); every
// other call on the loop thread of the transport's loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "codec/codec.h"
#include "core/net.h"
#include "io/backend.h"

namespace sluice {

class Connection;
class EventLoop;

// The server loop a transport reports to.
class TransportHost {
 public:
  // A peer completed the transport's handshake: makes its Connection
  // (served by the transport's ops()), starts it (on_open runs inside) and
  // returns it; null when refused (max_connections, stopping).
  virtual Connection* adopt(const PeerAddr& peer) = 0;
  // After stop(): the transport holds nothing more (socket closed).
  virtual void released() = 0;

 protected:
  ~TransportHost() = default;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual void start(TransportHost& host) = 0;
  // No new connections. The server closes the open ones next; sessions
  // still finishing after `deadline` are cut off (reset).
  virtual void stop(std::chrono::milliseconds deadline) = 0;
  // Serves the channels of the connections it handed to adopt().
  virtual io::ChannelOps& ops() = 0;
};

class TransportFactory {
 public:
  virtual ~TransportFactory() = default;
  virtual std::string_view name() const = 0;
  // The framing of the transport's messages, used as every connection's
  // codec (a Server given a codec of its own as well refuses to start).
  virtual std::unique_ptr<codec::Codec> codec() const = 0;
  // Loop `index`'s transport on `loop`, bound to host:*port. A zero *port
  // takes a free one and is set to it; later loops get that port (one
  // SO_REUSEPORT socket each). Null and *error set on failure.
  virtual std::unique_ptr<Transport> make(EventLoop& loop, size_t index, size_t loops,
                                          const std::string& host, uint16_t* port,
                                          std::string* error) = 0;
};

}  // namespace sluice
