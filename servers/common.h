// Command-line helpers shared by the bundled servers' main() functions
// (--list-io, --io). Main thread only. Logging setup and stop signals are
// library API: core/log.h, core/signals.h.
#pragma once

#include <string>

namespace sluice::servers {

// Prints every back end with available/unavailable and the reason; returns
// the process exit code (0).
int print_backends();

// Empty name: the best available back end. An unavailable name is reported
// on stderr; for the default choice the server falls back to epoll. Returns
// false when the named back end cannot run here.
bool resolve_io(std::string& name);

}  // namespace sluice::servers
