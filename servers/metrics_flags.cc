#include "servers/metrics_flags.h"

#include <bit>
#include <array>
#include <cstdio>
#include <vector>

#include <spdlog/spdlog.h>

namespace sluice::servers {

namespace {

using Words = std::array<uint64_t, kServerSampleWords>;

void print_endpoint(const MetricsFlags& flags, uint16_t port) {
  std::printf("metrics on http://%s:%u/metrics\n", flags.host.c_str(), port);
  std::fflush(stdout);
}

}  // namespace

void add_metrics_flags(CLI::App& app, MetricsFlags& flags) {
  app.add_option_function<uint16_t>(
         "--metrics-port",
         [&flags](const uint16_t& port) {
           flags.port = port;
           flags.enabled = true;
         },
         "Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port; with "
         "--workers, one endpoint for all workers)");
  app.add_option("--metrics-host", flags.host, "Address of the metrics endpoint")
      ->capture_default_str();
}

std::unique_ptr<MetricsServer> start_metrics(const MetricsFlags& flags,
                                             std::function<ServerSample()> sample,
                                             std::string* error) {
  auto server = std::make_unique<MetricsServer>(
      MetricsOptions{.host = flags.host, .port = flags.port}, [sample = std::move(sample)] {
        const ServerSample s = sample();
        metrics::TextWriter w;
        write_server_metrics(w, std::span<const ServerSample>(&s, 1));
        return w.take();
      });
  if (server->start(error) < 0) return nullptr;
  print_endpoint(flags, server->port());
  return server;
}

void publish_sample(WorkerContext& ctx, const ServerSample& s) {
  const Words words = std::bit_cast<Words>(s);
  ctx.publish_words(words);
}

WorkerMain metrics_sidecar_main(const MetricsFlags& flags) {
  if (!flags.enabled) return {};
  return [flags](WorkerContext& ctx) { return metrics_sidecar(flags, ctx); };
}

int metrics_sidecar(const MetricsFlags& flags, WorkerContext& ctx) {
  const size_t count = ctx.count();
  MetricsServer server(MetricsOptions{.host = flags.host, .port = flags.port}, [&ctx, count] {
    std::vector<ServerSample> all;
    all.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      Words words{};
      ctx.read_words(i, words);
      all.push_back(std::bit_cast<ServerSample>(words));
    }
    metrics::TextWriter w;
    write_server_metrics(w, all);
    return w.take();
  });
  std::string error;
  if (server.start(&error) < 0) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  print_endpoint(flags, server.port());
  ctx.ready();
  const int sig = ctx.serve(nullptr);
  spdlog::debug("metrics: signal {}: stopping", sig);
  server.stop();
  return 0;
}

}  // namespace sluice::servers
