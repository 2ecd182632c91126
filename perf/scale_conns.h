// One scale_client process: up to ~19,000 heartbeat connections (the
// descriptor limit is 20,000) on one raw epoll loop, opened at a bounded
// rate from source addresses spread over 127.0.0.0/8, each pinging the
// server every `interval` at its own random phase (so a million peers do
// not ping in lock-step). Raw epoll, not sluice's loop, so that the
// client's cost and memory (~64 bytes per connection) stay small next to
// the server's, which is what is measured.
//
// Drops: a connection the server closes during the hold is a *false drop*
// when this client had sent something within interval x misses before it
// saw the close (the server's idle rule had no reason to fire), and a
// *late drop* otherwise (this client itself went quiet that long, e.g.
// starved of CPU). The stall histogram says how late the pings went out.
//
// Thread rules: one thread (the process's main thread) drives it.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "perf/histogram.h"

namespace sluice::perf::scale {

struct ConnsOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  size_t conns = 1000;                  // this process
  std::vector<in_addr> sources;         // bind()s round-robin; empty: the kernel's choice
  size_t source_offset = 0;             // first source used (spreads processes over them)
  double rate = 10000;                  // connects per second, this process
  size_t max_connecting = 2000;         // connects in flight at once
  int64_t interval_ms = 5000;
  int misses = 3;
  int64_t connect_timeout_ms = 5000;
  uint64_t seed = 1;
};

// Counters one process reports (summed over processes by the parent).
struct ConnsCounters {
  uint64_t attempted = 0;
  uint64_t connected = 0;
  uint64_t connect_failed = 0;   // refused, timed out, or no source port left
  uint64_t open = 0;             // connected and not closed, now
  uint64_t pings = 0;            // during the hold
  uint64_t pongs = 0;            // during the hold
  uint64_t false_drops = 0;      // during the hold: see the header comment
  uint64_t late_drops = 0;       // during the hold
  uint64_t closed_other = 0;     // closed outside the hold (ramp, linger)
  uint64_t bad_frames = 0;       // anything but a well-formed PONG
  uint64_t errno_first = 0;      // the first connect failure's errno
  int64_t ramp_ns = 0;           // this ramp: its start to its last connect settled
};

enum class Phase { kRamp, kHold, kLinger };

class Conns {
 public:
  explicit Conns(ConnsOptions o);
  ~Conns();
  Conns(const Conns&) = delete;
  Conns& operator=(const Conns&) = delete;

  // -errno if the epoll instance cannot be made.
  int init();
  // Also wakes step() when `fd` is readable (the parent's control pipe).
  void watch(int fd);
  // Ramps (at `rate`, from now) up to n connection attempts in all.
  // Resets the connect-latency histogram and ramp time (one per step).
  void set_target(size_t n);
  // One loop iteration: opens due connections, sends due pings, reads
  // PONGs. Waits at most `max_wait_ms` (and less when something is due).
  // True when the watched fd is readable.
  bool step(int max_wait_ms);
  // Every attempt up to the target made and settled (connected or failed).
  bool ramp_done() const;
  // kHold starts a measured window: hold counters and histograms restart.
  void set_phase(Phase p);
  Phase phase() const { return phase_; }
  // Closes every connection (the process then exits).
  void close_all();

  const ConnsCounters& counters() const { return c_; }
  const Histogram& connect_latency() const { return connect_ns_; }
  const Histogram& rtt() const { return rtt_ns_; }          // hold only
  const Histogram& ping_lateness() const { return late_ns_; }  // hold only

 private:
  struct Conn {
    int fd = -1;
    uint8_t state = 0;   // kIdle, kConnecting, kUp, kClosed
    uint8_t rlen = 0;    // bytes of a partial frame in rbuf
    uint8_t rbuf[21] = {};
    uint64_t seq = 0;
    int64_t started_ns = 0;    // connect() time
    int64_t last_send_ns = 0;  // last PING sent
  };

  void open_due(int64_t now);
  void open_one(size_t i, int64_t now);
  void on_event(uint32_t idx, uint32_t events, int64_t now);
  void on_connected(Conn& c, uint32_t idx, int64_t now);
  void on_readable(Conn& c, int64_t now);
  void on_closed(Conn& c, int64_t now);
  void fail_connect(Conn& c, int err);
  void send_due(int64_t now);
  void expire_connects(int64_t now);

  ConnsOptions o_;
  int ep_ = -1;
  std::vector<Conn> conns_;
  size_t target_ = 0;
  size_t ramp_base_ = 0;  // next_open_ when the current ramp began
  int64_t ramp_start_ns_ = 0;
  int watch_fd_ = -1;
  size_t next_open_ = 0;
  size_t connecting_ = 0;
  size_t settled_ = 0;
  int64_t start_ns_ = 0;
  int64_t hold_start_ns_ = 0;
  Phase phase_ = Phase::kRamp;
  uint64_t rng_;
  // PINGs due: (time, connection), earliest first.
  using Due = std::pair<int64_t, uint32_t>;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due_;
  // Connects in flight, oldest first (for the connect timeout).
  std::queue<uint32_t> connect_order_;
  ConnsCounters c_;
  Histogram connect_ns_{2};
  Histogram rtt_ns_{2};
  Histogram late_ns_{2};
};

int64_t now_ns();

}  // namespace sluice::perf::scale
