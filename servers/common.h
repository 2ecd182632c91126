// Helpers shared by the bundled servers' main() functions. Main thread only.
#pragma once

#include <string>

namespace sluice::servers {

// Logs go to stderr (stdout carries the "listening on" line and results),
// at the given level name (trace|debug|info|warn|error).
void init_logging(const std::string& level);

// Prints every back end with available/unavailable and the reason; returns
// the process exit code (0).
int print_backends();

// Empty name: the best available back end. An unavailable name is reported
// on stderr; for the default choice the server falls back to epoll. Returns
// false when the named back end cannot run here.
bool resolve_io(std::string& name);

// Blocks SIGINT/SIGTERM in the calling thread, so threads started later
// inherit the mask and the signals wait for wait_for_stop_signal().
void block_stop_signals();
int wait_for_stop_signal();

}  // namespace sluice::servers
