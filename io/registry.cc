#include "io/registry.h"

#include <exception>
#include <functional>

#include <spdlog/spdlog.h>

#include "io/blocking.h"
#include "io/epoll.h"
#include "io/nonblocking.h"
#include "io/poll.h"
#include "io/select.h"
#include "io/uring.h"

namespace sluice::io {
namespace {

struct Entry {
  const char* name;
  const char* summary;
  std::function<std::string()> probe;  // "" when available
  std::function<std::unique_ptr<Backend>(const BackendOptions&)> make;
};

std::string always() { return {}; }

// Explicit table rather than static self-registration: the set of IO models
// is part of sluice's public surface, and the order is the order shown to
// users (simplest model first).
const std::vector<Entry>& table() {
  static const std::vector<Entry> entries = {
      {"blocking", "thread per connection, blocking sockets", always,
       make_blocking_backend},
      {"nonblocking", "nonblocking sockets retried without readiness notification",
       always, make_nonblocking_backend},
      {"select", "select(2) readiness multiplexing (fds < FD_SETSIZE)", always,
       make_select_backend},
      {"poll", "poll(2) readiness multiplexing", always, make_poll_backend},
      {"epoll", "epoll(7), level-triggered", always, make_epoll_backend},
      {"epoll-et", "epoll(7), edge-triggered", always,
       [](const BackendOptions& o) {
         BackendOptions et = o;
         et.edge_triggered = true;
         return make_epoll_backend(et);
       }},
      {"uring", "io_uring proactor: multishot accept/recv, provided buffers",
       probe_uring, make_uring_backend},
  };
  return entries;
}

const Entry* find(std::string_view name) {
  for (const Entry& e : table()) {
    if (name == e.name) return &e;
  }
  return nullptr;
}

}  // namespace

BackendInfo probe(std::string_view name) {
  const Entry* e = find(name);
  if (!e) return {std::string(name), false, "unknown back end", ""};
  std::string why = e->probe();
  return {e->name, why.empty(), why, e->summary};
}

std::vector<BackendInfo> backends() {
  std::vector<BackendInfo> out;
  for (const Entry& e : table()) out.push_back(probe(e.name));
  return out;
}

std::string default_backend() {
  // io_uring when it works here; epoll is always there on Linux.
  static const std::string best = probe("uring").available ? "uring" : "epoll";
  return best;
}

std::unique_ptr<Backend> create(std::string_view name,
                                const BackendOptions& options,
                                std::string* error) {
  const Entry* e = find(name);
  if (!e) {
    if (error) *error = "unknown IO back end '" + std::string(name) + "'";
    return nullptr;
  }
  if (std::string why = e->probe(); !why.empty()) {
    if (error) *error = "IO back end '" + std::string(name) + "' is unavailable: " + why;
    return nullptr;
  }
  try {
    std::unique_ptr<Backend> b = e->make(options);
    if (!b && error) *error = "IO back end '" + std::string(name) + "' failed to start";
    return b;
  } catch (const std::exception& ex) {
    if (error) *error = "IO back end '" + std::string(name) + "' failed to start: " + ex.what();
    return nullptr;
  }
}

}  // namespace sluice::io
