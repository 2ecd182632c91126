// msg_rtt: small messages at a fixed rate per connection, each timed from
// send() to its echo, over rudp or kernel TCP with the same Handler code:
// the "small messages over a lossy link" benchmark (docs/RUDP.md).
// Open loop: a message every --interval-ms per connection whatever the
// echoes do, so a loss shows as latency, not as a lower rate.
//
//   msg_rtt --server --proto rudp --port 9000            # echo server
//   msg_rtt --proto rudp --host 10.201.0.2 --port 9000 --conns 20 --seconds 60
//
// Every echo is compared with what was sent (content and order); the
// report gives the RTT's mean and percentiles in ms, and --json appends
// one line.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <arpa/inet.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "codec/length_field.h"
#include "core/client.h"
#include "core/connector.h"
#include "core/event_loop.h"
#include "core/server.h"
#include "core/signals.h"
#include "core/udp_endpoint.h"
#include "core/udp_server.h"
#include "perf/histogram.h"
#include "rudp/rudp.h"

namespace {

using namespace sluice;
using Clock = std::chrono::steady_clock;
using perf::Histogram;

class Echo final : public Handler {
 public:
  void on_message(Connection& conn, std::string_view m) override { conn.send(m); }
};

// One connection's traffic: what it sent and when, in order.
class Pinger final : public Handler {
 public:
  Pinger(std::mt19937_64& rng, size_t min_size, size_t max_size, std::string tcp_cc)
      : rng_(rng), min_(min_size), max_(max_size), tcp_cc_(std::move(tcp_cc)) {}

  void on_open(Connection& conn) override {
    conn_ = &conn;
    if (!tcp_cc_.empty() && conn.fd() >= 0) {
      ::setsockopt(conn.fd(), IPPROTO_TCP, TCP_CONGESTION, tcp_cc_.data(),
                   static_cast<socklen_t>(tcp_cc_.size()));
    }
  }
  void on_message(Connection&, std::string_view m) override {
    if (outstanding_.empty() || outstanding_.front().payload != m) {
      ++errors;
      return;
    }
    const auto rtt = Clock::now() - outstanding_.front().sent;
    if (measuring) {
      hist.record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(rtt).count()));
    }
    outstanding_.pop_front();
  }
  void on_close(Connection& conn, CloseReason, int) override {
    if (auto s = rudp::stats(conn)) final_stats = s;
    conn_ = nullptr;
  }

  void tick() {
    if (stopped || !conn_ || !conn_->is_open()) return;
    std::uniform_int_distribution<size_t> size(min_, max_);
    std::string m(size(rng_), '\0');
    const uint32_t seq = seq_++;
    std::memcpy(m.data(), &seq, std::min<size_t>(4, m.size()));
    for (size_t i = 4; i < m.size(); ++i) m[i] = static_cast<char>(rng_());
    outstanding_.push_back({Clock::now(), m});
    ++sent;
    conn_->send(m);
  }
  size_t outstanding() const { return outstanding_.size(); }
  Connection* connection() { return conn_; }

  Histogram hist{3};
  uint64_t sent = 0, errors = 0;
  bool measuring = false, stopped = false;
  std::optional<rudp::Stats> final_stats;

 private:
  struct Sent {
    Clock::time_point sent;
    std::string payload;
  };
  std::mt19937_64& rng_;
  size_t min_, max_;
  std::string tcp_cc_;
  Connection* conn_ = nullptr;
  std::deque<Sent> outstanding_;
  uint32_t seq_ = 0;
};

// --proto udp: the link's own round trip for the same traffic (one
// datagram each way per interval per socket), the yardstick the reliable
// transports are judged against. A lost datagram is counted, not timed.
class UdpEcho final : public DatagramHandler {
 public:
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
    ep.send_to(d.addr, d.addr_len, d.data);
  }
};

