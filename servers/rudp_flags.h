// The rudp flags of the bundled servers and clients (--proto rudp), in one
// place so every tool spells and checks them alike: they fill an
// rudp::Options (rudp/options.h says what each knob does).
//
// Thread rules: main thread only (command-line parsing).
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "rudp/options.h"

namespace sluice::servers {

struct RudpFlags {
  rudp::Options options;  // defaults: rudp::Options{}
  // Durations as the flags take them (ms); rudp_options() copies them in.
  int64_t keepalive_ms = options.keepalive.count();
  int64_t idle_timeout_ms = options.idle_timeout.count();
};

// --rudp-window, --rudp-send-buffer, --rudp-max-message, --rudp-max-datagram,
// --rudp-cc, --rudp-cc-window, --rudp-keepalive-ms, --rudp-idle-timeout-ms,
// grouped under "rudp" in --help. They apply with --proto rudp only (a
// client's connect timeout is its own --connect-timeout flag).
void add_rudp_flags(CLI::App& app, RudpFlags& flags);

// After parsing: the checked options (durations copied in, the congestion
// controller's name known, its datagram size in step). False with *error
// set ("--rudp-keepalive-ms 40000 must be below --rudp-idle-timeout-ms
// 30000 ...") for a combination that cannot work.
bool rudp_options(RudpFlags& flags, rudp::Options* out, std::string* error);

// With --workers N > 1: logs (warn) what a worker restart does to rudp
// connections. The kernel picks a peer's socket by a hash over the
// SO_REUSEPORT group, so a worker that exits or comes back moves most
// peers to a socket whose process does not know them: their connections
// (on every worker, not only the one that went) stall until their idle
// timeout. TCP keeps established connections on their socket; UDP has
// none to lose.
void warn_rudp_workers(size_t workers);

// The error for a codec flag given with --proto rudp (rudp frames messages
// itself: a codec on top would frame each message twice, or split one).
std::string rudp_codec_error(const std::string& tool, const std::string& codec);

}  // namespace sluice::servers
