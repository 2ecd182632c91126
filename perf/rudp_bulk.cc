// rudp_bulk: a bulk transfer that must arrive byte-exact, over rudp or
// kernel TCP (the same messages, the same Handler code), for lossy and
// reordering links (perf/linkem) and for throughput comparisons.
//
//   rudp_bulk --server --proto rudp --port 9000
//   rudp_bulk --proto rudp --host 10.201.0.2 --port 9000 --bytes 1G
//
// The client sends --bytes of seeded pseudo-random data in --message-byte
// messages (backpressure: it refills on on_drain), then an end marker; the
// server folds every message into a CRC-32 and a byte count and answers
// the marker with both; the client compares them with its own. Exit status
// 0 only when they match. One JSON line (--json) gives the figures.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <zlib.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "codec/length_field.h"
#include "core/client.h"
#include "core/connector.h"
#include "core/event_loop.h"
#include "core/server.h"
#include "core/signals.h"
#include "rudp/rudp.h"

namespace {

using namespace sluice;
using Clock = std::chrono::steady_clock;

// Message layout: first byte 'D' (data) or 'E' (end: nothing follows).
// The server's answer: "R <bytes> <crc32>".
class Sink final : public Handler {
 public:
  void on_message(Connection& conn, std::string_view m) override {
    auto& st = conn.state<State>();
    if (!m.empty() && m[0] == 'E') {
      conn.send(fmt::format("R {} {}", st.bytes, st.crc));
      spdlog::info("{}: {} bytes, crc32 {:08x}", conn.peer(), st.bytes, st.crc);
      if (auto s = rudp::stats(conn)) spdlog::info("rudp: {}", s->str());
      return;
    }
    st.bytes += m.size();
    st.crc = crc32(st.crc, reinterpret_cast<const Bytef*>(m.data()), static_cast<uInt>(m.size()));
  }

 private:
  struct State {
    uint64_t bytes = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
  };
};

class Source final : public Handler {
 public:
  Source(uint64_t total, size_t msg, uint64_t seed, const std::string& tcp_cc)
      : total_(total), msg_(std::max<size_t>(msg, 2)), rng_(seed | 1), tcp_cc_(tcp_cc) {}

  void on_open(Connection& conn) override {
    if (!tcp_cc_.empty() && conn.fd() >= 0 &&
        ::setsockopt(conn.fd(), IPPROTO_TCP, TCP_CONGESTION, tcp_cc_.data(),
                     static_cast<socklen_t>(tcp_cc_.size())) != 0) {
      spdlog::warn("TCP_CONGESTION {}: {}", tcp_cc_, std::strerror(errno));
    }
    start_ = Clock::now();
    pump(conn);
    // Handler has no "writable" event below the high-water mark (on_drain
    // follows only a crossing of it): a transport that takes everything at
    // once never crosses it. So look again every millisecond as well.
    Connection* c = &conn;
    timer_ = conn.loop().run_every(std::chrono::milliseconds(1), [this, c] { pump(*c); });
  }
  void on_drain(Connection& conn) override { pump(conn); }
  void on_message(Connection& conn, std::string_view m) override {
    unsigned long long bytes = 0;
    unsigned long crc = 0;
    if (std::sscanf(std::string(m).c_str(), "R %llu %lu", &bytes, &crc) != 2) {
      spdlog::error("unexpected answer: {}", m);
    }
    elapsed_ = Clock::now() - start_;
    ok_ = bytes == sent_ && crc == crc_;
    if (auto s = rudp::stats(conn)) stats_ = s;
    spdlog::info("server got {} bytes crc32 {:08x}; sent {} bytes crc32 {:08x}: {}", bytes, crc,
                 sent_, crc_, ok_ ? "MATCH" : "MISMATCH");
    conn.close();
  }
  void on_close(Connection& conn, CloseReason r, int err) override {
    if (timer_) conn.loop().cancel(timer_);
    timer_ = 0;
    if (elapsed_.count() == 0) {
      spdlog::error("closed before the answer: {} ({})", to_string(r), std::strerror(-err));
    }
    done_ = true;
  }

