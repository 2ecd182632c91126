#include "core/server_metrics.h"

#include <string>

#include "core/server.h"

namespace sluice {

ServerSample sample_server(const Server& server) {
  ServerSample s;
  s.connections_open = server.connection_count();
  s.accepted = server.accepted_count();
  s.refused_max_connections = server.refused_by_limit_count();
  const SourceLimitStats src = server.source_stats();
  s.refused_source_cap = src.over_cap;
  s.refused_source_rate = src.over_rate;
  s.accept_errors = server.accept_error_count();
  const ServerLoopTotals t = server.loop_totals();
  s.bytes_in = t.bytes_in;
  s.bytes_out = t.bytes_out;
  s.messages_in = t.messages_in;
  s.messages_out = t.messages_out;
  s.frame_errors = t.frame_errors;
  for (int i = 0; i < 3; ++i) s.idle[i] = t.idle[i];
  s.loop_lag = t.loop_lag;
  return s;
}

namespace {

using metrics::Labels;
using metrics::TextWriter;
using metrics::Type;

Labels worker(size_t i) { return {{"worker", std::to_string(i)}}; }

Labels worker(size_t i, const char* name, const char* value) {
  return {{"worker", std::to_string(i)}, {name, value}};
}

template <class Get>
void per_worker(TextWriter& w, std::span<const ServerSample> all, std::string_view name, Type type,
                std::string_view help, Get get) {
  w.family(name, type, help);
  for (size_t i = 0; i < all.size(); ++i) w.value(worker(i), static_cast<double>(get(all[i])));
}

}  // namespace

void write_server_metrics(TextWriter& w, std::span<const ServerSample> all) {
  per_worker(w, all, "sluice_connections_open", Type::kGauge, "Connections open now.",
             [](const ServerSample& s) { return s.connections_open; });
  per_worker(w, all, "sluice_connections_accepted_total", Type::kCounter,
             "Connections accepted (those refused at once included).",
             [](const ServerSample& s) { return s.accepted; });
  w.family("sluice_connections_refused_total", Type::kCounter,
           "Connections closed at accept, by reason: max_connections, source_cap (too many "
           "from one address), source_rate (opened too fast from one address).");
  for (size_t i = 0; i < all.size(); ++i) {
    w.value(worker(i, "reason", "max_connections"),
            static_cast<double>(all[i].refused_max_connections));
    w.value(worker(i, "reason", "source_cap"), static_cast<double>(all[i].refused_source_cap));
    w.value(worker(i, "reason", "source_rate"), static_cast<double>(all[i].refused_source_rate));
  }
  per_worker(w, all, "sluice_accept_errors_total", Type::kCounter,
             "Failed accept() calls on the listening socket (EMFILE, ENOBUFS ...).",
             [](const ServerSample& s) { return s.accept_errors; });
  per_worker(w, all, "sluice_received_bytes_total", Type::kCounter,
             "Bytes read from peers (plaintext, after TLS).",
             [](const ServerSample& s) { return s.bytes_in; });
  per_worker(w, all, "sluice_sent_bytes_total", Type::kCounter,
             "Bytes handed to the kernel for peers (framed; plaintext under TLS).",
             [](const ServerSample& s) { return s.bytes_out; });
  per_worker(w, all, "sluice_received_messages_total", Type::kCounter,
             "Messages delivered to the handler (frames; reads without a codec).",
             [](const ServerSample& s) { return s.messages_in; });
  per_worker(w, all, "sluice_sent_messages_total", Type::kCounter,
             "Messages queued for peers (send, send_raw, broadcast).",
             [](const ServerSample& s) { return s.messages_out; });
  per_worker(w, all, "sluice_frame_errors_total", Type::kCounter,
             "Connections closed because the codec rejected their input.",
             [](const ServerSample& s) { return s.frame_errors; });
  w.family("sluice_idle_timeouts_total", Type::kCounter,
           "Connections found idle, by kind (reader: no input; writer: no output progress; "
           "all: neither); the server then closes them or its handler decides.");
  static const char* const kKinds[] = {"reader", "writer", "all"};
  for (size_t i = 0; i < all.size(); ++i) {
    for (int k = 0; k < 3; ++k) {
      w.value(worker(i, "kind", kKinds[k]), static_cast<double>(all[i].idle[k]));
    }
  }
  w.family("sluice_loop_lag_seconds", Type::kHistogram,
           "How late the event loops run a timer, sampled every 100 ms per loop "
           "(core/loop_lag.h).");
  for (size_t i = 0; i < all.size(); ++i) w.latency(worker(i), all[i].loop_lag);

  bool heartbeat = false, rudp = false;
  for (const ServerSample& s : all) {
    heartbeat = heartbeat || s.has_heartbeat != 0;
    rudp = rudp || s.has_rudp != 0;
  }
  if (heartbeat) {
    w.family("sluice_heartbeat_drops_total", Type::kCounter,
             "Heartbeat peers dropped, by reason: timeout (missed heartbeats), other (closed, "
             "reset, protocol error, server stopping).");
    for (size_t i = 0; i < all.size(); ++i) {
      w.value(worker(i, "reason", "timeout"), static_cast<double>(all[i].heartbeat_drops_timeout));
      w.value(worker(i, "reason", "other"), static_cast<double>(all[i].heartbeat_drops_other));
    }
    w.family("sluice_heartbeat_rtt_seconds", Type::kHistogram,
             "Round-trip time to heartbeat peers, sampled at each PING: the kernel's smoothed "
             "TCP RTT (TCP connections only).");
    for (size_t i = 0; i < all.size(); ++i) w.latency(worker(i), all[i].heartbeat_rtt);
  }
  if (rudp) {
    per_worker(w, all, "sluice_rudp_retransmitted_bytes_total", Type::kCounter,
               "rudp stream bytes sent again, summed over closed connections.",
               [](const ServerSample& s) { return s.rudp_retransmitted_bytes; });
    per_worker(w, all, "sluice_rudp_lost_packets_total", Type::kCounter,
               "rudp packets declared lost, summed over closed connections.",
               [](const ServerSample& s) { return s.rudp_lost_packets; });
  }
}

}  // namespace sluice
