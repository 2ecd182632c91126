#include "servers/defense_flags.h"

#include <fmt/format.h>

namespace sluice::servers {

void add_defense_flags(CLI::App& app, DefenseFlags& flags) {
  const std::string g = "defenses";
  app.add_option("--max-conns-per-source", flags.source.max_conns,
                 "Open connections one source address may hold (TCP, rudp; 0: no cap); "
                 "more are reset at accept")
      ->group(g)
      ->capture_default_str();
  app.add_option("--source-rate", flags.source.rate,
                 "Per-source token bucket, per second: accepted connections (TCP), datagrams "
                 "(UDP), handshake packets (rudp). 0: off")
      ->group(g)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--source-burst", flags.source.burst,
                 "Depth of the per-source bucket (0: max(1, --source-rate))")
      ->group(g)
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--source-prefix-v4", flags.source.prefix_v4,
                 "Bits of an IPv4 address that name one source (24: a /24 is one source)")
      ->group(g)
      ->check(CLI::Range(1, 32))
      ->capture_default_str();
  app.add_option("--backlog", flags.listen.backlog,
                 "Listen backlog (TCP; the kernel caps it at net.core.somaxconn)")
      ->group(g)
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("--defer-accept-s", flags.listen.defer_accept_s,
                 "TCP_DEFER_ACCEPT: hand a connection to the server only once its first "
                 "bytes arrive (wait at most this long; 0: off; only where clients speak first)")
      ->group(g)
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
}

std::string check_defense_flags(const DefenseFlags& flags) {
  std::string why = flags.source.validate();
  if (!why.empty()) why = "--source-rate/--source-burst: " + why;
  return why;
}

void apply_tcp_defenses(const DefenseFlags& flags, ServerOptions* opts) {
  opts->per_source = flags.source;
  const bool reuse_port = opts->listen.reuse_port;
  opts->listen = flags.listen;
  opts->listen.reuse_port = reuse_port;
}

void apply_rudp_defenses(const DefenseFlags& flags, ServerOptions* opts, rudp::Options* ro) {
  // The cap holds per connection; the bucket meters handshake packets,
  // which is where a flood arrives (a connection needs several of them).
  opts->per_source = SourceLimitOptions{};
  opts->per_source.max_conns = flags.source.max_conns;
  opts->per_source.prefix_v4 = flags.source.prefix_v4;
  ro->handshake_limit = flags.source;
  ro->handshake_limit.max_conns = 0;
}

void apply_udp_defenses(const DefenseFlags& flags, UdpServerOptions* opts) {
  opts->per_source = flags.source;
  opts->per_source.max_conns = 0;
}

std::string source_summary(const SourceLimitStats& s) {
  if (s.admitted + s.over_cap + s.over_rate == 0) return "";
  return fmt::format("per-source limits: admitted={} over_cap={} over_rate={} overflow={} "
                     "sources={}",
                     s.admitted, s.over_cap, s.over_rate, s.overflow, s.tracked);
}

}  // namespace sluice::servers
