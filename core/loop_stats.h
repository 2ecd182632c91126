// LoopStats: what one loop's connections did, counted by that loop's
// thread (Connection, through Connection::Shared::stats) with
// single-writer counters (core/metrics.h: a plain add, no lock, no
// allocation), and read from any thread by summing the loops
// (Server::loop_stats()).
//
// ServerLoopTotals: those counters summed, as plain values.
//
// Thread rules: LoopStats is written by its loop's thread only; reading
// (totals()) is safe from any thread at any time.
#pragma once

#include <cstdint>

#include "core/metrics.h"

namespace sluice {

struct ServerLoopTotals {
  uint64_t bytes_in = 0;      // read from peers (plaintext after TLS)
  uint64_t bytes_out = 0;     // handed to the kernel (as framed; plaintext under TLS)
  uint64_t messages_in = 0;   // frames delivered to on_message (reads, without a codec)
  uint64_t messages_out = 0;  // send()/send_raw()/broadcast messages accepted
  uint64_t frame_errors = 0;  // connections closed for a frame the codec refused
  uint64_t idle[3] = {};      // idle events by IdleKind (reader, writer, all)
  metrics::LatencyCounts loop_lag{};  // see Server::probe_loop_lag()
};

struct LoopStats {
  metrics::LocalCounter bytes_in;
  metrics::LocalCounter bytes_out;
  metrics::LocalCounter messages_in;
  metrics::LocalCounter messages_out;
  metrics::LocalCounter frame_errors;
  metrics::LocalCounter idle[3];
  metrics::LocalHistogram loop_lag;

  // Adds this loop's counts to `t`.
  void add_to(ServerLoopTotals& t) const {
    t.bytes_in += bytes_in.get();
    t.bytes_out += bytes_out.get();
    t.messages_in += messages_in.get();
    t.messages_out += messages_out.get();
    t.frame_errors += frame_errors.get();
    for (int i = 0; i < 3; ++i) t.idle[i] += idle[i].get();
    t.loop_lag.add(loop_lag.read());
  }
};

}  // namespace sluice
