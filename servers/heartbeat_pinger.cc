#include "servers/heartbeat_pinger.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <mutex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "codec/heartbeat.h"
#include "core/net.h"
#include "core/resolve.h"
#include "servers/heartbeat_pinger_session.h"

namespace sluice::servers {

namespace hb = codec::heartbeat;

namespace {

uint64_t percentile(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace

std::string PingerReport::json() const {
  return fmt::format(
      "{{\"pings_sent\":{},\"pongs_received\":{},\"lost\":{},\"in_flight\":{},"
      "\"reconnects\":{},\"rtt_p50_us\":{},\"rtt_p99_us\":{},\"rtt_max_us\":{}}}",
      pings_sent, pongs_received, lost, in_flight, reconnects, rtt_p50_us, rtt_p99_us,
      rtt_max_us);
}

void Pinger::Impl::fail(int err, std::string why) {
  if (fatal == 0) {
    fatal = err;
    fatal_error = std::move(why);
  }
  finish();
}

void Pinger::Impl::finish() {
  if (finishing) return;
  finishing = true;
  const Clock::time_point end = Clock::now();
  for (auto& s : sessions) s->finish(end);
  // Wait (bounded) until the back end has released every socket, so the
  // sessions can be destroyed safely after run() returns; run() leaks any
  // it still holds (the io/backend.h contract: free a channel only after
  // on_detached).
  const Clock::time_point give_up = end + opts.release_wait;
  auto check = [this, give_up] {
    bool all = true;
    for (auto& s : sessions) all = all && s->released();
    if (all || Clock::now() >= give_up) loop->quit();
  };
  check();
  loop->run_every(std::chrono::milliseconds(1), check);
}

Pinger::Pinger(PingerOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {}

Pinger::~Pinger() = default;

int Pinger::run(PingerReport* report, std::string* error) {
  Impl& im = *impl_;
  if (im.finishing || im.loop) {
    if (error) *error = "a Pinger runs once";
    return -EALREADY;
  }
  const bool udp = options_.proto == "udp";
  const bool rudp = options_.proto == "rudp";
  if (!udp && !rudp && options_.proto != "tcp") {
    if (error) *error = "unknown protocol " + options_.proto;
    return -EINVAL;
  }
  if (options_.tls && options_.proto != "tcp") {
    if (error) *error = "TLS is for --proto tcp only";
    return -EINVAL;
  }
  // The host is resolved here, up front, on the thread that becomes the
  // loop thread only in run() below: a blocking lookup stalls no loop. A
  // numeric host needs no lookup at all. TCP sessions hand the name to
  // their Clients, which look it up again on every connect (the
  // Connector's resolver thread) and try each address in turn; UDP and
  // rudp have no connect to try addresses with, so they take the first
  // (getaddrinfo's preferred) one.
  std::vector<SocketAddress> addrs;
  const int socktype = options_.proto == "tcp" ? SOCK_STREAM : SOCK_DGRAM;
  if (resolve_numeric(options_.host, options_.port, socktype, &addrs) < 0) {
    std::string why;
    if (int rc = resolve_host(options_.host, options_.port, socktype, &addrs, &why); rc < 0) {
      if (error) *error = "cannot resolve " + options_.host + ": " + why;
      return rc;
    }
  }
  im.server = addrs[0].addr;
  im.server_len = addrs[0].len;
  im.server_host = numeric_host(addrs[0]);
  const bool v6 = im.server.ss_family == AF_INET6;
  im.local_host = is_loopback(addrs[0]) ? (v6 ? "::1" : "127.0.0.1") : (v6 ? "::" : "0.0.0.0");
  if (options_.proto == "tcp") im.connector = std::make_unique<Connector>();
  std::string err;
  im.loop = EventLoop::create(options_.io, {}, &err);
  if (!im.loop) {
    if (error) *error = err;
    return -ENOTSUP;
  }
  im.codec = hb::make_tcp_codec();
  for (size_t i = 0; i < options_.conns && !im.stop_requested.load(); ++i) {
    if (udp) {
      im.sessions.push_back(pinger_detail::make_udp_session(im, i));
    } else if (rudp) {
      im.sessions.push_back(pinger_detail::make_rudp_session(im, i));
    } else {
      im.sessions.push_back(pinger_detail::make_tcp_session(im, i));
    }
  }
  // Set up on this thread before run(): it becomes the loop thread. A
  // stop() meanwhile cuts the setup short (thousands of UDP binds take a
  // while); the sessions not started have nothing to finish.
  for (auto& s : im.sessions) {
    if (im.stop_requested.load()) break;
    s->start();
  }
  Impl* p = &im;
  im.loop->run_after(options_.duration, [p] { p->finish(); });
  if (options_.stop_pings_after.count() >= 0 && !im.sessions.empty()) {
    im.loop->run_after(options_.stop_pings_after, [p] { p->sessions[0]->go_silent(); });
  }
  {
    std::lock_guard<std::mutex> lock(im.mu);
    im.running = im.loop.get();
    // A stop() that came before `running` was set posted nothing.
    if (im.stop_requested.load()) im.loop->post([p] { p->finish(); });
  }
  im.loop->run();
  {
    std::lock_guard<std::mutex> lock(im.mu);
    im.running = nullptr;
  }

  // Sessions the back end still holds (the wait above gave up) must not be
  // destroyed: their channels may still be in use by it (io_uring ops,
  // helper threads) and their fds are closed only on release. Leak them
  // and the loop; the connector has no request left and can go.
  for (auto& s : im.sessions) {
    if (s->released()) continue;
    ++im.stats.unreleased;
    (void)s.release();
  }
  if (im.stats.unreleased > 0) {
    spdlog::error("pinger: the {} back end still holds {} sessions {} ms after the end; "
                  "leaking them",
                  im.loop->io_name(), im.stats.unreleased, options_.release_wait.count());
    im.sessions.clear();
    (void)im.loop.release();
  }

  PingerReport r = im.stats;
  std::sort(im.rtts_us.begin(), im.rtts_us.end());
  r.rtt_p50_us = percentile(im.rtts_us, 50);
  r.rtt_p99_us = percentile(im.rtts_us, 99);
  r.rtt_max_us = im.rtts_us.empty() ? 0 : im.rtts_us.back();
  if (report) *report = r;
  const int fatal = im.fatal;
  if (fatal < 0 && error) *error = im.fatal_error;
  // Sessions, then the loop, then the connector (see Impl).
  im.sessions.clear();
  im.loop.reset();
  im.connector.reset();
  return fatal;
}

void Pinger::stop() {
  Impl* p = impl_.get();
  std::lock_guard<std::mutex> lock(p->mu);
  p->stop_requested = true;  // before run() or during its setup: run() sees it
  if (p->running != nullptr) p->running->post([p] { p->finish(); });
}

}  // namespace sluice::servers