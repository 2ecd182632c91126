#include "servers/common.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

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

void add_worker_flags(CLI::App& app, size_t& workers) {
  app.add_option("--workers", workers,
                 "Worker processes sharing the port through SO_REUSEPORT, under a supervisor that "
                 "restarts crashed ones and drains all on SIGTERM (0 or 1: this process serves)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
}

int run_workers(size_t count, std::chrono::milliseconds drain, const std::string& host,
                uint16_t& port, int sock_type, WorkerMain main,
                const std::function<std::string(uint16_t)>& listening_line,
                WorkerMain sidecar, size_t extra_words) {
  WorkerOptions opts;
  opts.count = count;
  opts.extra_words = extra_words;
  opts.stop_timeout = drain + std::chrono::seconds(3);
  int reserved = -1;
  if (port == 0) {
    reserved = reserve_port(host, sock_type, &port);
    if (reserved < 0) {
      std::fprintf(stderr, "cannot bind %s:0: %s\n", host.c_str(), std::strerror(-reserved));
      return 1;
    }
    if (sock_type == SOCK_DGRAM) {  // it would take its share of datagrams
      ::close(reserved);
      reserved = -1;
    }
  }
  if (sock_type == SOCK_STREAM && !Supervisor::migrate_requests()) {
    spdlog::info("net.ipv4.tcp_migrate_req is 0 here: connections still queued on a worker "
                 "that exits are reset rather than moved to another worker");
  }
  // A worker has no use for the reservation (its own socket holds the port),
  // nor has the sidecar.
  if (sidecar) {
    opts.sidecar = [sidecar = std::move(sidecar), reserved](WorkerContext& ctx) {
      if (reserved >= 0) ::close(reserved);
      return sidecar(ctx);
    };
  }
  Supervisor sup(opts, [main = std::move(main), reserved](WorkerContext& ctx) {
    if (reserved >= 0) ::close(reserved);
    return main(ctx);
  });
  std::string error;
  if (sup.start(&error) < 0) {
    std::fprintf(stderr, "%s\n", error.c_str());
    if (reserved >= 0) ::close(reserved);
    return 1;
  }
  std::printf("%s\n", listening_line(port).c_str());
  std::fflush(stdout);
  const int rc = sup.run();
  if (reserved >= 0) ::close(reserved);
  return rc;
}

}  // namespace sluice::servers
