// poll back end: portable readiness multiplexing with an O(n) scan of a
// pollfd array per wait. No descriptor limit, but every wait costs time
// proportional to the number of watched descriptors.
//
// Thread rules: see io/backend.h.
#pragma once

#include <memory>

#include "io/backend.h"

namespace sluice::io {

std::unique_ptr<Backend> make_poll_backend(const BackendOptions& options);

}  // namespace sluice::io
