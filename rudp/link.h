// Link: a rudp connection's channel state (io::Channel::io): which session
// serves the channel. Cut from either side: the session nulls it when it
// lets go of the connection first; destroying it (the connection is gone)
// makes the session forget the channel.
#pragma once

#include "io/backend.h"
#include "rudp/session.h"

namespace sluice::rudp {

struct Link final : io::ChannelState {
  explicit Link(Session* s) : session(s) {}
  ~Link() override {
    if (session) session->forget_channel();
  }
  Session* session;
};

}  // namespace sluice::rudp
