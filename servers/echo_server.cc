// echo_server: echoes what each client sends, on any IO back end, raw or
// through a framing codec (each decoded frame is re-encoded and sent back,
// so the client gets exactly what it sent, frame by frame). With
// --proto udp it echoes each datagram to its sender instead. With
// --proto rudp (reliable messages over UDP, rudp/rudp.h) the same handler
// serves rudp connections: each message comes back whole and in order,
// and rudp frames the messages itself (no --codec).
//
//   echo_server --io epoll --port 7000 --codec length --threads 2
//   echo_server --proto udp --port 7001
//   echo_server --proto rudp --port 7002 --rudp-window 8388608
//   echo_server --list-io
#include <signal.h>
#include <sys/socket.h>

#include <atomic>

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "codec/factory.h"
#include "core/server.h"
#include "core/udp_server.h"
#include "io/registry.h"
#include "core/log.h"
#include "core/signals.h"
#include "rudp/rudp.h"
#include "servers/common.h"
#include "servers/defense_flags.h"
#include "servers/metrics_flags.h"
#include "servers/proxy_flags.h"
#include "servers/rudp_flags.h"
#include "servers/rudp_stats_log.h"
#include "servers/tls_flags.h"

namespace {

class EchoHandler final : public sluice::Handler {
 public:
  // One line per connection, so debug level: with --proxy-protocol it
  // names the client the balancer's header names.
  void on_open(sluice::Connection& conn) override {
    spdlog::debug("conn #{} {}: open", conn.id(), conn.peer());
  }
  void on_message(sluice::Connection& conn, std::string_view data) override {
    messages_.fetch_add(1, std::memory_order_relaxed);
    conn.send(data);
  }
  uint64_t messages() const { return messages_.load(std::memory_order_relaxed); }
  // Reader-idle: a client that connected and went quiet (or half-open).
  // Writer-idle: no echo made progress for the whole timeout, i.e. no
  // complete frame arrived (a slowloris trickling a frame byte by byte) or
  // the client stopped reading what it is owed. Either way it is reaped.
  void on_idle(sluice::Connection& conn, sluice::IdleKind kind) override {
    spdlog::debug("conn #{} {}: {} idle; closing", conn.id(), conn.peer(),
                  sluice::to_string(kind));
    conn.abort();
  }
  void on_close(sluice::Connection& conn, sluice::CloseReason reason, int) override {
    if (reason == sluice::CloseReason::kFrameError) {
      spdlog::warn("conn #{} {}: {}; closed", conn.id(), conn.peer(), conn.close_detail());
    }
  }

