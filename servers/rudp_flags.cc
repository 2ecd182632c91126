#include "servers/rudp_flags.h"

#include <chrono>

#include <spdlog/spdlog.h>

#include "rudp/cc/registry.h"

namespace sluice::servers {

void add_rudp_flags(CLI::App& app, RudpFlags& f) {
  const std::string g = "rudp (with --proto rudp)";
  rudp::Options& o = f.options;
  std::string ccs;
  for (const std::string& n : rudp::cc::available()) ccs += (ccs.empty() ? "" : "|") + n;
  app.add_option("--rudp-window", o.window,
                 "Flow-control window: bytes the peer may send beyond what the handler took")
      ->group(g)->check(CLI::Range(size_t{1} << 12, size_t{1} << 30))->capture_default_str();
  app.add_option("--rudp-send-buffer", o.send_buffer,
                 "Bytes sent and not yet acknowledged, at most (the socket send buffer's analogue)")
      ->group(g)->check(CLI::Range(size_t{1} << 12, size_t{1} << 30))->capture_default_str();
  app.add_option("--rudp-max-message", o.max_message, "Largest message accepted from the peer")
      ->group(g)->check(CLI::Range(size_t{1}, size_t{1} << 30))->capture_default_str();
  app.add_option("--rudp-max-datagram", o.max_datagram,
                 "Largest datagram sent (IP/UDP headers not counted; 1400 fits a 1500 MTU)")
      ->group(g)->check(CLI::Range(1200, 65507))->capture_default_str();
  app.add_option("--rudp-cc,--cc", o.cc, "Congestion controller: " + ccs)
      ->group(g)->capture_default_str();
  app.add_option("--rudp-cc-window", o.cc_config.fixed_window,
                 "Fixed controller's window in bytes (0: 64 datagrams)")
      ->group(g)->capture_default_str();
  app.add_option("--rudp-vegas-alpha", o.cc_config.vegas_alpha,
                 "Vegas: fewest packets to keep queued at the bottleneck")
      ->group(g)->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--rudp-vegas-beta", o.cc_config.vegas_beta,
                 "Vegas: most packets to keep queued at the bottleneck")
      ->group(g)->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_flag("!--rudp-no-hystart", o.cc_config.hystart,
               "CUBIC: plain slow start instead of HyStart++ (RFC 9406)")
      ->group(g);
  app.add_flag("!--rudp-no-ecn", o.ecn,
               "Do not mark datagrams ECN-capable (ECT(0)) nor react to CE marks "
               "(codepoints received are still reported)")
      ->group(g);
  app.add_option("--rudp-keepalive-ms", f.keepalive_ms,
                 "Send a PING after this long with nothing sent or received (0: off)")
      ->group(g)->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--rudp-idle-timeout-ms", f.idle_timeout_ms,
                 "Nothing received for this long: the connection is dead (ETIMEDOUT)")
      ->group(g)->check(CLI::Range(int64_t{1}, int64_t{24} * 3600 * 1000))->capture_default_str();
}

bool rudp_options(RudpFlags& f, rudp::Options* out, std::string* error) {
  rudp::Options o = f.options;
  o.keepalive = std::chrono::milliseconds(f.keepalive_ms);
  o.idle_timeout = std::chrono::milliseconds(f.idle_timeout_ms);
  // A keepalive at or past the idle timeout keeps nothing alive: a quiet
  // but healthy connection would die.
  if (o.keepalive.count() > 0 && o.keepalive >= o.idle_timeout) {
    *error = "--rudp-keepalive-ms " + std::to_string(f.keepalive_ms) +
             " must be below --rudp-idle-timeout-ms " + std::to_string(f.idle_timeout_ms) +
             " (or 0: off), or quiet connections time out";
    return false;
  }
  if (o.cc_config.vegas_alpha > o.cc_config.vegas_beta) {
    *error = "--rudp-vegas-alpha must not exceed --rudp-vegas-beta";
    return false;
  }
  // The controller's window is counted in datagrams of this size.
  o.cc_config.max_datagram = o.max_datagram;
  // rudp looks the controller up only at each handshake (and a server
  // then drops the peer with one log line): check the name now.
  if (!rudp::cc::create(o.cc, o.cc_config, error)) {
    *error = "--rudp-cc: " + *error;
    return false;
  }
  *out = o;
  return true;
}

void warn_rudp_workers(size_t workers) {
  if (workers <= 1) return;
  spdlog::warn("rudp with {} workers: a worker that exits or restarts changes which socket the "
               "kernel gives each peer, so rudp connections on every worker may stall until "
               "their idle timeout (--rudp-idle-timeout-ms)",
               workers);
}

std::string rudp_codec_error(const std::string& tool, const std::string& codec) {
  return tool + ": --proto rudp takes no --codec (got '" + codec +
         "'): rudp carries whole messages (each send() arrives as one message, in order), so "
         "it frames them itself; a codec on top would frame them twice";
}

}  // namespace sluice::servers
