// UdpServer: a UDP port served by N event loops, mirroring Server.
//
// threads == 1: one socket on one loop. threads > 1: one SO_REUSEPORT
// socket per loop, all bound to the same port; the kernel hashes each
// sender's address to one socket, so a given peer always lands on the same
// loop (per-peer state needs no locking).
//
// Thread rules:
//  * start(), stop() and the destructor: a thread that is not one of the
//    server's loop threads (typically main). stop() is idempotent.
//  * port(), io_name(), limited_count(): any thread after start().
//  * DatagramHandler callbacks: on the endpoint's loop thread, on_open
//    before any on_datagram; one handler serves every loop.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/event_loop.h"
#include "core/net.h"
#include "core/source_limit.h"
#include "core/udp_endpoint.h"
#include "io/backend.h"

namespace sluice {

struct UdpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (see port())
  std::string io;     // back-end name; empty: io::default_backend()
  io::BackendOptions io_options;
  size_t threads = 1;
  UdpSocketOptions socket;  // reuse_port is forced on when threads > 1
  size_t max_queued = UdpEndpoint::kDefaultMaxQueued;
  // A token bucket per source address (per_source.rate datagrams a second,
  // core/source_limit.h), checked before the handler sees a datagram:
  // one sender's flood is dropped at the cost of a table lookup while
  // everyone else's datagrams still reach the handler. Each loop keeps its
  // own table (a sender's datagrams land on one socket: see above), so a
  // source that spreads over several ports may get up to `threads` times
  // the rate. max_conns does not apply. Off by default.
  SourceLimitOptions per_source{};
  // How long stop() waits for the back ends to release the sockets.
  std::chrono::milliseconds stop_deadline{2000};
  // Makes loop `loop_index`'s back end; empty: by `io` name (as
  // ServerOptions::backend_factory).
  BackendFactory backend_factory{};
};

class UdpServer {
 public:
  // The handler must outlive the server.
  UdpServer(UdpServerOptions options, DatagramHandler& handler);
  ~UdpServer();
  UdpServer(const UdpServer&) = delete;
  UdpServer& operator=(const UdpServer&) = delete;

  // Binds, starts the loop threads and attaches one endpoint per loop.
  // Returns 0, or -errno and sets *error (bad address, port in use, back end
  // unavailable or without datagram support: -EOPNOTSUPP; a loop whose back
  // end failed before its endpoint was attached: -EIO).
  int start(std::string* error);
  // Closes every endpoint (on_close) and joins the loop threads. A loop
  // that stopped without releasing its endpoint (its back end's wait()
  // failed, or stop_deadline passed) closes it as its thread exits:
  // on_close still runs once, on that thread, and the socket is closed.
  void stop();

  uint16_t port() const { return port_; }
  const std::string& io_name() const { return io_name_; }
  // Datagrams dropped by the per-source limit so far.
  uint64_t limited_count() const { return limited_.load(std::memory_order_relaxed); }

 private:
  struct Slot;

  UdpServerOptions options_;
  DatagramHandler& handler_;
  std::atomic<uint64_t> limited_{0};
  std::vector<std::unique_ptr<Slot>> slots_;
  uint16_t port_ = 0;
  std::string io_name_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace sluice
