// Logging setup for a program built on sluice, and a limiter for log lines
// a peer can trigger.
//
// sluice logs through spdlog's default logger. Call init_logging() first
// thing in main(): it sends every line to stderr (stdout stays free for a
// program's own output, such as a "listening on" line that scripts parse)
// at the given level. Without it, spdlog's default logger writes to stdout.
//
// Thread rules: init_logging() from main, before any loop starts.
// LogLimiter: not synchronised; one per thread (thread_local) or per loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice {

// Level: trace|debug|info|warn|error|critical|off. Returns false (and sets
// *error) for an unknown level name; logging is then left as it was.
bool init_logging(std::string_view level = "info", std::string* error = nullptr);

// At most one line per interval; counts the lines it held back, so the one
// that passes can say how many were skipped.
class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogLimiter(Clock::duration interval = std::chrono::seconds(1))
      : interval_(interval) {}
  // True if a line may be logged now; *skipped is then how many were
  // refused since the last one that passed.
  bool allow(Clock::time_point now, uint64_t* skipped) {
    if (logged_once_ && now - last_ < interval_) {
      ++held_;
      return false;
    }
    *skipped = held_;
    held_ = 0;
    last_ = now;
    logged_once_ = true;
    return true;
  }

 private:
  Clock::duration interval_;
  Clock::time_point last_{};
  uint64_t held_ = 0;
  bool logged_once_ = false;
};

}  // namespace sluice
