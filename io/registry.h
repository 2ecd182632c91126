// Back-end registry: every IO model sluice knows, by name, with run-time
// availability (the model of Seastar's reactor_backend_selector).
//
// Thread rules: all functions are thread-safe; create() returns a back end
// that then belongs to the one loop that takes it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/backend.h"

namespace sluice::io {

struct BackendInfo {
  std::string name;
  bool available = false;
  std::string reason;  // why not available (empty when available)
  std::string summary;  // one line: what the model is
};

// All registered back ends in a stable order (blocking, nonblocking,
// select, poll, epoll, uring), each probed on this machine.
std::vector<BackendInfo> backends();

// The info for one name, or nullopt-like {name, false, "unknown back end"}.
BackendInfo probe(std::string_view name);

// The best available back end: uring when it works here, else epoll.
std::string default_backend();

// Creates a back end by name. On failure returns nullptr and sets *error
// (unknown name, or unavailable with the probe's reason).
std::unique_ptr<Backend> create(std::string_view name,
                                const BackendOptions& options,
                                std::string* error);

}  // namespace sluice::io
