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
//
// For the congestion-control bench (perf/ccbench.py): --seconds S sends
// for S seconds instead of --bytes (then the end marker, verified the
// same way; the client waits at most --drain seconds more for the answer,
// since a slow flow's queued data can take long to drain). Goodput is
// measured at the receiver: bytes handed to the server's application from
// the first data byte to the end marker, and the same after --warmup
// seconds (startup excluded); the server sends both back with its answer,
// and the client's JSON line carries them ("goodput_mbit_s",
// "warm_mbit_s") next to its own send rate ("mbit_s"). A server given
// --seconds S too also measures each connection over the fixed window
// [first byte + warmup, first byte + S] — what the sender's drain after S
// cannot blur — and appends a JSON line per connection to its --json
// ("window_mbit_s"): the figure the bench uses.
// Retransmission overhead ("retx_overhead"): rudp: retransmitted stream
// bytes / first transmissions (rudp::stats); TCP: tcpi_bytes_retrans /
// (tcpi_bytes_sent - tcpi_bytes_retrans) from TCP_INFO.
//
//   rudp_bulk --list-cc          # the rudp controllers built in, one a line
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
#include "perf/tcp_info.h"
#include "rudp/cc/registry.h"
#include "rudp/rudp.h"

namespace {

using namespace sluice;
using Clock = std::chrono::steady_clock;

// Message layout: first byte 'D' (data) or 'E' (end: nothing follows).
// The server's answer: "R <bytes> <crc32> <seconds> <warm bytes> <warm
// seconds>": the receiver's goodput, from the first data message to the
// end marker, all of it and after the warm-up.
class Sink final : public Handler {
 public:
  Sink(double warmup_s, double window_s, std::string proto, std::string json)
      : warmup_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(warmup_s))),
        window_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(window_s))),
        proto_(std::move(proto)), json_(std::move(json)) {}
  void on_close(Connection& conn, CloseReason, int) override { finish_window(conn, Clock::now()); }
  void on_message(Connection& conn, std::string_view m) override {
    auto& st = conn.state<State>();
    const auto now = Clock::now();
    if (st.bytes > 0 && window_.count() > 0 && now - st.first >= window_) finish_window(conn, now);
    if (!m.empty() && m[0] == 'E') {
      finish_window(conn, now);
      const double secs = st.bytes ? std::chrono::duration<double>(now - st.first).count() : 0;
      const double warm_secs =
          st.bytes ? std::chrono::duration<double>(now - (st.first + warmup_)).count() : 0;
      conn.send(fmt::format("R {} {} {:.6f} {} {:.6f}", st.bytes, st.crc, secs, st.warm_bytes,
                            std::max(0.0, warm_secs)));
      spdlog::info("{}: {} bytes, crc32 {:08x}, {:.2f} s = {:.2f} Mbit/s goodput", conn.peer(),
                   st.bytes, st.crc, secs, secs > 0 ? st.bytes * 8 / secs / 1e6 : 0.0);
      if (auto s = rudp::stats(conn)) spdlog::info("rudp: {}", s->str());
      return;
    }
    if (st.bytes == 0) st.first = now;
    st.bytes += m.size();
    if (now - st.first >= warmup_) st.warm_bytes += m.size();
    if (now - st.first >= warmup_ && !st.window_done) st.window_bytes += m.size();
    st.crc = crc32(st.crc, reinterpret_cast<const Bytef*>(m.data()), static_cast<uInt>(m.size()));
  }

 private:
  struct State {
    uint64_t bytes = 0, warm_bytes = 0, window_bytes = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    Clock::time_point first;
    bool window_done = false;
  };
  // The fixed window ends: at first + window, or earlier when the
  // connection ends first (then the window is as long as it lasted).
  void finish_window(Connection& conn, Clock::time_point now) {
    if (window_.count() <= 0 || json_.empty()) return;
    auto& st = conn.state<State>();
    if (st.window_done) return;
    st.window_done = true;
    const auto end = st.bytes ? std::min(now, st.first + window_) : now;
    const double secs = st.bytes ? std::chrono::duration<double>(end - (st.first + warmup_)).count() : 0;
    const double mbit = secs > 0 ? st.window_bytes * 8 / secs / 1e6 : 0;
    if (FILE* f = std::fopen(json_.c_str(), "a")) {
      std::fprintf(f,
                   "{\"side\":\"server\",\"proto\":\"%s\",\"peer\":\"%s\",\"bytes_so_far\":%llu,"
                   "\"window_bytes\":%llu,\"window_seconds\":%.3f,\"window_mbit_s\":%.3f}\n",
                   proto_.c_str(), conn.peer().c_str(), static_cast<unsigned long long>(st.bytes),
                   static_cast<unsigned long long>(st.window_bytes), std::max(0.0, secs), mbit);
      std::fclose(f);
    }
  }
  Clock::duration warmup_, window_;
  std::string proto_, json_;
};

