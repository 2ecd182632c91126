#include "servers/proxy_flags.h"

#include <chrono>

namespace sluice::servers {

namespace {
ProxyProtocol mode_of(const std::string& s) {
  if (s == "optional") return ProxyProtocol::kOptional;
  if (s == "required") return ProxyProtocol::kRequired;
  return ProxyProtocol::kOff;
}
}  // namespace

void add_proxy_flags(CLI::App& app, ProxyFlags& flags) {
  const std::string g = "PROXY protocol";
  app.add_option("--proxy-protocol", flags.mode,
                 "A balancer's PROXY protocol header (v1 or v2) before each TCP connection's "
                 "data: off, optional (a header if one is sent: any client can then spoof its "
                 "address), required. Only behind a trusted balancer")
      ->group(g)
      ->check(CLI::IsMember({"off", "optional", "required"}))
      ->capture_default_str();
  app.add_option("--proxy-header-timeout-ms", flags.header_timeout_ms,
                 "How long a connection may take to send its PROXY header before it is cut off")
      ->group(g)
      ->check(CLI::Range(int64_t{1}, int64_t{3600000}))
      ->capture_default_str();
}

std::string check_proxy_flags(const ProxyFlags& flags, const std::string& proto) {
  if (flags.mode != "off" && proto != "tcp") return "--proxy-protocol: TCP only (--proto tcp)";
  return "";
}

void apply_proxy_flags(const ProxyFlags& flags, ServerOptions* opts) {
  opts->proxy_protocol = mode_of(flags.mode);
  opts->proxy_header_timeout = std::chrono::milliseconds(flags.header_timeout_ms);
}

}  // namespace sluice::servers
