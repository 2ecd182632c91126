// heartbeat_server: the heartbeat protocol (docs/PROTOCOL.md) over TCP,
// UDP or rudp (reliable messages over UDP), on any IO back end. Answers every PING with a PONG, echoes DATA, and
// drops a peer that has sent nothing for interval x misses. One log line
// (stderr) per join and per drop; the "listening on" line goes to stdout.
//
//   heartbeat_server --proto tcp --port 7100 --interval-ms 1000 --misses 3
//   heartbeat_server --proto udp --io epoll --threads 2
//   heartbeat_server --proto rudp --port 7101
//
// rudp runs the TCP handler unchanged: it relies on its length-prefix codec
// for framing only, and rudp delivers each message whole (the message is
// the frame), so the server gets no codec; --rudp-max-message defaults to
// the protocol's largest payload, so a larger DATA is still a protocol
// error (a frame error on the connection).
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "codec/heartbeat.h"
#include "core/server.h"
#include "core/udp_server.h"
#include "core/log.h"
#include "core/signals.h"
#include "rudp/rudp.h"
#include "servers/common.h"
#include "servers/defense_flags.h"
#include "servers/metrics_flags.h"
#include "servers/proxy_flags.h"
#include "servers/tls_flags.h"
#include "servers/heartbeat_service.h"
#include "servers/rudp_flags.h"
#include "servers/rudp_stats_log.h"

