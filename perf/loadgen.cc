// loadgen: a closed-loop echo load generator, the measuring instrument of
// the perf harness (perf/compare.py). Deliberately independent of sluice's
// own code paths: plain sockets and its own epoll loop per thread, so a bug
// in sluice's IO layer cannot hide itself in the measurement.
//
//   loadgen --port 7000 --conns 64 --size 64 --pipeline 1 --duration-s 5
//
// Model: each connection keeps `pipeline` messages in flight; every echoed
// message is checked byte for byte and immediately replaced by a new one.
// Each message (on the wire: [4-byte big-endian length if --codec length]
// then `size` bytes) starts with its 8-byte sequence number and its 8-byte
// send timestamp, followed by a pattern that depends on the sequence
// number, so a reordered, duplicated, truncated or corrupted echo is a
// verify error. TCP is verified as a byte stream per connection (the echo
// may split or coalesce messages); UDP per datagram (one message each);
// rudp per message (each must be the oldest outstanding, whole: see
// loadgen_rudp.h, the one mode that runs on sluice's own code).
//
// Timeline: connect everything, then `warmup_s` of load that is not
// counted, then `duration_s` measured (completions whose receive time falls
// in the window are counted and their round-trip time recorded), then
// sending stops and in-flight messages drain (TCP: must all come back;
// UDP: those not back within --udp-timeout-ms are `lost`). The phases are
// announced on stderr ("loadgen: phase measure" / "loadgen: phase done")
// so a harness can sample the server exactly over the measured window.
//
// --tls (TCP): the same echo over TLS (loadgen_tls.h), the server's
// certificate verified unless --tls-insecure; every connection's handshake
// is done before the warm-up. A failed one is a connect error, and its
// reason is printed once on stderr.
//
//   loadgen --port 7443 --tls --tls-ca ca.pem --conns 64 --size 4096
//
// Output: one JSON line on stdout (rudp adds its summed figures: rudp_*;
// --tls adds "tls":1).
// Exit status 1 if errors > 0, 2 on bad options.
//
// Layout: options, target checks and main here; the shared types and the
// Worker in loadgen_internal.h / loadgen_worker.cc; the TCP and UDP client
// paths in loadgen_tcp.cc / loadgen_udp.cc; rudp in loadgen_rudp.{h,cc}.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "perf/histogram.h"
#include "perf/loadgen_internal.h"
#include "perf/loadgen_rudp.h"
#include "perf/loadgen_tls.h"

namespace {

using namespace sluice::perf::loadgen;  // NOLINT: one binary's internals

bool is_loopback(const sockaddr* a) {
  if (a->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(a);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (a->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(a);
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  }
  return false;
}

// --host to the address every connection uses. Resolved once, here on the
// main thread before any worker or loop runs, so a blocking lookup stalls
// nothing. A numeric host first (AI_NUMERICHOST: no lookup, no latency),
// else getaddrinfo for IPv4 and IPv6. Only loopback addresses are kept
// (the target policy). With several (a name such as "localhost" may mean
// 127.0.0.1 and ::1, and the server listens on one), TCP tries each in
// turn with one probe connection and keeps the first that connects; UDP
// and rudp have no connect to try with and take getaddrinfo's first.
// Returns 0, or the exit status after printing why.
int resolve(Options& o, sockaddr_storage* out, socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = o.proto == "tcp" ? SOCK_STREAM : SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(o.port);
  std::string host = o.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int r = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (r == EAI_NONAME) {  // not numeric: a name
    hints.ai_flags = AI_NUMERICSERV;
    r = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  }
  const int sys_err = errno;  // EAI_SYSTEM's detail
  if (r != 0 || !res) {
    std::fprintf(stderr, "loadgen: cannot resolve --host %s: %s\n", o.host.c_str(),
                 r == EAI_SYSTEM ? std::strerror(sys_err) : gai_strerror(r));
    return 2;
  }
  std::vector<const addrinfo*> loopback;
  for (const addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (is_loopback(ai->ai_addr)) loopback.push_back(ai);
  }
  const addrinfo* chosen = loopback.empty() ? nullptr : loopback[0];
  if (o.proto == "tcp" && loopback.size() > 1) {
    chosen = nullptr;
    for (const addrinfo* ai : loopback) {
      const int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      const bool ok = fd >= 0 && ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
      if (fd >= 0) ::close(fd);
      if (ok) {
        chosen = ai;
        break;
      }
    }
    if (!chosen) {
      std::fprintf(stderr, "loadgen: no address of %s accepts a connection on port %u\n",
                   o.host.c_str(), o.port);
      ::freeaddrinfo(res);
      return 2;
    }
  }
  if (!chosen) {
    std::fprintf(stderr, "loadgen: refusing non-loopback target %s (loopback only)\n", o.host.c_str());
    ::freeaddrinfo(res);
    return 2;
  }
  std::memcpy(out, chosen->ai_addr, chosen->ai_addrlen);
  *len = chosen->ai_addrlen;
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw = chosen->ai_family == AF_INET
                        ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(out)->sin_addr)
                        : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(out)->sin6_addr);
  ::inet_ntop(chosen->ai_family, raw, text, sizeof text);
  o.target = text;
  ::freeaddrinfo(res);
  return 0;
}

