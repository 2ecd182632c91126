// loadgen's rudp mode (--proto rudp): closed-loop echo load over rudp
// connections, each message verified byte for byte like the TCP and UDP
// modes, plus the rudp figures (retransmissions, losses, RTT) summed over
// the connections at the end.
//
// Unlike the TCP and UDP modes, which are plain sockets on loadgen's own
// epoll loop (so a bug in sluice's IO layer cannot hide in the
// measurement), this mode runs rudp::Client on sluice EventLoops, one per
// worker thread, on the back end chosen with --io: rudp is a protocol, and
// a second implementation of it inside loadgen would measure itself, not
// the server. Every echoed byte is still checked here. This header keeps
// that dependency (//core, //io, //rudp) out of the rest of loadgen: only
// loadgen_rudp.cc includes sluice headers.
//
// Thread rules: RudpMode on the main thread; each RudpWorker's run() on its
// own thread (which becomes its loop's thread); the accessors after run()
// returned.
#ifndef SLUICE_PERF_LOADGEN_RUDP_H_
#define SLUICE_PERF_LOADGEN_RUDP_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "perf/loadgen_internal.h"

namespace sluice::perf::loadgen {

// The rudp figures of the measured connections, summed (srtt as a sum, for
// the mean).
struct RudpTotals {
  uint64_t conns = 0;  // connections whose figures are in the sums
  uint64_t packets_sent = 0;
  uint64_t packets_received = 0;
  uint64_t retransmitted = 0;  // stream bytes sent again
  uint64_t lost = 0;           // packets declared lost
  uint64_t spurious = 0;
  uint64_t pto = 0;
  uint64_t srtt_ns = 0;  // summed
  uint64_t min_rtt_ns = 0;  // the smallest

  void add(const RudpTotals& o);
};

class RudpWorker {
 public:
  virtual ~RudpWorker() = default;
  virtual void run() = 0;
  virtual const Histogram& hist() const = 0;
  virtual const Totals& totals() const = 0;
  virtual const RudpTotals& rudp() const = 0;
};

class RudpMode {
 public:
  RudpMode();
  ~RudpMode();
  // --io and the --rudp-* flags (servers/rudp_flags.h).
  void add_flags(CLI::App& app);
  // After parsing: false with *error for options rudp cannot run with.
  bool prepare(const Options& o, std::string* error);
  // The back end's name once prepared (for the JSON line).
  const std::string& io() const;
  std::unique_ptr<RudpWorker> worker(const Options& o, const Wire& w, std::vector<uint32_t> ids);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::perf::loadgen

#endif  // SLUICE_PERF_LOADGEN_RUDP_H_