class UdpPinger final : public DatagramHandler, public UdpEndpoint::Owner {
 public:
  UdpPinger(EventLoop& loop, const sockaddr_in& to, std::mt19937_64& rng, size_t min_size,
            size_t max_size)
      : loop_(loop), to_(to), rng_(rng), min_(min_size), max_(max_size) {}
  int start() {
    const int fd = bind_udp("0.0.0.0", 0, {});
    if (fd < 0) return fd;
    ep_ = std::make_unique<UdpEndpoint>(loop_, fd, *this, *this);
    return ep_->start();
  }
  void on_datagram(UdpEndpoint&, const io::Datagram& d) override {
    uint32_t seq = 0;
    if (d.data.size() < 4) return;
    std::memcpy(&seq, d.data.data(), 4);
    auto it = sent_.find(seq);
    if (it == sent_.end()) return;
    if (measuring) {
      hist.record(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - it->second)
              .count()));
    }
    sent_.erase(it);
  }
  void release(UdpEndpoint& ep) override { (void)ep; }
  void tick() {
    if (stopped || !ep_) return;
    std::uniform_int_distribution<size_t> size(min_, max_);
    std::string m(size(rng_), '\0');
    const uint32_t seq = seq_++;
    std::memcpy(m.data(), &seq, std::min<size_t>(4, m.size()));
    if (measuring) sent_[seq] = Clock::now();
    ++sent;
    ep_->send_to(reinterpret_cast<const sockaddr*>(&to_), sizeof to_, m);
  }
  void close() {
    if (ep_) {
      const int fd = ep_->abandon();
      if (fd >= 0) ::close(fd);
      ep_.reset();
    }
  }
  size_t unanswered() const { return sent_.size(); }

  Histogram hist{3};
  uint64_t sent = 0;
  bool measuring = false, stopped = false;

 private:
  EventLoop& loop_;
  sockaddr_in to_;
  std::mt19937_64& rng_;
  size_t min_, max_;
  std::unique_ptr<UdpEndpoint> ep_;
  std::map<uint32_t, Clock::time_point> sent_;
  uint32_t seq_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"msg_rtt: timed small messages over rudp or TCP"};
  bool server_mode = false;
  std::string proto = "rudp", host = "127.0.0.1", io = "epoll", json, tcp_cc, label, cc = "fixed";
  uint16_t port = 9000;
  size_t conns = 20, min_size = 8, max_size = 256;
  double seconds = 30, warmup = 3, interval_ms = 20;
  uint64_t seed = 1;
  app.add_flag("--server", server_mode, "Run the echo server");
  app.add_option("--proto", proto, "rudp|tcp|udp (udp: the link's own RTT, lost datagrams counted)")
      ->check(CLI::IsMember({"rudp", "tcp", "udp"}));
  app.add_option("--host", host, "Server address (client) or bind address (server)");
  app.add_option("--port", port, "Port");
  app.add_option("--io", io, "IO back end");
  app.add_option("--conns", conns, "Connections")->check(CLI::Range(1, 5000));
  app.add_option("--min-size", min_size, "Smallest message (bytes)")->check(CLI::Range(4, 65536));
  app.add_option("--max-size", max_size, "Largest message (bytes)")->check(CLI::Range(4, 65536));
  app.add_option("--interval-ms", interval_ms, "One message per connection every this long");
  app.add_option("--seconds", seconds, "Measured seconds");
  app.add_option("--warmup", warmup, "Unmeasured seconds first");
  app.add_option("--tcp-cc", tcp_cc, "TCP_CONGESTION for the client's sockets");
  app.add_option("--cc", cc, "rudp congestion controller (both sides)");
  app.add_option("--seed", seed, "Seed of sizes and contents");
  app.add_option("--label", label, "Label in the JSON line");
  app.add_option("--json", json, "Append one JSON line with the result");
  CLI11_PARSE(app, argc, argv);
  if (min_size > max_size) {
    std::fprintf(stderr, "msg_rtt: --min-size above --max-size\n");
    return 2;
  }
  if (server_mode && proto == "udp") {
    block_stop_signals();
    UdpEcho echo;
    UdpServerOptions uo;
    uo.host = host;
    uo.port = port;
    uo.io = io;
    UdpServer server(uo, echo);
    std::string error;
    if (server.start(&error) != 0) {
      std::fprintf(stderr, "msg_rtt: %s\n", error.c_str());
      return 1;
    }
    wait_for_stop_signal();
    return 0;
  }
  if (server_mode) {
    block_stop_signals();
    Echo echo;
    ServerOptions so;
    so.host = host;
    so.port = port;
    so.io = io;
    std::unique_ptr<codec::Codec> codec;
    if (proto == "rudp") {
      rudp::Options ro;
      ro.cc = cc;
      so.transport = rudp::transport(ro);
    } else {
      codec = std::make_unique<codec::LengthFieldCodec>(codec::length_prefix_options(4, 1 << 20));
    }
    Server server(so, echo, std::move(codec));
    std::string error;
    if (server.start(&error) != 0) {
      std::fprintf(stderr, "msg_rtt: %s\n", error.c_str());
      return 1;
    }
    wait_for_stop_signal();
    return 0;
  }

  std::string error;
  auto loop = EventLoop::create(io, {}, &error);
  if (!loop) {
    std::fprintf(stderr, "msg_rtt: %s\n", error.c_str());
    return 1;
  }
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<Pinger>> pingers;
  std::vector<std::unique_ptr<UdpPinger>> udp;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  if (proto == "udp" && ::inet_pton(AF_INET, host.c_str(), &to.sin_addr) != 1) {
    std::fprintf(stderr, "msg_rtt: --proto udp needs a numeric IPv4 --host\n");
    return 2;
  }
  std::vector<std::unique_ptr<rudp::Client>> rclients;
  std::vector<std::unique_ptr<Client>> tclients;
  Connector connector;
  codec::LengthFieldCodec tcp_codec(codec::length_prefix_options(4, 1 << 20));
  size_t failed = 0;
  const auto interval = std::chrono::microseconds(static_cast<int64_t>(interval_ms * 1000));
  loop->run([&] {
    if (proto == "udp") {
      for (size_t i = 0; i < conns; ++i) {
        udp.push_back(std::make_unique<UdpPinger>(*loop, to, rng, min_size, max_size));
        UdpPinger* p = udp.back().get();
        if (p->start() < 0) ++failed;
        loop->run_after(interval * i / conns, [&loop, p, interval] {
          loop->run_every(interval, [p] { p->tick(); });
        });
      }
      loop->run_after(std::chrono::milliseconds(static_cast<int64_t>(warmup * 1000)), [&] {
        for (auto& p : udp) p->measuring = true;
      });
      loop->run_after(std::chrono::milliseconds(static_cast<int64_t>((warmup + seconds) * 1000)),
                      [&] {
        for (auto& p : udp) p->stopped = true;
        loop->run_after(std::chrono::seconds(2), [&] {
          for (auto& p : udp) p->close();
          loop->quit();
        });
      });
      return;
    }
    for (size_t i = 0; i < conns; ++i) {
      pingers.push_back(std::make_unique<Pinger>(rng, min_size, max_size, tcp_cc));
      Pinger* p = pingers.back().get();
      auto done = [&failed](int rc) {
        if (rc < 0) ++failed;
      };
      if (proto == "rudp") {
        rudp::ClientOptions co;
        co.host = host;
        co.port = port;
        co.rudp.cc = cc;
        rclients.push_back(std::make_unique<rudp::Client>(*loop, *p, co));
        rclients.back()->connect(done);
      } else {
        ClientOptions co;
        co.host = host;
        co.port = port;
        tclients.push_back(std::make_unique<Client>(*loop, connector, *p, &tcp_codec, co));
        tclients.back()->connect(done);
      }
      // Staggered: connection i ticks at i/conns of the interval.
      loop->run_after(interval * i / conns, [&loop, p, interval] {
        loop->run_every(interval, [p] { p->tick(); });
      });
    }
    loop->run_after(std::chrono::milliseconds(static_cast<int64_t>(warmup * 1000)), [&] {
      for (auto& p : pingers) p->measuring = true;
    });
    loop->run_after(std::chrono::milliseconds(static_cast<int64_t>((warmup + seconds) * 1000)),
                    [&] {
      for (auto& p : pingers) {
        if (auto* c = p->connection()) {
          if (auto s = rudp::stats(*c)) p->final_stats = s;
        }
      }
      // Stop sending; what is in flight has 5 s to come back (it was sent
      // inside the window, so it is measured).
      for (auto& p : pingers) p->stopped = true;
      loop->run_after(std::chrono::seconds(5), [&] { loop->quit(); });
    });
  });
  Histogram all{3};
  uint64_t sent = 0, errors = 0, missing = 0, retx = 0, lost = 0, spurious = 0;
  for (auto& p : pingers) {
    all.merge(p->hist);
    sent += p->sent;
    errors += p->errors;
    missing += p->outstanding();
    if (p->final_stats) {
      retx += p->final_stats->retransmitted;
      lost += p->final_stats->packets_lost;
      spurious += p->final_stats->spurious;
    }
  }
  for (auto& p : udp) {
    all.merge(p->hist);
    missing += p->unanswered();
  }
  rclients.clear();
  tclients.clear();
  auto ms = [](uint64_t us) { return static_cast<double>(us) / 1000.0; };
  std::printf(
      "%s: %zu conns, %llu messages timed: mean %.1f ms, p50 %.1f, p90 %.1f, p99 %.1f, "
      "max %.1f ms; %llu wrong echoes, %llu unanswered, %zu failed connects\n",
      proto.c_str(), conns, static_cast<unsigned long long>(all.count()), all.mean() / 1000.0,
      ms(all.percentile(50)), ms(all.percentile(90)), ms(all.percentile(99)), ms(all.max()),
      static_cast<unsigned long long>(errors), static_cast<unsigned long long>(missing), failed);
  if (proto == "rudp") {
    std::printf("rudp: %llu packets declared lost (%llu spurious), %llu B retransmitted\n",
                static_cast<unsigned long long>(lost), static_cast<unsigned long long>(spurious),
                static_cast<unsigned long long>(retx));
  }
  if (!json.empty()) {
    if (FILE* f = std::fopen(json.c_str(), "a")) {
      std::fprintf(f,
                   "{\"label\":\"%s\",\"proto\":\"%s\",\"tcp_cc\":\"%s\",\"conns\":%zu,"
                   "\"messages\":%llu,\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,"
                   "\"p99_ms\":%.3f,\"max_ms\":%.3f,\"wrong\":%llu,\"unanswered\":%llu,"
                   "\"lost\":%llu,\"spurious\":%llu}\n",
                   label.c_str(), proto.c_str(), tcp_cc.c_str(), conns,
                   static_cast<unsigned long long>(all.count()), all.mean() / 1000.0,
                   ms(all.percentile(50)), ms(all.percentile(90)), ms(all.percentile(99)),
                   ms(all.max()), static_cast<unsigned long long>(errors),
                   static_cast<unsigned long long>(missing), static_cast<unsigned long long>(lost),
                   static_cast<unsigned long long>(spurious));
      std::fclose(f);
    }
  }
  return errors == 0 && failed == 0 ? 0 : 1;
}
