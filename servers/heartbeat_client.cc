// heartbeat_client: N heartbeat sessions (docs/PROTOCOL.md) against a
// heartbeat_server, over TCP, UDP or rudp (reliable messages over UDP), on
// any IO back end. Each session
// PINGs every interval, matches PONGs by sequence, measures the RTT and
// reconnects with capped exponential backoff + jitter when the server goes
// away (the delay grows with each failure, including connections the
// server accepts and then drops, and starts over only after a healthy
// connection; see PROTOCOL.md). At the end it prints ONE JSON line on stdout:
//
//   {"pings_sent":..,"pongs_received":..,"lost":..,"in_flight":..,
//    "reconnects":..,"rtt_p50_us":..,"rtt_p99_us":..,"rtt_max_us":..}
//
// with pings_sent == pongs_received + lost + in_flight (see PROTOCOL.md).
//
//   heartbeat_client --port 7100 --conns 10 --interval-ms 100 --duration-s 5
//   heartbeat_client --port 7100 --stop-pings-after-s 2   # session 0 goes silent
//   heartbeat_client --proto rudp --port 7101 --conns 10
//   heartbeat_client --port 7443 --tls --tls-ca ca.pem   # TLS, server verified
//
// With --tls, a handshake refused before any session was ever up (an
// untrusted certificate, a wrong name, a server without TLS) ends the run:
// exit 1 and OpenSSL's reason on stderr, no report. One that times out is
// retried.
#include <signal.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "core/net.h"
#include "core/log.h"
#include "core/signals.h"
#include "servers/common.h"
#include "servers/heartbeat_pinger.h"
#include "servers/rudp_flags.h"
#include "servers/tls_flags.h"

namespace {

std::chrono::milliseconds seconds_to_ms(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(s * 1000.0)));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice heartbeat client"};
  sluice::servers::PingerOptions o;
  int interval_ms = 1000;
  double duration_s = 10;
  double stop_after_s = -1;
  int backoff_min_ms = 100;
  int backoff_max_ms = 5000;
  int connect_timeout_ms = 2000;
  std::string log_level = "info";
  bool list_io = false;

  app.add_flag("--list-io", list_io, "List IO back ends and whether they are available here, then exit");
  app.add_option("--io", o.io, "IO back end (default: best available; see --list-io)");
  app.add_option("--proto", o.proto, "Transport: tcp|udp|rudp (rudp: reliable messages over UDP)")
      ->check(CLI::IsMember({"tcp", "udp", "rudp"}))
      ->capture_default_str();
  app.add_option("--host", o.host, "Server: a numeric IPv4/IPv6 address or a host name (an unknown name: exit 1)")->capture_default_str();
  app.add_option("--port", o.port, "Server port")->required();
  app.add_option("--conns", o.conns, "Sessions (connections or UDP sockets)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "PING interval")
      ->check(CLI::Range(1, 3600 * 1000))
      ->capture_default_str();
  app.add_option("--misses", o.misses, "Intervals without a PONG before the server is presumed gone")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--duration-s", duration_s, "How long to run")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--stop-pings-after-s", stop_after_s,
                 "Test/demo knob: session 0 stops sending PINGs after this long (the server drops it)");
  app.add_option("--backoff-min-ms", backoff_min_ms, "First reconnect delay (before jitter); it doubles with each failed attempt (refused, "
                 "or accepted and then dropped before a PONG) up to --backoff-max-ms, and starts over "
                 "once a connection has been answered for an interval")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  app.add_option("--backoff-max-ms", backoff_max_ms, "Reconnect delay cap")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  app.add_option("--connect-timeout-ms", connect_timeout_ms, "TCP connect / rudp handshake timeout")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Backoff jitter seed")->capture_default_str();
  sluice::servers::RudpFlags rudp_flags;
  sluice::servers::add_rudp_flags(app, rudp_flags);
  sluice::servers::TlsFlags tls_flags;
  sluice::servers::add_tls_client_flags(app, tls_flags);
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  if (std::string err; !sluice::init_logging(log_level, &err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 2;
  }
  sluice::raise_fd_limit();
  if (list_io) return sluice::servers::print_backends();
  if (!sluice::servers::resolve_io(o.io)) return 2;
  if (std::string err; o.proto == "rudp" && !sluice::servers::rudp_options(rudp_flags, &o.rudp, &err)) {
    std::fprintf(stderr, "heartbeat_client: %s\n", err.c_str());
    return 2;
  }
  if (std::string err; sluice::servers::tls_enabled(tls_flags, &err)) {
    if (o.proto != "tcp") {
      std::fprintf(stderr, "heartbeat_client: --tls is for --proto tcp only\n");
      return 2;
    }
    o.tls = sluice::servers::tls_client_context(tls_flags, &err);
    if (!o.tls) {
      std::fprintf(stderr, "heartbeat_client: %s\n", err.c_str());
      return 2;
    }
  } else if (!err.empty()) {
    std::fprintf(stderr, "heartbeat_client: %s\n", err.c_str());
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);

  o.interval = std::chrono::milliseconds(interval_ms);
  o.duration = seconds_to_ms(duration_s);
  o.stop_pings_after = stop_after_s < 0 ? std::chrono::milliseconds(-1) : seconds_to_ms(stop_after_s);
  o.backoff_initial = std::chrono::milliseconds(backoff_min_ms);
  o.backoff_max = std::chrono::milliseconds(backoff_max_ms);
  o.connect_timeout = std::chrono::milliseconds(connect_timeout_ms);

  // SIGINT/SIGTERM end the run early, even during the sessions' setup
  // (Pinger::stop() sticks); the report is still printed.
  sluice::block_stop_signals();
  sluice::servers::Pinger pinger(o);
  std::atomic<bool> done{false};
  std::thread signals([&] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    const timespec tick{0, 100 * 1000 * 1000};
    while (!done.load()) {
      if (sigtimedwait(&set, nullptr, &tick) > 0) {
        spdlog::info("signal: finishing early");
        pinger.stop();
      }
    }
  });

  sluice::servers::PingerReport report;
  std::string error;
  const int rc = pinger.run(&report, &error);
  done = true;
  signals.join();
  if (rc < 0) {
    std::fprintf(stderr, "heartbeat_client: %s\n", error.c_str());
    return 1;
  }
  spdlog::info("connect failures {}, drops {}, unmatched pongs {}", report.connect_failures,
               report.drops, report.unmatched_pongs);
  std::printf("%s\n", report.json().c_str());
  std::fflush(stdout);
  return 0;
}
