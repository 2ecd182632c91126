// The bundled servers' PROXY protocol flags (docs/OPERATIONS.md, "PROXY
// protocol"), in one place so echo_server and heartbeat_server spell and
// check them alike:
//   --proxy-protocol off|optional|required   a balancer's header first (TCP only)
//   --proxy-header-timeout-ms MS             how long a peer has to send it
//
// Thread rules: main thread only (command-line parsing).
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "core/server.h"

namespace sluice::servers {

struct ProxyFlags {
  std::string mode = "off";
  int64_t header_timeout_ms = 5000;
};

// Adds the flags, grouped under "PROXY protocol" in --help.
void add_proxy_flags(CLI::App& app, ProxyFlags& flags);

// After parsing: "" or what is wrong (a mode other than off with a proto
// other than tcp), for the tool's stderr and exit 2.
std::string check_proxy_flags(const ProxyFlags& flags, const std::string& proto);

// Into a TCP server's options.
void apply_proxy_flags(const ProxyFlags& flags, ServerOptions* opts);

}  // namespace sluice::servers
