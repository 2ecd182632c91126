// nonblocking back end: nonblocking sockets and no readiness notification.
// Every pass simply tries accept/recv/send on every watched descriptor and
// takes EAGAIN as "nothing yet". A pass that achieves nothing is followed
// by a short sleep that doubles up to a cap (20 us .. 1 ms), so an idle
// server costs little CPU; the price is up to that much added latency
// when traffic resumes, and one syscall per descriptor per pass under load
// (the reason readiness APIs exist).
//
// Thread rules: see io/backend.h.
#pragma once

#include <memory>

#include "io/backend.h"

namespace sluice::io {

std::unique_ptr<Backend> make_nonblocking_backend(const BackendOptions& options);

}  // namespace sluice::io
