// Connector: outbound TCP connects that never block an event loop, whatever
// its back end. One helper thread runs every pending connect as a
// nonblocking connect() watched by poll() with a deadline, then hands the
// connected descriptor to the requesting loop (EventLoop::post), where the
// callback adopts it (Client turns it into a Connection, so its IO runs on
// that loop's back end). One thread serves any number of concurrent
// connects.
//
// Several addresses (a host name's IPv4 and IPv6 ones, core/resolve.h):
// tried in turn until one connects. The timeout covers the whole attempt;
// each address gets an equal share of what is left when its turn comes
// (the last one all of it), so one that never answers cannot starve the
// rest. A failure reports the last address's error.
//
// Names: Client resolves them with resolver() (a Resolver owned here,
// whose thread starts only on the first lookup) before it connects.
//
// Lifetime: tasks posted to a loop refer to the Connector, so it must
// outlive every loop a request names, or those loops must have stopped for
// good (tasks left in a loop are destroyed without running). Descriptors
// connected but never delivered are closed by the destructor.
//
// Thread rules: connect() and cancel() from any thread. `done` runs on the
// requesting loop's thread. cancel() called on that loop's thread
// guarantees `done` will not run afterwards.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/net.h"
#include "core/resolve.h"
#include "core/resolver.h"

namespace sluice {

class EventLoop;

class Connector {
 public:
  // fd_or_err: a connected, nonblocking, close-on-exec socket the callee
  // owns, or -errno (-ETIMEDOUT, -ECONNREFUSED ...).
  using Done = std::function<void(int fd_or_err)>;

  Connector();  // starts the helper thread; throws std::system_error
  ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Starts connecting to addr with TCP options applied before connect().
  // Returns the request id (never 0).
  uint64_t connect(EventLoop& loop, const sockaddr_storage& addr, socklen_t len,
                   std::chrono::milliseconds timeout, const TcpOptions& tcp, Done done);
  // The same for a list of addresses, tried in turn (see above); an empty
  // list fails with -EHOSTUNREACH.
  uint64_t connect(EventLoop& loop, std::vector<SocketAddress> addrs,
                   std::chrono::milliseconds timeout, const TcpOptions& tcp, Done done);
  // Drops a request; true if it had not been delivered yet.
  bool cancel(uint64_t id);
  // Requests not yet delivered (for tests).
  size_t pending() const;
  // Host name lookups for the same loops (same lifetime rule).
  Resolver& resolver() { return resolver_; }

 private:
  struct Request;
  void run();
  void begin(Request& r, std::chrono::steady_clock::time_point now);
  static void fail_attempt(Request& r, int err);
  static void finish(Request& r, int result);
  void deliver(uint64_t id);
  void wake();

  mutable std::mutex mu_;
  // Request is defined in the .cc; the map is only touched there.
  std::unique_ptr<std::unordered_map<uint64_t, Request>> reqs_;  // guarded by mu_
  uint64_t next_id_ = 1;                          // guarded by mu_
  bool stop_ = false;                             // guarded by mu_
  int wake_fd_ = -1;
  std::thread thread_;
  Resolver resolver_;  // its thread starts on the first lookup
};

}  // namespace sluice
