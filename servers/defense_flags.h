// The bundled servers' flags against abuse (docs/ROBUSTNESS.md, "Per-source
// limits" and "DoS lab"), in one place so echo_server and heartbeat_server
// spell and check them alike:
//   --max-conns-per-source N   open connections one source may hold (TCP, rudp)
//   --source-rate R            per-source token bucket: accepted connections
//                              a second (TCP), datagrams (UDP), handshake
//                              packets (rudp)
//   --source-burst B           that bucket's depth (default: max(1, R))
//   --source-prefix-v4 N       how many bits of an IPv4 address name a source
//   --backlog N                the listen backlog (TCP)
//   --defer-accept-s S         TCP_DEFER_ACCEPT (TCP servers whose clients
//                              speak first)
//
// Thread rules: main thread only (command-line parsing).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "core/server.h"
#include "core/udp_server.h"
#include "rudp/options.h"

namespace sluice::servers {

struct DefenseFlags {
  SourceLimitOptions source;
  ListenOptions listen;
};

// Adds the flags, grouped under "defenses" in --help.
void add_defense_flags(CLI::App& app, DefenseFlags& flags);

// After parsing: "" or what is wrong (for the tool's stderr and exit 2).
std::string check_defense_flags(const DefenseFlags& flags);

// Into each kind of server: TCP (listen options, per-source cap and accept
// rate), rudp (the cap on the Server, the rate on handshake packets) and
// UDP (the rate on datagrams).
void apply_tcp_defenses(const DefenseFlags& flags, ServerOptions* opts);
void apply_rudp_defenses(const DefenseFlags& flags, ServerOptions* opts, rudp::Options* ro);
void apply_udp_defenses(const DefenseFlags& flags, UdpServerOptions* opts);

// One log line of what the limits did, for a server's exit ("" when off).
std::string source_summary(const SourceLimitStats& s);

}  // namespace sluice::servers
