// echo_server: echoes what each client sends, on any IO back end, raw or
// through a framing codec (each decoded frame is re-encoded and sent back,
// so the client gets exactly what it sent, frame by frame).
//
//   echo_server --io epoll --port 7000 --codec length --threads 2
//   echo_server --list-io
#include <signal.h>

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "codec/factory.h"
#include "core/server.h"
#include "io/registry.h"
#include "servers/common.h"

namespace {

class EchoHandler final : public sluice::Handler {
 public:
  void on_message(sluice::Connection& conn, std::string_view data) override {
    conn.send(data);
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice TCP echo server"};
  sluice::ServerOptions opts;
  sluice::codec::CodecOptions copts;
  copts.name = "raw";
  bool list_io = false;
  std::string log_level = "info";

  app.add_flag("--list-io", list_io, "List IO back ends and whether they are available here, then exit");
  app.add_option("--io", opts.io, "IO back end (default: best available; see --list-io)");
  app.add_option("--host", opts.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", opts.port, "Port (0: pick a free one)")->capture_default_str();
  app.add_option("--codec", copts.name, "Framing: raw|length|fixed|delimiter|line")
      ->check(CLI::IsMember({"raw", "length", "fixed", "delimiter", "line"}))
      ->capture_default_str();
  app.add_option("--length-bytes", copts.length_bytes, "Length field width for --codec length (1,2,4,8)")
      ->check(CLI::IsMember({1, 2, 4, 8}))
      ->capture_default_str();
  app.add_option("--fixed-size", copts.fixed_size, "Frame size for --codec fixed");
  app.add_option("--delimiter", copts.delimiter, "Delimiter for --codec delimiter (C escapes: \\n \\r \\t \\0 \\xHH)")
      ->capture_default_str();
  app.add_option("--max-frame", copts.max_frame, "Largest frame accepted, bytes")->capture_default_str();
  app.add_option("--threads", opts.threads, "Event loops (threads)")->check(CLI::Range(1, 256))->capture_default_str();
  app.add_option("--max-conns", opts.io_options.max_conns, "blocking back end: most concurrent connections (threads)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  sluice::servers::init_logging(log_level);
  sluice::servers::raise_fd_limit();
  if (list_io) return sluice::servers::print_backends();

  std::unique_ptr<sluice::codec::Codec> codec;
  try {
    codec = sluice::codec::make_codec(copts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 2;
  }
  if (!sluice::servers::resolve_io(opts.io)) return 2;

  sluice::servers::block_stop_signals();
  EchoHandler handler;
  sluice::Server server(opts, handler, std::move(codec));
  std::string error;
  if (server.start(&error) < 0) {
    std::fprintf(stderr, "echo_server: %s\n", error.c_str());
    return 1;
  }
  std::printf("listening on %s:%u io=%s proto=tcp codec=%s\n", opts.host.c_str(),
              server.port(), server.io_name().c_str(), copts.name.c_str());
  std::fflush(stdout);

  int sig = sluice::servers::wait_for_stop_signal();
  spdlog::info("signal {}: stopping ({} connections open)", sig, server.connection_count());
  server.stop();
  return 0;
}
