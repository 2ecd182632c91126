// epoll back end: the Linux readiness API, level-triggered by default,
// edge-triggered with BackendOptions::edge_triggered.
//
// Thread rules: see io/backend.h (loop thread only; wakeup() any thread).
#pragma once

#include <memory>

#include "io/backend.h"
#include "io/poller.h"

namespace sluice::io {

std::unique_ptr<Poller> make_epoll_poller(bool edge_triggered);
std::unique_ptr<Backend> make_epoll_backend(const BackendOptions& options);

}  // namespace sluice::io
