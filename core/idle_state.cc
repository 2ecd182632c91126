#include "core/idle_state.h"

#include <algorithm>

namespace sluice {

const char* to_string(IdleKind kind) {
  switch (kind) {
    case IdleKind::kReader: return "reader-idle";
    case IdleKind::kWriter: return "writer-idle";
    case IdleKind::kAll: return "all-idle";
  }
  return "?";
}

void IdleState::start(const IdleOptions& options, Clock::time_point now) {
  options_ = options;
  last_read_ = now;
  last_write_ = now;
  for (size_t k = 0; k < next_.size(); ++k) {
    const Clock::duration d = duration_of(k);
    next_[k] = d.count() > 0 ? now + d : Clock::time_point::max();
  }
}

Clock::duration IdleState::duration_of(size_t kind) const {
  switch (kind) {
    case 0: return options_.reader;
    case 1: return options_.writer;
    default: return options_.all;
  }
}

Clock::time_point IdleState::last_of(size_t kind) const {
  switch (kind) {
    case 0: return last_read_;
    case 1: return last_write_;
    default: return std::max(last_read_, last_write_);
  }
}

IdleState::Fired IdleState::poll(Clock::time_point now) {
  Fired fired;
  for (size_t k = 0; k < next_.size(); ++k) {
    if (next_[k] > now) continue;  // includes kinds that are off (max)
    const Clock::duration d = duration_of(k);
    const Clock::time_point deadline = last_of(k) + d;
    if (deadline <= now) {
      fired.kinds[fired.count++] = static_cast<IdleKind>(k);
      next_[k] = now + d;  // still idle then: fire again
    } else {
      next_[k] = deadline;  // activity since: look again when it could be
    }
  }
  return fired;
}

Clock::time_point IdleState::next_check() const {
  return *std::min_element(next_.begin(), next_.end());
}

}  // namespace sluice
