#include "rudp/cc/fixed.h"

namespace sluice::rudp::cc {

Fixed::Fixed(const Config& cfg)
    : window_(cfg.fixed_window ? cfg.fixed_window : 64 * cfg.max_datagram),
      rate_(cfg.fixed_pacing_rate) {}

}  // namespace sluice::rudp::cc
