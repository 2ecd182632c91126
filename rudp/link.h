// Link: a rudp connection's channel state (io::Channel::io): which session
// serves the channel. Cut from either side: the session nulls it when it
// lets go of the connection first; destroying it (the connection is gone)
// makes the session forget the channel.
#pragma once

#include <optional>

#include "io/backend.h"
#include "rudp/session.h"
#include "rudp/stats.h"

namespace sluice::rudp {

struct Link final : io::ChannelState {
  explicit Link(Session* s) : session(s) {}
  ~Link() override {
    if (session) session->forget_channel();
  }
  Session* session;
  // The session's figures when it let go first (failed, reset, cut off by
  // a stop), so rudp::stats() still answers in the on_close that follows.
  std::optional<Stats> last;
};

}  // namespace sluice::rudp
