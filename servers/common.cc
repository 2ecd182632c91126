#include "servers/common.h"

#include <cstdio>

#include "core/log.h"
#include "core/signals.h"

#include "io/registry.h"

namespace sluice::servers {

int print_backends() {
  for (const io::BackendInfo& b : io::backends()) {
    std::printf("%-12s %-11s %s%s%s\n", b.name.c_str(),
                b.available ? "available" : "unavailable", b.summary.c_str(),
                b.available ? "" : " -- ", b.reason.c_str());
  }
  std::printf("default: %s\n", io::default_backend().c_str());
  return 0;
}

bool resolve_io(std::string& name) {
  if (name.empty()) {
    name = io::default_backend();
    return true;
  }
  io::BackendInfo info = io::probe(name);
  if (info.available) return true;
  std::fprintf(stderr, "IO back end '%s' is unavailable here: %s (see --list-io)\n",
               name.c_str(), info.reason.c_str());
  return false;
}

void add_server_flags(CLI::App& app, ServerOptions& opts, std::string& log_level) {
  app.add_option("--io", opts.io, "IO back end (default: the best available here)");
  app.add_option("--port", opts.port, "TCP port (0: any free one)")->capture_default_str();
  app.add_option("--threads", opts.threads, "Event loops")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")
      ->capture_default_str();
  app.add_flag_callback(
      "--list-io",
      [] {
        print_backends();
        throw CLI::Success();
      },
      "List the IO back ends and whether they work here, then exit");
}

int prepare_server(ServerOptions& opts, const std::string& log_level) {
  if (std::string error; !init_logging(log_level, &error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 2;
  }
  if (!resolve_io(opts.io)) return 2;
  block_stop_signals();  // before start: the loop threads inherit the mask
  return 0;
}

void serve_until_signal(const Server& server, const ServerOptions& opts) {
  std::printf("listening on %s:%u io=%s\n", opts.host.c_str(), server.port(),
              server.io_name().c_str());
  std::fflush(stdout);
  wait_for_stop_signal();
}

}  // namespace sluice::servers