class Source final : public Handler {
 public:
  Source(uint64_t total, size_t msg, uint64_t seed, const std::string& tcp_cc, double seconds)
      : total_(seconds > 0 ? UINT64_MAX : total), msg_(std::max<size_t>(msg, 2)), rng_(seed | 1),
        tcp_cc_(tcp_cc), seconds_(seconds) {}

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
    if (trace_ && trace_ms_ > 0) {
      trace(conn);
      trace_timer_ = conn.loop().run_every(std::chrono::milliseconds(trace_ms_),
                                           [this, c] { trace(*c); });
    }
    if (seconds_ > 0) {  // --seconds: stop taking new data then; what is queued still goes
      stop_timer_ = conn.loop().run_after(
          std::chrono::microseconds(static_cast<int64_t>(seconds_ * 1e6)), [this, c] {
            total_ = sent_;
            send_elapsed_ = Clock::now() - start_;
            pump(*c);
            // Wait at most drain_ for the answer, then give up (unverified).
            stop_timer_ = c->loop().run_after(
                std::chrono::microseconds(static_cast<int64_t>(drain_ * 1e6)), [this, c] {
                  stop_timer_ = 0;
                  spdlog::warn("no answer {:.0f} s after sending stopped; closing unverified", drain_);
                  snapshot(*c);
                  c->close();
                });
          });
    }
  }
  void on_drain(Connection& conn) override { pump(conn); }
  void on_message(Connection& conn, std::string_view m) override {
    unsigned long long bytes = 0, warm = 0;
    unsigned long crc = 0;
    double secs = 0, warm_secs = 0;
    if (std::sscanf(std::string(m).c_str(), "R %llu %lu %lf %llu %lf", &bytes, &crc, &secs, &warm,
                    &warm_secs) < 2) {
      spdlog::error("unexpected answer: {}", m);
    }
    elapsed_ = Clock::now() - start_;
    if (send_elapsed_.count() == 0) send_elapsed_ = elapsed_;
    recv_bytes_ = bytes;
    recv_secs_ = secs;
    warm_bytes_ = warm;
    warm_secs_ = warm_secs;
    ok_ = bytes == sent_ && crc == crc_;
    snapshot(conn);
    spdlog::info("server got {} bytes crc32 {:08x}; sent {} bytes crc32 {:08x}: {}", bytes, crc,
                 sent_, crc_, ok_ ? "MATCH" : "MISMATCH");
    conn.close();
  }
  void on_close(Connection& conn, CloseReason r, int err) override {
    if (timer_) conn.loop().cancel(timer_);
    if (stop_timer_) conn.loop().cancel(stop_timer_);
    if (trace_timer_) conn.loop().cancel(trace_timer_);
    timer_ = stop_timer_ = trace_timer_ = 0;
    if (elapsed_.count() == 0 && send_elapsed_.count() == 0) {
      spdlog::error("closed before the answer: {} ({})", to_string(r), std::strerror(-err));
    }
    done_ = true;
  }

  // --trace: the sender's congestion state, one JSON line per interval
  // (cwnd over time for docs/CONGESTION.md's charts and the lab).
  void set_trace(std::FILE* f, int ms) {
    trace_ = f;
    trace_ms_ = ms;
  }
  void trace(Connection& conn) {
    const double t = std::chrono::duration<double>(Clock::now() - start_).count();
    if (auto s = rudp::stats(conn)) {
      std::fprintf(trace_,
                   "{\"t\":%.3f,\"cc\":\"%s\",\"cwnd\":%llu,\"in_flight\":%llu,"
                   "\"pacing_mbit_s\":%.3f,\"bw_mbit_s\":%.3f,\"srtt_ms\":%.3f,"
                   "\"min_rtt_ms\":%.3f,\"lost\":%llu,\"ce\":%llu}\n",
                   t, s->cc.c_str(), static_cast<unsigned long long>(s->cwnd),
                   static_cast<unsigned long long>(s->bytes_in_flight), s->pacing_rate * 8 / 1e6,
                   s->delivery_rate * 8 / 1e6, std::chrono::duration<double, std::milli>(s->srtt).count(),
                   std::chrono::duration<double, std::milli>(s->min_rtt).count(),
                   static_cast<unsigned long long>(s->packets_lost),
                   static_cast<unsigned long long>(s->ecn_ce));
    } else if (conn.fd() >= 0) {
      perf::TcpCounters k;
      if (!perf::tcp_counters(conn.fd(), &k)) return;
      std::fprintf(trace_,
                   "{\"t\":%.3f,\"cc\":\"tcp-%s\",\"cwnd\":%llu,\"pacing_mbit_s\":%.3f,"
                   "\"bw_mbit_s\":%.3f,\"srtt_ms\":%.3f,\"min_rtt_ms\":%.3f,\"lost\":%u,"
                   "\"retrans\":%u}\n",
                   t, tcp_cc_.c_str(), static_cast<unsigned long long>(k.cwnd_bytes),
                   k.pacing_rate * 8 / 1e6, k.delivery_rate * 8 / 1e6, k.rtt_ms, k.min_rtt_ms,
                   k.lost, k.total_retrans);
    }
    std::fflush(trace_);
  }

  void snapshot(Connection& conn) {
    if (auto s = rudp::stats(conn)) stats_ = s;
    if (conn.fd() >= 0 && !rudp::stats(conn)) {
      perf::TcpCounters t;
      if (perf::tcp_counters(conn.fd(), &t)) tcp_ = t;
    }
  }
  void set_drain(double s) { drain_ = s; }
  bool done() const { return done_; }
  bool ok() const { return ok_; }
  uint64_t sent() const { return sent_; }
  Clock::duration elapsed() const { return elapsed_; }
  const std::optional<rudp::Stats>& stats() const { return stats_; }
  const std::optional<perf::TcpCounters>& tcp() const { return tcp_; }
  Clock::duration send_elapsed() const { return send_elapsed_; }
  uint64_t recv_bytes() const { return recv_bytes_; }
  double recv_secs() const { return recv_secs_; }
  uint64_t warm_bytes() const { return warm_bytes_; }
  double warm_secs() const { return warm_secs_; }

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
  double seconds_, drain_ = 10;
  std::string buf_;
  uint64_t sent_ = 0;
  uLong crc_ = crc32(0L, Z_NULL, 0);
  bool end_sent_ = false;
  bool ok_ = false;
  bool done_ = false;
  Clock::time_point start_;
  Clock::duration elapsed_{}, send_elapsed_{};
  uint64_t recv_bytes_ = 0, warm_bytes_ = 0;
  double recv_secs_ = 0, warm_secs_ = 0;
  std::optional<rudp::Stats> stats_;
  std::optional<perf::TcpCounters> tcp_;
  TimerId timer_ = 0, stop_timer_ = 0, trace_timer_ = 0;
  std::FILE* trace_ = nullptr;
  int trace_ms_ = 0;
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
  double timeout_s = 600, seconds = 0, warmup = 1, drain = 10;
  bool list_cc = false;
  app.add_flag("--server", server_mode, "Run the sink");
  app.add_option("--proto", proto, "rudp|tcp")->check(CLI::IsMember({"rudp", "tcp"}));
  app.add_option("--host", host, "Server address (client) or bind address (server)");
  app.add_option("--port", port, "Port");
  app.add_option("--io", io, "IO back end");
  app.add_option("--bytes", bytes_s, "Bytes to send (k, M, G suffixes)");
  app.add_option("--seconds", seconds, "Send for this many seconds instead of --bytes (0: --bytes)");
  app.add_option("--warmup", warmup, "Server: goodput also measured from this long after the first byte");
  app.add_option("--drain", drain, "With --seconds: wait at most this long for the answer after sending");
  app.add_flag("--list-cc", list_cc, "Print the rudp congestion controllers built in, then exit");
  app.add_option("--message", message, "Message size in bytes")->check(CLI::Range(2, 1 << 20));
  app.add_option("--window", window, "rudp flow-control window and send buffer (bytes)");
  app.add_option("--cc", cc, "rudp congestion controller");
  app.add_option("--cc-window", cc_window, "rudp fixed controller's window (bytes; 0: default)");
  app.add_option("--tcp-cc", tcp_cc, "TCP_CONGESTION for the TCP sender (e.g. cubic)");
  app.add_option("--seed", seed, "Data seed");
  app.add_option("--timeout", timeout_s, "Give up after this many seconds");
  app.add_option("--json", json, "Append one JSON line with the result to this file");
  std::string trace_path;
  int trace_ms = 100;
  app.add_option("--trace", trace_path,
                 "Client: append the sender's congestion state (cwnd, pacing, RTT, losses) as a "
                 "JSON line every --trace-ms to this file");
  app.add_option("--trace-ms", trace_ms, "Trace interval")->check(CLI::Range(1, 60000));
  CLI11_PARSE(app, argc, argv);
  if (list_cc) {
    for (const auto& name : rudp::cc::available()) std::printf("%s\n", name.c_str());
    return 0;
  }
  if (proto == "rudp") {
    std::string why;
    if (!rudp::cc::create(cc, rudp::cc::Config{}, &why)) {
      std::fprintf(stderr, "rudp_bulk: %s\n", why.c_str());
      return 3;
    }
  }
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
    Sink sink(warmup, seconds, proto, json);
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
  Source src(total, message, seed, tcp_cc, seconds);
  src.set_drain(drain);
  std::FILE* trace_file = nullptr;
  if (!trace_path.empty()) {
    trace_file = std::fopen(trace_path.c_str(), "a");
    if (!trace_file) {
      spdlog::error("--trace {}: {}", trace_path, std::strerror(errno));
      return 2;
    }
    src.set_trace(trace_file, trace_ms);
  }
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
  const double goodput = src.recv_secs() > 0 ? src.recv_bytes() * 8 / src.recv_secs() / 1e6 : 0;
  const double warm = src.warm_secs() > 0 ? src.warm_bytes() * 8 / src.warm_secs() / 1e6 : 0;
  // Retransmitted / first transmissions: rudp's stream bytes, TCP's bytes.
  double retx = -1;
  const auto& s = src.stats();
  if (s && s->stream_bytes_sent > 0) {
    retx = static_cast<double>(s->retransmitted) / static_cast<double>(s->stream_bytes_sent);
  } else if (src.tcp() && src.tcp()->has_bytes && src.tcp()->bytes_sent > src.tcp()->bytes_retrans) {
    retx = static_cast<double>(src.tcp()->bytes_retrans) /
           static_cast<double>(src.tcp()->bytes_sent - src.tcp()->bytes_retrans);
  }
  std::printf("%s: %llu bytes in %.2f s = %.1f Mbit/s: %s; receiver goodput %.2f Mbit/s (%.2f after "
              "warm-up), retransmitted %.2f%%\n",
              proto.c_str(), static_cast<unsigned long long>(src.sent()), secs, mbit,
              src.ok() ? "verified" : "NOT VERIFIED", goodput, warm, retx * 100);
  if (s) std::printf("rudp: %s\n", s->str().c_str());
  if (!json.empty()) {
    if (FILE* f = std::fopen(json.c_str(), "a")) {
      std::fprintf(f,
                   "{\"proto\":\"%s\",\"cc\":\"%s\",\"bytes\":%llu,\"seconds\":%.3f,\"mbit_s\":%.2f,"
                   "\"verified\":%s,\"retransmitted\":%llu,\"lost\":%llu,\"spurious\":%llu,"
                   "\"srtt_ms\":%.3f,\"send_seconds\":%.3f,\"recv_bytes\":%llu,\"recv_seconds\":%.3f,"
                   "\"goodput_mbit_s\":%.3f,\"warm_bytes\":%llu,\"warm_seconds\":%.3f,"
                   "\"warm_mbit_s\":%.3f,\"retx_overhead\":%.5f,\"tcp_bytes_retrans\":%llu}\n",
                   proto.c_str(), proto == "tcp" ? tcp_cc.c_str() : cc.c_str(),
                   static_cast<unsigned long long>(src.sent()), secs, mbit,
                   src.ok() ? "true" : "false",
                   static_cast<unsigned long long>(s ? s->retransmitted : 0),
                   static_cast<unsigned long long>(s ? s->packets_lost : 0),
                   static_cast<unsigned long long>(s ? s->spurious : 0),
                   s ? std::chrono::duration<double, std::milli>(s->srtt).count()
                     : (src.tcp() ? src.tcp()->rtt_ms : 0.0),
                   std::chrono::duration<double>(src.send_elapsed()).count(),
                   static_cast<unsigned long long>(src.recv_bytes()), src.recv_secs(), goodput,
                   static_cast<unsigned long long>(src.warm_bytes()), src.warm_secs(), warm, retx,
                   static_cast<unsigned long long>(src.tcp() ? src.tcp()->bytes_retrans : 0));
      std::fclose(f);
    }
  }
  return src.ok() ? 0 : 1;
}
