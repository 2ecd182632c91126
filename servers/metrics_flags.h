// --metrics-port / --metrics-host for the bundled servers: a /metrics
// endpoint (core/metrics_server.h) serving core/server_metrics.h's series.
//
//  * One process: start_metrics() serves the server's sample as worker 0.
//  * --workers N: each worker publishes its sample through the
//    supervisor's shared page (publish_sample(), in serve()'s sample
//    callback) and one sidecar process (metrics_sidecar(), see
//    core/workers.h) serves all of them from one port, worker="0".."N-1".
//
// Either way the endpoint prints "metrics on http://HOST:PORT/metrics" on
// stdout once it listens (with --metrics-port 0 that says which port).
//
// Thread rules: main thread (or a worker's main thread) only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "core/metrics_server.h"
#include "core/server_metrics.h"
#include "core/workers.h"

namespace sluice::servers {

struct MetricsFlags {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  bool enabled = false;  // --metrics-port was given (0: any free port)
};

void add_metrics_flags(CLI::App& app, MetricsFlags& flags);

// Starts the endpoint for this process's `sample` (called on the metrics
// loop at each scrape). Null and *error when it cannot listen.
std::unique_ptr<MetricsServer> start_metrics(const MetricsFlags& flags,
                                             std::function<ServerSample()> sample,
                                             std::string* error);

// In a worker: publishes `s` for the sidecar.
void publish_sample(WorkerContext& ctx, const ServerSample& s);

// The sidecar's main (WorkerOptions::sidecar): serves every worker's
// published sample until SIGTERM. Returns the exit code.
int metrics_sidecar(const MetricsFlags& flags, WorkerContext& ctx);
// That main bound to `flags` (copied), or empty when metrics are off: what
// run_workers() takes as its sidecar.
WorkerMain metrics_sidecar_main(const MetricsFlags& flags);

}  // namespace sluice::servers
