// select back end: the oldest portable multiplexer. fd_set is a fixed
// bitmap, so descriptors at or above FD_SETSIZE (1024) cannot be watched:
// such a connection is refused with a clear error while the others keep
// being served.
//
// Thread rules: see io/backend.h.
#pragma once

#include <memory>

#include "io/backend.h"

namespace sluice::io {

std::unique_ptr<Backend> make_select_backend(const BackendOptions& options);

}  // namespace sluice::io