 private:
  std::atomic<uint64_t> messages_{0};  // every loop adds (frames, or reads when raw)
};

class UdpEchoHandler final : public sluice::DatagramHandler {
 public:
  void on_datagram(sluice::UdpEndpoint& ep, const sluice::io::Datagram& d) override {
    datagrams_.fetch_add(1, std::memory_order_relaxed);
    ep.send_to(d.addr, d.addr_len, d.data);
  }
  uint64_t datagrams() const { return datagrams_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> datagrams_{0};  // every loop adds
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
  size_t max_conns = 10000;
  int64_t idle_timeout_ms = 60000;
  int64_t drain_ms = 2000;
  size_t workers = 0;

  app.add_flag("--list-io", list_io, "List IO back ends and whether they are available here, then exit");
  app.add_option("--io", opts.io, "IO back end (default: best available; see --list-io)");
  app.add_option("--proto", proto,
                 "Transport: tcp|udp|rudp (udp: one echo per datagram; rudp: reliable messages "
                 "over UDP, one echo per message; both --codec raw only)")
      ->check(CLI::IsMember({"tcp", "udp", "rudp"}))
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
  app.add_option("--max-conns", max_conns,
                 "Most concurrent connections (0: unlimited); more are accepted and closed at once. "
                 "Also the blocking back end's thread cap")
      ->capture_default_str();
  app.add_option("--idle-timeout-ms", idle_timeout_ms,
                 "Close a connection with no input, or no echo progress, for this long (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--drain-ms", drain_ms,
                 "On SIGTERM/SIGINT: how long connections may flush before they are aborted")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--high-water", opts.limits.high_water,
                 "Pause reading a client once this many bytes are queued for it")
      ->capture_default_str();
  app.add_option("--low-water", opts.limits.low_water, "Resume reading once its queue is down to this")
      ->capture_default_str();
  int64_t linger_ms = opts.limits.linger_timeout.count();
  app.add_option("--linger-ms", linger_ms,
                 "Lingering close: after the FIN, how long to keep reading (and discarding) a "
                 "client's input while it takes what it is owed (0: no linger)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--linger-bytes", opts.limits.linger_max_bytes,
                 "Lingering close: most input bytes discarded per phase before cutting a client off")
      ->capture_default_str();
  sluice::servers::RudpFlags rudp_flags;
  sluice::servers::add_rudp_flags(app, rudp_flags);
  sluice::servers::add_worker_flags(app, workers);
  sluice::servers::DefenseFlags defense;
  sluice::servers::add_defense_flags(app, defense);
  sluice::servers::TlsFlags tls_flags;
  sluice::servers::add_tls_server_flags(app, tls_flags);
  sluice::servers::MetricsFlags metrics_flags;
  sluice::servers::add_metrics_flags(app, metrics_flags);
  sluice::servers::ProxyFlags proxy_flags;
  sluice::servers::add_proxy_flags(app, proxy_flags);
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (std::string err; !sluice::init_logging(log_level, &err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 2;
  }
  opts.limits.linger_timeout = std::chrono::milliseconds(linger_ms);
  if (opts.limits.low_water > opts.limits.high_water) {
    std::fprintf(stderr, "echo_server: --low-water must not exceed --high-water\n");
    return 2;
  }
  if (std::string why = sluice::servers::check_defense_flags(defense); !why.empty()) {
    std::fprintf(stderr, "echo_server: %s\n", why.c_str());
    return 2;
  }
  if (std::string why = sluice::servers::check_proxy_flags(proxy_flags, proto); !why.empty()) {
    std::fprintf(stderr, "echo_server: %s\n", why.c_str());
    return 2;
  }
  std::string tls_error;
  if (sluice::servers::tls_enabled(tls_flags, &tls_error)) {
    if (proto != "tcp") {
      std::fprintf(stderr, "echo_server: TLS is TCP only (--proto tcp)\n");
      return 2;
    }
    opts.tls = sluice::servers::tls_options(tls_flags);
  } else if (!tls_error.empty()) {
    std::fprintf(stderr, "echo_server: %s\n", tls_error.c_str());
    return 2;
  }
  opts.max_connections = max_conns;
  if (max_conns != 0) opts.io_options.max_conns = max_conns;
  opts.idle.reader = std::chrono::milliseconds(idle_timeout_ms);
  opts.idle.writer = std::chrono::milliseconds(idle_timeout_ms);
  sluice::raise_fd_limit();
  if (list_io) return sluice::servers::print_backends();

  std::unique_ptr<sluice::codec::Codec> codec;
  try {
    codec = sluice::codec::make_codec(copts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 2;
  }
  if (!sluice::servers::resolve_io(opts.io)) return 2;

  if (proto == "udp" && metrics_flags.enabled) {
    std::fprintf(stderr, "echo_server: --metrics-port: TCP and rudp only\n");
    return 2;
  }
  if (metrics_flags.enabled) opts.lag_probe = std::chrono::milliseconds(100);
  if (proto == "udp" && copts.name != "raw") {
    std::fprintf(stderr, "echo_server: --proto udp takes --codec raw only (a datagram is a message)\n");
    return 2;
  }
  sluice::rudp::Options rudp_opts;
  if (proto == "rudp") {
    if (copts.name != "raw") {
      std::fprintf(stderr, "%s\n", sluice::servers::rudp_codec_error("echo_server", copts.name).c_str());
      return 2;
    }
    codec.reset();  // raw: no codec; the transport's own framing applies
    std::string err;
    if (!sluice::servers::rudp_options(rudp_flags, &rudp_opts, &err)) {
      std::fprintf(stderr, "echo_server: %s\n", err.c_str());
      return 2;
    }
    sluice::servers::apply_rudp_defenses(defense, &opts, &rudp_opts);
  } else if (proto == "tcp") {
    sluice::servers::apply_tcp_defenses(defense, &opts);
    sluice::servers::apply_proxy_flags(proxy_flags, &opts);
  }
  auto line = [&](uint16_t port, const std::string& io_name) {
    std::string s = "listening on " + opts.host + ":" + std::to_string(port) + " io=" + io_name +
                    " proto=" + proto + " codec=" + copts.name;
    if (opts.tls) s += " tls";
    if (opts.proxy_protocol != sluice::ProxyProtocol::kOff) {
      s += std::string(" proxy-protocol=") + sluice::to_string(opts.proxy_protocol);
    }
    if (workers > 1) s += " workers=" + std::to_string(workers);
    return s;
  };
  // The server itself: in this process (ctx null), or in each worker.
  auto serve = [&](sluice::WorkerContext* ctx) -> int {
    std::string error;
    if (proto == "udp") {
      UdpEchoHandler udp_handler;
      sluice::UdpServerOptions uopts;
      uopts.host = opts.host;
      uopts.port = opts.port;
      uopts.io = opts.io;
      uopts.io_options = opts.io_options;
      uopts.threads = opts.threads;
      uopts.socket.reuse_port = ctx != nullptr;
      sluice::servers::apply_udp_defenses(defense, &uopts);
      sluice::UdpServer udp(uopts, udp_handler);
      if (udp.start(&error) < 0) {
        std::fprintf(stderr, "echo_server: %s\n", error.c_str());
        return 1;
      }
      int sig;
      if (ctx != nullptr) {
        ctx->ready();
        sig = ctx->serve([&] { return sluice::WorkerCounters{0, 0, udp_handler.datagrams()}; });
      } else {
        std::printf("%s\n", line(udp.port(), udp.io_name()).c_str());
        std::fflush(stdout);
        sig = sluice::wait_for_stop_signal();
      }
      spdlog::info("signal {}: stopping ({} datagrams echoed, {} dropped by the per-source "
                   "limit)",
                   sig, udp_handler.datagrams(), udp.limited_count());
      udp.stop();
      return 0;
    }
    EchoHandler handler;
    sluice::ServerOptions sopts = opts;
    sopts.listen.reuse_port = sopts.listen.reuse_port || ctx != nullptr;
    // rudp: the same handler, wrapped only to log each connection's rudp
    // figures at close.
    sluice::servers::RudpStatsLog rudp_log(handler);
    if (proto == "rudp") {
      sluice::rudp::Options ro = rudp_opts;
      ro.reuse_port = ctx != nullptr;  // workers share the port
      sopts.transport = sluice::rudp::transport(ro);
    }
    sluice::Handler& served = proto == "rudp" ? static_cast<sluice::Handler&>(rudp_log) : handler;
    sluice::Server server(sopts, served, std::move(codec));  // once per process
    if (server.start(&error) < 0) {
      std::fprintf(stderr, "echo_server: %s\n", error.c_str());
      return 1;
    }
    auto sample = [&server, &rudp_log, rudp = proto == "rudp"] {
      sluice::ServerSample s = sluice::sample_server(server);
      if (rudp) {
        s.has_rudp = 1;
        s.rudp_retransmitted_bytes = rudp_log.retransmitted_bytes();
        s.rudp_lost_packets = rudp_log.lost_packets();
      }
      return s;
    };
    std::unique_ptr<sluice::MetricsServer> metrics;  // one process: its own endpoint
    if (ctx == nullptr && metrics_flags.enabled) {
      metrics = sluice::servers::start_metrics(metrics_flags, sample, &error);
      if (!metrics) {
        std::fprintf(stderr, "echo_server: %s\n", error.c_str());
        return 1;
      }
    }
    int sig;
    if (ctx != nullptr) {
      ctx->ready();
      sig = ctx->serve([&] {
        if (metrics_flags.enabled) sluice::servers::publish_sample(*ctx, sample());
        return sluice::WorkerCounters{server.connection_count(), server.accepted_count(),
                                      handler.messages()};
      });
    } else {
      std::printf("%s\n", line(server.port(), server.io_name()).c_str());
      std::fflush(stdout);
      sig = sluice::wait_for_stop_signal();
    }
    spdlog::info("signal {}: stopping ({} connections open, {} ms to drain)", sig,
                 server.connection_count(), drain_ms);
    server.stop(std::chrono::milliseconds(drain_ms));
    if (proto == "rudp") spdlog::info("{}", rudp_log.summary());
    if (std::string s = sluice::servers::source_summary(server.source_stats()); !s.empty()) {
      spdlog::info("{}", s);
    }
    if (opts.tls) {
      const sluice::TlsStats t = server.tls_stats();
      spdlog::info("tls: {} handshakes ({} resumed), {} failed, {} timed out, {} truncated",
                   t.handshakes, t.resumed, t.failed, t.timed_out, t.truncated);
    }
    return 0;
  };

  if (proto == "rudp") sluice::servers::warn_rudp_workers(workers);
  if (workers <= 1) {
    sluice::block_stop_signals();  // before start: loop threads inherit it
    return serve(nullptr);
  }
  return sluice::servers::run_workers(
      workers, std::chrono::milliseconds(drain_ms), opts.host, opts.port,
      proto == "tcp" ? SOCK_STREAM : SOCK_DGRAM,
      [&](sluice::WorkerContext& ctx) { return serve(&ctx); },
      [&](uint16_t port) { return line(port, opts.io); },
      sluice::servers::metrics_sidecar_main(metrics_flags), sluice::kServerSampleWords);
}