void raise_fd_limit(size_t need) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need + 64) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, need + 64);
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void sleep_until(uint64_t t) {
  for (;;) {
    uint64_t now = now_ns();
    if (now >= t) return;
    uint64_t d = t - now;
    timespec ts{static_cast<time_t>(d / 1000000000ull), static_cast<long>(d % 1000000000ull)};
    ::nanosleep(&ts, nullptr);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"sluice perf load generator: closed-loop echo client (TCP, UDP or rudp), verifies every byte"};
  app.add_option("--host", o.host, "Server: a numeric address or a host name, loopback only (127.0.0.0/8 or ::1)")->capture_default_str();
  app.add_option("--port", o.port, "Server port")->required();
  app.add_option("--proto", o.proto, "tcp|udp|rudp (rudp: reliable messages over UDP, one message per echo)")
      ->check(CLI::IsMember({"tcp", "udp", "rudp"}))
      ->capture_default_str();
  app.add_option("--conns", o.conns, "Connections (UDP: sockets)")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--idle-conns", o.idle_conns,
                 "Extra connections that are opened and then never send (idle descriptors on the server)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--size", o.size, "Message bytes (excluding a --codec length prefix)")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app.add_option("--pipeline", o.pipeline, "Messages in flight per connection (1 = ping-pong)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--duration-s", o.duration_s, "Measured seconds")->check(CLI::Range(0.01, 3600.0))->capture_default_str();
  app.add_option("--warmup-s", o.warmup_s, "Unmeasured seconds before")->check(CLI::Range(0.0, 3600.0))->capture_default_str();
  app.add_option("--threads", o.threads, "Client threads (each its own epoll loop over a share of the conns)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--codec", o.codec, "raw|length (length: 4-byte big-endian length prefix, then the message)")
      ->check(CLI::IsMember({"raw", "length"}))
      ->capture_default_str();
  app.add_option("--connect-timeout-s", o.connect_timeout_s, "Give up on a connect after this long")
      ->capture_default_str();
  app.add_option("--drain-s", o.drain_s, "TCP, rudp: after the window, how long in-flight messages may take to come back")
      ->capture_default_str();
  app.add_option("--udp-timeout-ms", o.udp_timeout_ms, "UDP: a datagram not echoed within this is lost")
      ->capture_default_str();
  app.add_flag("--quiet", o.quiet, "Do not print phase lines on stderr");
  RudpMode rudp_mode;
  rudp_mode.add_flags(app);
  TlsFlags tls_flags;
  add_tls_flags(app, tls_flags);
  CLI11_PARSE(app, argc, argv);

  if (o.proto == "udp" && o.size < 8) {
    std::fprintf(stderr, "loadgen: --proto udp needs --size >= 8 (the sequence number)\n");
    return 2;
  }
  if (o.proto == "udp" && o.size + (o.codec == "length" ? 4 : 0) > 65507) {
    std::fprintf(stderr, "loadgen: UDP message too large\n");
    return 2;
  }
  sockaddr_storage addr{};
  socklen_t addrlen = 0;
  std::string err;
  const bool rudp = o.proto == "rudp";
  if (rudp && !rudp_mode.prepare(o, &err)) {
    std::fprintf(stderr, "loadgen: %s\n", err.c_str());
    return 2;
  }
  if (int rc = resolve(o, &addr, &addrlen); rc != 0) return rc;
  if (tls_flags.on && o.proto != "tcp") {
    std::fprintf(stderr, "loadgen: --tls is for --proto tcp only\n");
    return 2;
  }
  o.tls = tls_context(tls_flags, &err);
  if (!o.tls && !err.empty()) {
    std::fprintf(stderr, "loadgen: %s\n", err.c_str());
    return 2;
  }
  o.tls_name = tls_flags.server_name.empty() ? o.host : tls_flags.server_name;
  o.threads = std::min(o.threads, o.conns);
  raise_fd_limit(o.conns + o.idle_conns + 16);

  Wire wire;
  wire.init(o.codec == "length" ? 4 : 0, o.size);

  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::unique_ptr<RudpWorker>> rudp_workers;
  for (size_t t = 0; t < o.threads; ++t) {
    std::vector<uint32_t> ids;
    for (size_t i = t; i < o.conns + o.idle_conns; i += o.threads) ids.push_back(static_cast<uint32_t>(i));
    if (rudp) {
      rudp_workers.push_back(rudp_mode.worker(o, wire, std::move(ids)));
    } else {
      workers.push_back(std::make_unique<Worker>(o, wire, addr, addrlen, std::move(ids)));
    }
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
  for (auto& w : rudp_workers) threads.emplace_back([&w] { w->run(); });

  // Everyone connected (or failed): publish the timeline and go.
  while (g_ready.load() < static_cast<int>(o.threads)) std::this_thread::sleep_for(std::chrono::microseconds(200));
  const uint64_t t0 = now_ns();
  const uint64_t warm_end = t0 + static_cast<uint64_t>(o.warmup_s * 1e9);
  const uint64_t end = warm_end + static_cast<uint64_t>(o.duration_s * 1e9);
  g_t0 = t0;
  g_warm_end = warm_end;
  g_end = end;
  g_go.store(true, std::memory_order_release);
  if (!o.quiet) std::fprintf(stderr, "loadgen: phase warmup\n");
  sleep_until(warm_end);
  if (!o.quiet) std::fprintf(stderr, "loadgen: phase measure\n");
  sleep_until(end);
  if (!o.quiet) std::fprintf(stderr, "loadgen: phase done\n");
  for (auto& th : threads) th.join();

  Histogram h(2);
  Totals t;
  RudpTotals rt;
  auto merge = [&](const Histogram& wh, const Totals& x) {
    h.merge(wh);
    t.msgs += x.msgs;
    t.errors += x.errors;
    t.connect_errors += x.connect_errors;
    t.verify_errors += x.verify_errors;
    t.reset_errors += x.reset_errors;
    t.stalled += x.stalled;
    t.lost += x.lost;
    t.late += x.late;
  };
  for (auto& w : workers) {
    merge(w->hist(), w->totals());
    if (!w->tls_failure().empty()) {  // an error: printed even with --quiet
      std::fprintf(stderr, "loadgen: TLS handshake with %s:%u failed: %s\n", o.host.c_str(),
                   static_cast<unsigned>(o.port), w->tls_failure().c_str());
    }
  }
  for (auto& w : rudp_workers) {
    merge(w->hist(), w->totals());
    rt.add(w->rudp());
  }
  const double secs = static_cast<double>(end - warm_end) / 1e9;
  const double mps = t.msgs / secs;
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  std::string rudp_json;
  if (rudp) {
    const double mean_srtt_us = rt.conns ? static_cast<double>(rt.srtt_ns) / 1000.0 / rt.conns : 0;
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  ",\"io\":\"%s\",\"rudp_conns\":%" PRIu64 ",\"rudp_packets_sent\":%" PRIu64
                  ",\"rudp_packets_received\":%" PRIu64 ",\"rudp_retransmitted_bytes\":%" PRIu64
                  ",\"rudp_lost\":%" PRIu64 ",\"rudp_spurious\":%" PRIu64 ",\"rudp_pto\":%" PRIu64
                  ",\"rudp_srtt_us\":%.2f,\"rudp_min_rtt_us\":%.2f",
                  rudp_mode.io().c_str(), rt.conns, rt.packets_sent, rt.packets_received,
                  rt.retransmitted, rt.lost, rt.spurious, rt.pto, mean_srtt_us,
                  static_cast<double>(rt.min_rtt_ns) / 1000.0);
    rudp_json = buf;
    if (!o.quiet) {
      std::fprintf(stderr,
                   "loadgen: rudp (client side, %" PRIu64 " connections): %" PRIu64
                   " packets sent, %" PRIu64 " B retransmitted, %" PRIu64 " lost, %" PRIu64
                   " spurious, %" PRIu64 " pto, mean srtt %.1f us\n",
                   rt.conns, rt.packets_sent, rt.retransmitted, rt.lost, rt.spurious, rt.pto,
                   mean_srtt_us);
    }
  }
  std::printf(
      "{\"proto\":\"%s\",\"conns\":%zu,\"size\":%zu,\"pipeline\":%zu,\"duration_s\":%.3f,"
      "\"msgs\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,"
      "\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,"
      "\"errors\":%" PRIu64 ",\"lost\":%" PRIu64 ","
      "\"codec\":\"%s\",\"threads\":%zu,\"idle_conns\":%zu,\"mean_us\":%.2f,"
      "\"connect_errors\":%" PRIu64 ",\"verify_errors\":%" PRIu64 ",\"reset_errors\":%" PRIu64
      ",\"stalled\":%" PRIu64 ",\"late\":%" PRIu64 "%s%s}\n",
      o.proto.c_str(), o.conns, o.size, o.pipeline, secs, t.msgs, mps,
      mps * static_cast<double>(o.size) / 1e6, us(h.percentile(50)), us(h.percentile(99)),
      us(h.percentile(99.9)), us(h.max()), t.errors, t.lost, o.codec.c_str(), o.threads, o.idle_conns, h.mean() / 1000.0,
      t.connect_errors, t.verify_errors, t.reset_errors, t.stalled, t.late, rudp_json.c_str(),
      o.tls ? ",\"tls\":1" : "");
  std::fflush(stdout);
  tls_context_free(o.tls);
  return t.errors > 0 ? 1 : 0;
}
