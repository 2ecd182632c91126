// fanout_server: the server side of the broadcast benchmark
// (scripts/broadcast_bench.sh, docs/PERFORMANCE.md "Broadcast").
//
//   fanout_server --mode broadcast|echo [--threads 2] [--io epoll] [--port 0]
//
// A sluice Server with the line codec ("\n"-terminated lines, stripped).
//  * broadcast: every line received from any connection is passed to
//    Server::broadcast(line) with no filter: it goes to every open
//    connection, the sender included (the benchmark's publisher simply
//    reads its own lines back and they count as delivered).
//  * echo: every line is sent back to its sender (Connection::send).
// Prints "listening on 127.0.0.1:PORT io=NAME mode=MODE threads=N" on
// stdout once it accepts, and stops on SIGINT/SIGTERM; then prints what it
// did (lines in, broadcasts or echoes) on stderr. The soft RLIMIT_NOFILE is
// raised to the hard limit (10,000 connections need more than the usual
// 1024 descriptors).
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "codec/factory.h"
#include "core/log.h"
#include "core/net.h"
#include "core/server.h"
#include "core/signals.h"
#include "servers/common.h"

namespace {

class FanoutHandler final : public sluice::Handler {
 public:
  explicit FanoutHandler(bool broadcast) : broadcast_(broadcast) {}
  void set_server(sluice::Server* s) { server_ = s; }

  void on_message(sluice::Connection& conn, std::string_view line) override {
    lines_.fetch_add(1, std::memory_order_relaxed);
    if (!broadcast_) {
      if (!conn.send(line)) refused_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (!server_->broadcast(line)) refused_.fetch_add(1, std::memory_order_relaxed);
  }

  uint64_t lines() const { return lines_.load(std::memory_order_relaxed); }
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  const bool broadcast_;
  sluice::Server* server_ = nullptr;
  // Counters only (relaxed): both loops update them.
  std::atomic<uint64_t> lines_{0};
  std::atomic<uint64_t> refused_{0};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice fanout_server: broadcast or echo lines (benchmark server)"};
  sluice::ServerOptions opts;
  opts.threads = 2;
  std::string mode = "broadcast";
  std::string log_level = "warn";
  int64_t drain_ms = 500;
  app.add_option("--mode", mode, "broadcast: every line to every connection; echo: back to its sender")
      ->check(CLI::IsMember({"broadcast", "echo"}))
      ->capture_default_str();
  app.add_option("--io", opts.io, "IO back end (default: best available)");
  app.add_option("--threads", opts.threads, "Event loops (threads)")->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--port", opts.port, "Port on 127.0.0.1 (0: pick a free one)")->capture_default_str();
  app.add_option("--drain-ms", drain_ms, "On SIGTERM/SIGINT: how long connections may flush")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (std::string err; !sluice::init_logging(log_level, &err)) {
    std::fprintf(stderr, "fanout_server: %s\n", err.c_str());
    return 2;
  }
  // Soft limit up to the hard one (never past it): 10,000 connections.
  const size_t fds = sluice::raise_fd_limit();
  if (!sluice::servers::resolve_io(opts.io)) return 2;
  opts.host = "127.0.0.1";
  opts.listen.backlog = 4096;
  opts.io_options.max_conns = fds;  // the blocking back end's thread cap
  sluice::codec::CodecOptions copts;
  copts.name = "line";
  std::unique_ptr<sluice::codec::Codec> codec = sluice::codec::make_codec(copts);

  sluice::block_stop_signals();  // before start: loop threads inherit the mask
  FanoutHandler handler(mode == "broadcast");
  sluice::Server server(opts, handler, std::move(codec));
  handler.set_server(&server);
  std::string error;
  if (server.start(&error) < 0) {
    std::fprintf(stderr, "fanout_server: %s\n", error.c_str());
    return 1;
  }
  std::printf("listening on 127.0.0.1:%u io=%s mode=%s threads=%zu fd_limit=%zu\n", server.port(),
              server.io_name().c_str(), mode.c_str(), opts.threads, fds);
  std::fflush(stdout);

  const int sig = sluice::wait_for_stop_signal();
  const size_t open = server.connection_count();
  server.stop(std::chrono::milliseconds(drain_ms));
  std::fprintf(stderr, "fanout_server: signal %d: %zu connections open; %llu lines in, %llu %s refused\n", sig,
               open, static_cast<unsigned long long>(handler.lines()),
               static_cast<unsigned long long>(handler.refused()), mode == "broadcast" ? "broadcasts" : "echoes");
  return 0;
}
