// Internal to //servers:heartbeat_pinger: Pinger::Impl and the Session
// base that the TCP, rudp and UDP sessions (heartbeat_pinger_stream.h,
// heartbeat_pinger_udp.cc) build on.
//
// Thread rules: everything here runs on the pinger's loop thread, except
// Impl::mu, Impl::running and Impl::stop_requested, which Pinger::stop()
// uses from any thread.
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "core/backoff.h"
#include "core/connector.h"
#include "core/event_loop.h"
#include "servers/heartbeat_pinger.h"

namespace sluice::servers {

namespace pinger_detail {

inline uint64_t ns_of(Clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

struct Outstanding {
  uint64_t seq;
  Clock::time_point sent;
};

class Session;

}  // namespace pinger_detail

struct Pinger::Impl {
  explicit Impl(const PingerOptions& o) : opts(o) {}
  void finish();
  void fail(int err, std::string why);

  const PingerOptions& opts;
  // Declaration order is destruction order reversed: sessions go first,
  // then the loop, then the connector (which must outlive the loop).
  std::unique_ptr<Connector> connector;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<codec::Codec> codec;
  std::vector<std::unique_ptr<pinger_detail::Session>> sessions;
  sockaddr_storage server{};
  socklen_t server_len = 0;
  std::string server_host;  // numeric: what rudp::Client takes
  std::string local_host;  // UDP sockets bind here

  PingerReport stats;
  std::vector<uint64_t> rtts_us;
  bool finishing = false;
  bool any_up = false;  // some session has connected (TCP: its handshake done)
  int fatal = 0;
  std::string fatal_error;

  // stop() sets stop_requested and, while run() runs its loop, posts
  // finish() to it. run() reads stop_requested under mu when it publishes
  // `running`, so a stop before that point is never lost; its setup also
  // polls it to stop early.
  std::mutex mu;  // guards `running` against run() starting and ending
  EventLoop* running = nullptr;
  std::atomic<bool> stop_requested{false};
};

namespace pinger_detail {

// One logical connection: PINGs, outstanding bookkeeping, backoff.
class Session {
 public:
  virtual ~Session() = default;
  virtual void start() = 0;
  virtual void go_silent() = 0;
  virtual void finish(Clock::time_point end) = 0;
  virtual bool released() const = 0;

 protected:
  Session(Pinger::Impl& p, size_t index)
      : p_(p),
        index_(index),
        backoff_(p.opts.backoff_initial, p.opts.backoff_max, p.opts.seed * 7919 + index) {}

  void sent(uint64_t seq, Clock::time_point now) {
    outstanding_.push_back({seq, now});
    ++p_.stats.pings_sent;
  }

  // True when seq was one of ours (its RTT is recorded).
  bool answered(uint64_t seq, Clock::time_point now) {
    // PONGs come back in order, so the match is almost always the front.
    for (auto it = outstanding_.begin(); it != outstanding_.end(); ++it) {
      if (it->seq != seq) continue;
      const auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(now - it->sent);
      p_.rtts_us.push_back(static_cast<uint64_t>(std::max<int64_t>(0, rtt.count())));
      ++p_.stats.pongs_received;
      outstanding_.erase(it);
      return true;
    }
    ++p_.stats.unmatched_pongs;
    return false;
  }

  // The delay before the next reconnect / fresh socket; counts the attempt.
  Clock::duration next_delay() {
    const Backoff::duration d = backoff_.next();
    if (p_.opts.on_retry) p_.opts.on_retry(index_, d);
    return d;
  }

  // The connection/socket is given up: its PINGs can no longer be answered.
  void give_up() {
    p_.stats.lost += outstanding_.size();
    outstanding_.clear();
    ++p_.stats.drops;
  }

  void account_end(Clock::time_point end) {
    for (const Outstanding& o : outstanding_) {
      if (o.sent > end - p_.opts.interval) {
        ++p_.stats.in_flight;
      } else {
        ++p_.stats.lost;
      }
    }
    outstanding_.clear();
  }

  void cancel_timers() {
    if (ping_timer_) p_.loop->cancel(ping_timer_);
    if (retry_timer_) p_.loop->cancel(retry_timer_);
    ping_timer_ = retry_timer_ = 0;
  }

  Clock::duration silence_limit() const { return p_.opts.interval * p_.opts.misses; }

  Pinger::Impl& p_;
  const size_t index_;
  Backoff backoff_;
  std::deque<Outstanding> outstanding_;
  uint64_t next_seq_ = 1;
  bool ever_up_ = false;
  bool silent_ = false;
  bool finished_ = false;
  TimerId ping_timer_ = 0;
  TimerId retry_timer_ = 0;
};

std::unique_ptr<Session> make_tcp_session(Pinger::Impl& p, size_t index);
std::unique_ptr<Session> make_udp_session(Pinger::Impl& p, size_t index);
std::unique_ptr<Session> make_rudp_session(Pinger::Impl& p, size_t index);

}  // namespace pinger_detail
}  // namespace sluice::servers