  bool done() const { return done_; }
  bool ok() const { return ok_; }
  uint64_t sent() const { return sent_; }
  Clock::duration elapsed() const { return elapsed_; }
  const std::optional<rudp::Stats>& stats() const { return stats_; }

 private:
  void pump(Connection& conn) {
    if (!conn.is_open()) return;
    // Keep a few messages queued beyond what the transport took; the water
    // marks pause us (on_high_water) and on_drain resumes.
    while (sent_ < total_ && conn.pending_output() < 8 * msg_) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(msg_, total_ - sent_));
      buf_.resize(n);
      buf_[0] = 'D';
      for (size_t i = 1; i < n; i += 8) {
        const uint64_t w = next();
        std::memcpy(buf_.data() + i, &w, std::min<size_t>(8, n - i));
      }
      if (!conn.send(buf_)) return;
      sent_ += n;
      crc_ = crc32(crc_, reinterpret_cast<const Bytef*>(buf_.data()), static_cast<uInt>(n));
    }
    if (sent_ == total_ && !end_sent_) {
      end_sent_ = conn.send("E");
    }
  }
  uint64_t next() {  // xorshift64: cheap, seeded, reproducible
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return rng_;
  }

  uint64_t total_;
  size_t msg_;
  uint64_t rng_;
  std::string tcp_cc_;
  std::string buf_;
  uint64_t sent_ = 0;
  uLong crc_ = crc32(0L, Z_NULL, 0);
  bool end_sent_ = false;
  bool ok_ = false;
  bool done_ = false;
  Clock::time_point start_;
  Clock::duration elapsed_{};
  std::optional<rudp::Stats> stats_;
  TimerId timer_ = 0;
};

