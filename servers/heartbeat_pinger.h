// Pinger: the heartbeat protocol's client side (docs/PROTOCOL.md), behind
// heartbeat_client and the tests. N sessions on one event loop (any back
// end), each sending a PING every interval over its own TCP connection, UDP
// socket or rudp connection (reliable messages over UDP, one socket each), matching PONGs by sequence number and measuring the RTT.
//
// Liveness and reconnects: a session whose server has sent nothing for
// interval x misses (reader-idle; UDP: no PONG for one of its PINGs), or
// whose connection closes, counts its unanswered PINGs as lost and
// reconnects after a capped exponential backoff with jitter
// (core/backoff.h). The backoff resets only once a connection has proved
// healthy: TCP, the server answered a PING sent one interval after the
// connect; UDP, a PONG for one of its PINGs arrived on a fresh socket. So
// a server that accepts and then closes, resets or answers garbage sees
// the delays grow to backoff_max, not a reconnect every backoff_initial.
//
// Accounting (exact: pings_sent == pongs_received + lost + in_flight):
//  * pongs_received: PINGs answered by a PONG with their sequence number on
//    the connection/socket that sent them, any time before the end;
//  * lost: PINGs whose connection/socket was given up before their PONG
//    came, plus PINGs still unanswered at the end that were sent more than
//    one interval before it;
//  * in_flight: PINGs still unanswered at the end, sent within the last
//    interval (their PONG could not be expected yet).
// A PONG for an unknown sequence (duplicate, forged, late after its
// connection was given up) counts in none of these.
//
// stop_pings_after (a demo/test knob): session 0 stops sending PINGs after
// that long, and stops watching for the server's silence, so the server
// drops it after interval x misses; it then stays down (no reconnect).
//
// Thread rules: run() on one thread (it becomes the loop thread); stop()
// from any thread at any time. A stop is never lost: one that comes
// before run() or during its setup cuts the setup short and makes run()
// return at once with what it has (a stop after run() returned does
// nothing).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tls_context.h"
#include "rudp/options.h"

namespace sluice::servers {

struct PingerOptions {
  std::string io;  // back end; empty: the best available
  std::string proto = "tcp";  // tcp|udp|rudp
  // Numeric IPv4/IPv6 or a name, resolved by run() before the loop starts
  // (an unknown name fails it); TCP tries each of a name's addresses.
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  size_t conns = 1;
  std::chrono::milliseconds interval{1000};
  int misses = 3;  // the server is presumed gone after interval x misses
  std::chrono::milliseconds duration{10000};
  std::chrono::milliseconds stop_pings_after{-1};  // < 0: never
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  std::chrono::milliseconds connect_timeout{2000};
  // proto rudp: the connections' options (connect_timeout above overrides
  // theirs). rudp handles a silent server like TCP: reader-idle, reconnect.
  rudp::Options rudp;
  // proto tcp: TLS with this client context (TlsContext::make_client; its
  // sessions are shared, so reconnects resume). A handshake refused
  // before any session was ever up (a CA or name that does not match, a
  // server without TLS) is taken as a set-up error: run() returns -EPROTO
  // with OpenSSL's reason. Later ones, and handshakes that time out, are
  // retried with backoff like a refused connect (a server restarting with
  // a new certificate), with a warning.
  std::shared_ptr<const TlsContext> tls;
  uint64_t seed = 1;
  // At the end, how long run() waits for the back end to release every
  // socket (cancelled io_uring operations, helper threads). If it gives up,
  // run() leaks what is still held rather than free it under the back end.
  std::chrono::milliseconds release_wait{2000};
  // Called on the loop thread each time a session schedules a reconnect
  // (TCP) or a fresh socket (UDP), with the backoff delay it chose; for
  // tests and logs. Must not call into the Pinger.
  std::function<void(size_t session, std::chrono::nanoseconds delay)> on_retry;
};

struct PingerReport {
  uint64_t pings_sent = 0;
  uint64_t pongs_received = 0;
  uint64_t lost = 0;
  uint64_t in_flight = 0;
  uint64_t reconnects = 0;  // connections (TCP) / sockets (UDP) re-established after one was up
  uint64_t rtt_p50_us = 0;
  uint64_t rtt_p99_us = 0;
  uint64_t rtt_max_us = 0;
  // Not in the JSON line: for logs and tests.
  uint64_t connect_failures = 0;
  uint64_t drops = 0;  // connections/sockets given up (closed, reset, silent server)
  uint64_t unmatched_pongs = 0;
  uint64_t unreleased = 0;  // sessions still held by the back end after release_wait (leaked)

  // {"pings_sent":..,"pongs_received":..,"lost":..,"in_flight":..,
  //  "reconnects":..,"rtt_p50_us":..,"rtt_p99_us":..,"rtt_max_us":..}
  std::string json() const;
};

class Pinger {
 public:
  explicit Pinger(PingerOptions options);
  ~Pinger();
  Pinger(const Pinger&) = delete;
  Pinger& operator=(const Pinger&) = delete;

  // Runs for options.duration, or until stop() (whenever it was called); once per Pinger. Returns 0 and fills
  // *report, or -errno and sets *error (unknown back end, bad address, a
  // back end that cannot do UDP ...).
  int run(PingerReport* report, std::string* error);
  void stop();

  // For Session objects (loop thread).
  struct Impl;

 private:
  PingerOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::servers
