// The series a sluice server exposes (docs/OPERATIONS.md, "Metrics"): one
// ServerSample per process, taken from a Server's counters plus optional
// sections that an application fills (heartbeat, rudp), and the writer
// that turns samples into Prometheus families with a worker="N" label.
//
// ServerSample is a fixed layout of uint64_t words only, so a worker can
// publish it through the supervisor's shared page
// (WorkerContext::publish_words) and the supervisor's metrics process can
// read every worker's without any locking (a scrape may see one worker's
// sample half-updated between two counters; each counter on its own is
// never torn, and write_server_metrics derives histogram counts from the
// buckets, so every family stays consistent).
//
// Thread rules: sample_server() any thread after the server's start();
// the rest are plain functions on values.
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>

#include "core/metrics.h"

namespace sluice {

class Server;

struct ServerSample {
  // Core (every server).
  uint64_t connections_open = 0;
  uint64_t accepted = 0;
  uint64_t refused_max_connections = 0;
  uint64_t refused_source_cap = 0;
  uint64_t refused_source_rate = 0;
  uint64_t accept_errors = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t messages_in = 0;
  uint64_t messages_out = 0;
  uint64_t frame_errors = 0;
  uint64_t idle[3] = {};  // by IdleKind: reader, writer, all
  metrics::LatencyCounts loop_lag{};
  // Heartbeat service (servers/heartbeat_service.h); has_heartbeat 0: absent.
  uint64_t has_heartbeat = 0;
  uint64_t heartbeat_drops_timeout = 0;
  uint64_t heartbeat_drops_other = 0;
  metrics::LatencyCounts heartbeat_rtt{};
  // rudp transport; has_rudp 0: absent. Summed over closed connections.
  uint64_t has_rudp = 0;
  uint64_t rudp_retransmitted_bytes = 0;
  uint64_t rudp_lost_packets = 0;
};
static_assert(std::is_trivially_copyable_v<ServerSample>);
static_assert(sizeof(ServerSample) % sizeof(uint64_t) == 0);
inline constexpr size_t kServerSampleWords = sizeof(ServerSample) / sizeof(uint64_t);

// The core part, from a running (or stopped, not yet destroyed) server.
ServerSample sample_server(const Server& server);

// Every family, one sample per worker (labelled worker="<index>", the
// index in the span). Sections absent from every sample are left out.
void write_server_metrics(metrics::TextWriter& w, std::span<const ServerSample> workers);

}  // namespace sluice