uint64_t parse_size(const std::string& s) {
  size_t pos = 0;
  double v = std::stod(s, &pos);
  const std::string unit = s.substr(pos);
  if (unit == "k" || unit == "K") v *= 1 << 10;
  else if (unit == "m" || unit == "M") v *= 1 << 20;
  else if (unit == "g" || unit == "G") v *= 1 << 30;
  else if (!unit.empty()) throw std::invalid_argument("unit");
  return static_cast<uint64_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rudp_bulk: a verified bulk transfer over rudp or TCP"};
  bool server_mode = false;
  std::string proto = "rudp", host = "127.0.0.1", io = "epoll", bytes_s = "64M", json, tcp_cc;
  std::string cc = "fixed";
  uint16_t port = 9000;
  size_t message = 64 << 10, window = 4 << 20;
  uint64_t cc_window = 0, seed = 1;
  double timeout_s = 600;
  app.add_flag("--server", server_mode, "Run the sink");
  app.add_option("--proto", proto, "rudp|tcp")->check(CLI::IsMember({"rudp", "tcp"}));
  app.add_option("--host", host, "Server address (client) or bind address (server)");
  app.add_option("--port", port, "Port");
  app.add_option("--io", io, "IO back end");
  app.add_option("--bytes", bytes_s, "Bytes to send (k, M, G suffixes)");
  app.add_option("--message", message, "Message size in bytes")->check(CLI::Range(2, 1 << 20));
  app.add_option("--window", window, "rudp flow-control window and send buffer (bytes)");
  app.add_option("--cc", cc, "rudp congestion controller");
  app.add_option("--cc-window", cc_window, "rudp fixed controller's window (bytes; 0: default)");
  app.add_option("--tcp-cc", tcp_cc, "TCP_CONGESTION for the TCP sender (e.g. cubic)");
  app.add_option("--seed", seed, "Data seed");
  app.add_option("--timeout", timeout_s, "Give up after this many seconds");
  app.add_option("--json", json, "Append one JSON line with the result to this file");
  CLI11_PARSE(app, argc, argv);
  uint64_t total = 0;
  try {
    total = parse_size(bytes_s);
  } catch (const std::exception&) {
    std::fprintf(stderr, "rudp_bulk: bad --bytes '%s' (e.g. 64M, 1G)\n", bytes_s.c_str());
    return 2;
  }

  rudp::Options ro;
  ro.window = window;
  ro.send_buffer = window;
  ro.cc = cc;
  ro.cc_config.fixed_window = cc_window;

  if (server_mode) {
    Sink sink;
    ServerOptions so;
    so.host = host;
    so.port = port;
    so.io = io;
    std::unique_ptr<codec::Codec> codec;
    if (proto == "rudp") {
      so.transport = rudp::transport(ro);
    } else {
      codec = std::make_unique<codec::LengthFieldCodec>(codec::length_prefix_options(4, 2 << 20));
    }
    block_stop_signals();
    Server server(so, sink, std::move(codec));
    std::string error;
    if (server.start(&error) != 0) {
      std::fprintf(stderr, "rudp_bulk: %s\n", error.c_str());
      return 1;
    }
    spdlog::info("sink on {}:{} ({} over {})", host, server.port(), proto, io);
    wait_for_stop_signal();
    server.stop();
    return 0;
  }

  std::string error;
  auto loop = EventLoop::create(io, {}, &error);
  if (!loop) {
    std::fprintf(stderr, "rudp_bulk: %s\n", error.c_str());
    return 1;
  }
  Source src(total, message, seed, tcp_cc);
  Connector connector;
  codec::LengthFieldCodec tcp_codec(codec::length_prefix_options(4, 2 << 20));
  std::unique_ptr<Client> tcp;
  std::unique_ptr<rudp::Client> rc;
  loop->run([&] {
    auto done = [&](int r) {
      if (r < 0) {
        std::fprintf(stderr, "rudp_bulk: connect: %s\n", std::strerror(-r));
        loop->quit();
      }
    };
    if (proto == "rudp") {
      rudp::ClientOptions co;
      co.host = host;
      co.port = port;
      co.rudp = ro;
      rc = std::make_unique<rudp::Client>(*loop, src, co);
      rc->connect(done);
    } else {
      ClientOptions co;
      co.host = host;
      co.port = port;
      tcp = std::make_unique<Client>(*loop, connector, src, &tcp_codec, co);
      tcp->connect(done);
    }
    loop->run_every(std::chrono::milliseconds(100), [&] {
      if (src.done()) loop->quit();
    });
    loop->run_after(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)), [&] {
      std::fprintf(stderr, "rudp_bulk: timed out after %.0f s\n", timeout_s);
      loop->quit();
    });
  });
  rc.reset();
  tcp.reset();
  const double secs = std::chrono::duration<double>(src.elapsed()).count();
  const double mbit = secs > 0 ? static_cast<double>(src.sent()) * 8 / secs / 1e6 : 0;
  std::printf("%s: %llu bytes in %.2f s = %.1f Mbit/s: %s\n", proto.c_str(),
              static_cast<unsigned long long>(src.sent()), secs, mbit,
              src.ok() ? "verified" : "NOT VERIFIED");
  if (src.stats()) std::printf("rudp: %s\n", src.stats()->str().c_str());
  if (!json.empty()) {
    if (FILE* f = std::fopen(json.c_str(), "a")) {
      const auto& s = src.stats();
      std::fprintf(f,
                   "{\"proto\":\"%s\",\"cc\":\"%s\",\"bytes\":%llu,\"seconds\":%.3f,\"mbit_s\":%.2f,"
                   "\"verified\":%s,\"retransmitted\":%llu,\"lost\":%llu,\"spurious\":%llu,"
                   "\"srtt_ms\":%.3f}\n",
                   proto.c_str(), proto == "tcp" ? tcp_cc.c_str() : cc.c_str(),
                   static_cast<unsigned long long>(src.sent()), secs, mbit,
                   src.ok() ? "true" : "false",
                   static_cast<unsigned long long>(s ? s->retransmitted : 0),
                   static_cast<unsigned long long>(s ? s->packets_lost : 0),
                   static_cast<unsigned long long>(s ? s->spurious : 0),
                   s ? std::chrono::duration<double, std::milli>(s->srtt).count() : 0.0);
      std::fclose(f);
    }
  }
  return src.ok() ? 0 : 1;
}
