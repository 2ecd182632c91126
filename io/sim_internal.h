// Private to io/sim_*.cc: the per-channel state of the simulated back end,
// and the world's view of a core datagram socket.
//
// Thread rules: the world's loop thread only.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "io/backend.h"
#include "io/sim_world.h"

namespace sluice::sim {

struct ChanState final : io::ChannelState {
  StreamPeer* stream = nullptr;  // streams
  bool attached = true;
};

struct World::Socket {
  io::Channel* ch = nullptr;
  uint16_t port = 0;
  // Arrived while the core was not reading (bounded by datagram_queue):
  // the sender's port, the payload and its ECN codepoint, oldest first.
  struct Queued {
    uint16_t from;
    std::string data;
    uint8_t ecn;
  };
  std::deque<Queued> queue;
  bool drain_scheduled = false;
  bool recv_ecn = false;  // IP_RECVTOS / IPV6_RECVTCLASS was on at attach
};

}  // namespace sluice::sim