int main(int argc, char** argv) {
  CLI::App app{"sluice heartbeat server"};
  std::string io;
  std::string proto = "tcp";
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int interval_ms = 1000;
  int misses = 3;
  size_t threads = 1;
  std::string log_level = "info";
  bool list_io = false;
  size_t max_conns = 10000;
  int64_t drain_ms = 2000;
  size_t workers = 0;

  app.add_flag("--list-io", list_io, "List IO back ends and whether they are available here, then exit");
  app.add_option("--io", io, "IO back end (default: best available; see --list-io)");
  app.add_option("--proto", proto, "Transport: tcp|udp|rudp (rudp: reliable messages over UDP)")
      ->check(CLI::IsMember({"tcp", "udp", "rudp"}))
      ->capture_default_str();
  app.add_option("--host", host, "Address to listen on")->capture_default_str();
  app.add_option("--port", port, "Port (0: pick a free one)")->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "Expected PING interval")
      ->check(CLI::Range(1, 3600 * 1000))
      ->capture_default_str();
  app.add_option("--misses", misses, "Intervals without traffic before a peer is dropped")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--threads", threads, "Event loops (threads)")->check(CLI::Range(1, 256))->capture_default_str();
  app.add_option("--max-conns", max_conns,
                 "Most concurrent TCP or rudp connections (0: unlimited); more are accepted and closed at once. "
                 "Also the blocking back end's thread cap")
      ->capture_default_str();
  app.add_option("--drain-ms", drain_ms,
                 "On SIGTERM/SIGINT: how long connections may flush before they are aborted")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  sluice::ConnectionLimits limits;
  int64_t linger_ms = limits.linger_timeout.count();
  app.add_option("--linger-ms", linger_ms,
                 "TCP lingering close: after the FIN, how long to keep reading (and discarding) a "
                 "peer's input while it takes what it is owed (0: no linger)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--linger-bytes", limits.linger_max_bytes,
                 "TCP lingering close: most input bytes discarded per phase before cutting a peer off")
      ->capture_default_str();
  uint32_t peer_lines = 20;
  app.add_option("--peer-lines-per-s", peer_lines,
                 "Join/drop log lines per second per loop; the rest are counted and summarised "
                 "(0: every one)")
      ->capture_default_str();
  sluice::servers::RudpFlags rudp_flags;
  rudp_flags.options.max_message = sluice::codec::heartbeat::kMaxPayload;  // the protocol's limit
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
  sluice::raise_fd_limit();
  if (list_io) return sluice::servers::print_backends();
  if (!sluice::servers::resolve_io(io)) return 2;
  sluice::rudp::Options rudp_opts;
  if (std::string err; proto == "rudp" && !sluice::servers::rudp_options(rudp_flags, &rudp_opts, &err)) {
    std::fprintf(stderr, "heartbeat_server: %s\n", err.c_str());
    return 2;
  }
  if (std::string why = sluice::servers::check_defense_flags(defense); !why.empty()) {
    std::fprintf(stderr, "heartbeat_server: %s\n", why.c_str());
    return 2;
  }
  if (std::string why = sluice::servers::check_proxy_flags(proxy_flags, proto); !why.empty()) {
    std::fprintf(stderr, "heartbeat_server: %s\n", why.c_str());
    return 2;
  }
  std::optional<sluice::TlsOptions> tls;
  if (std::string err; sluice::servers::tls_enabled(tls_flags, &err)) {
    if (proto != "tcp") {
      std::fprintf(stderr, "heartbeat_server: TLS is TCP only (--proto tcp)\n");
      return 2;
    }
    tls = sluice::servers::tls_options(tls_flags);
  } else if (!err.empty()) {
    std::fprintf(stderr, "heartbeat_server: %s\n", err.c_str());
    return 2;
  }

  if (proto == "udp" && metrics_flags.enabled) {
    std::fprintf(stderr, "heartbeat_server: --metrics-port: TCP and rudp only\n");
    return 2;
  }
  sluice::servers::HeartbeatOptions hopts;
  hopts.sample_rtt = metrics_flags.enabled;
  hopts.interval = std::chrono::milliseconds(interval_ms);
  hopts.misses = misses;
  hopts.peer_lines_per_s = peer_lines;
  if (proto == "rudp") hopts.stream_proto = "rudp";

  auto line = [&](uint16_t bound, const std::string& io_name) {
    std::string s = "listening on " + host + ":" + std::to_string(bound) + " io=" + io_name +
                    " proto=" + proto;
    if (tls) s += " tls";
    if (proxy_flags.mode != "off") s += " proxy-protocol=" + proxy_flags.mode;
    if (workers > 1) s += " workers=" + std::to_string(workers);
    return s;
  };
  // The server itself: in this process (ctx null), or in each worker.
  auto serve = [&](sluice::WorkerContext* ctx) -> int {
    std::string error;
    std::unique_ptr<sluice::servers::HeartbeatTcpHandler> tcp_handler;
    std::unique_ptr<sluice::servers::RudpStatsLog> rudp_log;
    std::unique_ptr<sluice::servers::HeartbeatUdpHandler> udp_handler;
    std::unique_ptr<sluice::Server> tcp;  // TCP or rudp: a Server either way
    std::unique_ptr<sluice::UdpServer> udp;
    const sluice::servers::HeartbeatCounters* counters = nullptr;
    if (proto == "tcp" || proto == "rudp") {
      tcp_handler = std::make_unique<sluice::servers::HeartbeatTcpHandler>(hopts);
      counters = &tcp_handler->counters();
      sluice::ServerOptions opts;
      opts.host = host;
      opts.port = port;
      opts.io = io;
      opts.threads = threads;
      opts.idle = hopts.idle();
      opts.max_connections = max_conns;
      sluice::servers::apply_tcp_defenses(defense, &opts);
      opts.listen.reuse_port = ctx != nullptr;
      if (max_conns != 0) opts.io_options.max_conns = max_conns;
      limits.linger_timeout = std::chrono::milliseconds(linger_ms);
      opts.limits = limits;
      opts.tls = tls;
      if (metrics_flags.enabled) opts.lag_probe = std::chrono::milliseconds(100);
      // The join line (HeartbeatTcpHandler::on_open) then names the client
      // the balancer's header names.
      sluice::servers::apply_proxy_flags(proxy_flags, &opts);
      if (proto == "rudp") {
        // The same handler, no codec (each rudp message is one payload);
        // wrapped only to log each connection's rudp figures at close.
        sluice::rudp::Options ro = rudp_opts;
        ro.reuse_port = ctx != nullptr;  // workers share the port
        sluice::servers::apply_rudp_defenses(defense, &opts, &ro);
        opts.transport = sluice::rudp::transport(ro);
        rudp_log = std::make_unique<sluice::servers::RudpStatsLog>(*tcp_handler);
        tcp = std::make_unique<sluice::Server>(opts, *rudp_log);
      } else {
        tcp = std::make_unique<sluice::Server>(opts, *tcp_handler,
                                               sluice::codec::heartbeat::make_tcp_codec());
      }
      if (tcp->start(&error) < 0) {
        std::fprintf(stderr, "heartbeat_server: %s\n", error.c_str());
        return 1;
      }
    } else {
      udp_handler = std::make_unique<sluice::servers::HeartbeatUdpHandler>(hopts);
      counters = &udp_handler->counters();
      sluice::UdpServerOptions opts;
      opts.host = host;
      opts.port = port;
      opts.io = io;
      opts.threads = threads;
      opts.socket.reuse_port = ctx != nullptr;
      sluice::servers::apply_udp_defenses(defense, &opts);
      udp = std::make_unique<sluice::UdpServer>(opts, *udp_handler);
      if (udp->start(&error) < 0) {
        std::fprintf(stderr, "heartbeat_server: %s\n", error.c_str());
        return 1;
      }
    }
    auto sample = [&tcp, &rudp_log, counters] {
      sluice::ServerSample s = sluice::sample_server(*tcp);
      s.has_heartbeat = 1;
      const uint64_t drops = counters->drops.load(std::memory_order_relaxed);
      const uint64_t timeouts = counters->timeouts.load(std::memory_order_relaxed);
      s.heartbeat_drops_timeout = std::min(timeouts, drops);
      s.heartbeat_drops_other = drops - s.heartbeat_drops_timeout;
      s.heartbeat_rtt = counters->rtt.read();
      if (rudp_log) {
        s.has_rudp = 1;
        s.rudp_retransmitted_bytes = rudp_log->retransmitted_bytes();
        s.rudp_lost_packets = rudp_log->lost_packets();
      }
      return s;
    };
    std::unique_ptr<sluice::MetricsServer> metrics;  // one process: its own endpoint
    if (ctx == nullptr && metrics_flags.enabled) {
      metrics = sluice::servers::start_metrics(metrics_flags, sample, &error);
      if (!metrics) {
        std::fprintf(stderr, "heartbeat_server: %s\n", error.c_str());
        return 1;
      }
    }
    int sig;
    if (ctx != nullptr) {
      ctx->ready();
      sig = ctx->serve([&, counters] {
        if (metrics_flags.enabled) sluice::servers::publish_sample(*ctx, sample());
        const uint64_t joins = counters->joins.load(std::memory_order_relaxed);
        const uint64_t drops = counters->drops.load(std::memory_order_relaxed);
        return sluice::WorkerCounters{joins - drops, joins,
                                      counters->pings.load(std::memory_order_relaxed) +
                                          counters->data.load(std::memory_order_relaxed)};
      });
    } else {
      std::printf("%s\n", (tcp ? line(tcp->port(), tcp->io_name())
                               : line(udp->port(), udp->io_name())).c_str());
      std::fflush(stdout);
      sig = sluice::wait_for_stop_signal();
    }
    spdlog::info("signal {}: stopping", sig);
    if (tcp) tcp->stop(std::chrono::milliseconds(drain_ms));
    if (rudp_log) spdlog::info("{}", rudp_log->summary());
    if (tcp) {
      if (std::string s = sluice::servers::source_summary(tcp->source_stats()); !s.empty()) {
        spdlog::info("{}", s);
      }
      if (tls) {
        const sluice::TlsStats t = tcp->tls_stats();
        spdlog::info("tls: {} handshakes ({} resumed), {} failed, {} timed out, {} truncated",
                     t.handshakes, t.resumed, t.failed, t.timed_out, t.truncated);
      }
    }
    if (udp) {
      if (udp->limited_count() != 0) {
        spdlog::info("per-source limit: {} datagrams dropped", udp->limited_count());
      }
      udp->stop();
    }
    return 0;
  };

  if (proto == "rudp") sluice::servers::warn_rudp_workers(workers);
  if (workers <= 1) {
    sluice::block_stop_signals();  // before start: loop threads inherit it
    return serve(nullptr);
  }
  return sluice::servers::run_workers(
      workers, std::chrono::milliseconds(drain_ms), host, port,
      proto == "tcp" ? SOCK_STREAM : SOCK_DGRAM,
      [&](sluice::WorkerContext& ctx) { return serve(&ctx); },
      [&](uint16_t bound) { return line(bound, io); },
      sluice::servers::metrics_sidecar_main(metrics_flags), sluice::kServerSampleWords);
}
