// echo_server: echoes what each client sends, on any IO back end, raw or
// through a framing codec (each decoded frame is re-encoded and sent back,
// so the client gets exactly what it sent, frame by frame). With
// --proto udp it echoes each datagram to its sender instead.
//
//   echo_server --io epoll --port 7000 --codec length --threads 2
//   echo_server --proto udp --port 7001
//   echo_server --list-io
#include <signal.h>

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "codec/factory.h"
#include "core/server.h"
#include "core/udp_server.h"
#include "io/registry.h"
#include "servers/common.h"

namespace {

class EchoHandler final : public sluice::Handler {
 public:
  void on_message(sluice::Connection& conn, std::string_view data) override {
    conn.send(data);
  }
  void on_close(sluice::Connection& conn, sluice::CloseReason reason, int) override {
    if (reason == sluice::CloseReason::kFrameError) {
      spdlog::warn("conn #{} {}: {}; closed", conn.id(), conn.peer(), conn.close_detail());
    }
  }
};

class UdpEchoHandler final : public sluice::DatagramHandler {
 public:
  void on_datagram(sluice::UdpEndpoint& ep, const sluice::io::Datagram& d) override {
    ep.send_to(d.addr, d.addr_len, d.data);
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
  std::string proto = "tcp";

  app.add_flag("--list-io", list_io, "List IO back ends and whether they are available here, then exit");
  app.add_option("--io", opts.io, "IO back end (default: best available; see --list-io)");
  app.add_option("--proto", proto, "Transport: tcp|udp (udp: one echo per datagram, --codec raw only)")
      ->check(CLI::IsMember({"tcp", "udp"}))
      ->capture_default_str();
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

  if (proto == "udp") {
    if (copts.name != "raw") {
      std::fprintf(stderr, "echo_server: --proto udp takes --codec raw only (a datagram is a message)\n");
      return 2;
    }
    sluice::servers::block_stop_signals();  // before start: loop threads inherit it
    UdpEchoHandler udp_handler;
    sluice::UdpServerOptions uopts;
    uopts.host = opts.host;
    uopts.port = opts.port;
    uopts.io = opts.io;
    uopts.io_options = opts.io_options;
    uopts.threads = opts.threads;
    sluice::UdpServer udp(uopts, udp_handler);
    std::string error;
    if (udp.start(&error) < 0) {
      std::fprintf(stderr, "echo_server: %s\n", error.c_str());
      return 1;
    }
    std::printf("listening on %s:%u io=%s proto=udp codec=raw\n", opts.host.c_str(), udp.port(),
                udp.io_name().c_str());
    std::fflush(stdout);
    int sig = sluice::servers::wait_for_stop_signal();
    spdlog::info("signal {}: stopping", sig);
    udp.stop();
    return 0;
  }

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
