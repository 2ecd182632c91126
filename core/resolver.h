// Resolver: host name lookups that never block an event loop. One helper
// thread, started by the first resolve() (a program that only uses numeric
// addresses never has it), runs getaddrinfo (resolve_host, core/resolve.h)
// for one request after another and posts each result to the requesting
// loop (EventLoop::post), where `done` runs.
//
// A lookup takes as long as the system's resolver needs (resolv.conf's
// timeout and attempts bound it); getaddrinfo cannot be interrupted, so
// the destructor waits for one in progress.
//
// Lifetime: tasks posted to a loop refer to the Resolver, so it must
// outlive every loop a request names, or those loops must have stopped for
// good (tasks left in a loop are destroyed without running).
//
// Thread rules: resolve() and cancel() from any thread. `done` runs on the
// requesting loop's thread. cancel() called on that loop's thread
// guarantees `done` will not run afterwards.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/resolve.h"

namespace sluice {

class EventLoop;

class Resolver {
 public:
  struct Result {
    int err = 0;                           // 0, or -errno (see gai_error())
    std::string error;                     // gai_strerror's words when err < 0
    std::vector<SocketAddress> addresses;  // when err == 0: at least one
  };
  using Done = std::function<void(Result result)>;

  Resolver() = default;
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Looks host:port up (socktype: SOCK_STREAM or SOCK_DGRAM). Returns the
  // request id (never 0). Throws std::system_error if the helper thread
  // cannot be started.
  uint64_t resolve(EventLoop& loop, std::string host, uint16_t port, int socktype, Done done);
  // Drops a request; true if it had not been delivered yet.
  bool cancel(uint64_t id);
  // Requests not yet delivered, and whether the helper thread runs (tests).
  size_t pending() const;
  bool started() const;

 private:
  struct Request {
    EventLoop* loop = nullptr;
    std::string host;
    uint16_t port = 0;
    int socktype = 0;
    Done done;
    bool looked_up = false;  // result is final; deliver() is queued
    Result result;
  };
  void run();
  void deliver(uint64_t id);

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Ordered by id: requests are looked up first come, first served.
  std::map<uint64_t, Request> reqs_;  // guarded by mu_
  uint64_t next_id_ = 1;              // guarded by mu_
  bool stop_ = false;                 // guarded by mu_
  std::thread thread_;                // started under mu_, joined by ~Resolver
};

}  // namespace sluice
