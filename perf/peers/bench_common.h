// Shared parts of the congestion-control bench peers (enet_bulk, udt_bulk):
// the command line (the same flags and meanings as perf/rudp_bulk and
// perf/msg_rtt), the receiver's goodput window, and the JSON lines, whose
// fields match rudp_bulk's (bulk) and msg_rtt's (latency) so that
// perf/ccbench.py reads every scheme the same way.
//
// Wire format of both peers (a message: ENet packet, or a UDT stream frame
// of u32 little-endian length + payload): the first byte says what it is.
//   'D' data (bulk)      counted by the server
//   'E' end of data      answered "R <bytes> <seconds> <warm bytes> <warm seconds>"
//   'P' ping (latency)   echoed back unchanged; bytes 1..4 are a sequence number
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "perf/histogram.h"

namespace peers::bench {

using Clock = std::chrono::steady_clock;

struct Options {
  bool server = false;
  std::string mode = "bulk";  // bulk | latency
  std::string host = "127.0.0.1", json, label;
  uint16_t port = 9000;
  double seconds = 10, warmup = 1, drain = 10, interval_ms = 20;
  size_t message = 1200, conns = 1, min_size = 8, max_size = 256;
  uint64_t seed = 1;
};

inline void add_options(CLI::App& app, Options& o) {
  app.add_flag("--server", o.server, "Run the sink / echo server");
  app.add_option("--mode", o.mode, "bulk|latency (client)")->check(CLI::IsMember({"bulk", "latency"}));
  app.add_option("--host", o.host, "Server address (client) or bind address (server)");
  app.add_option("--port", o.port, "Port");
  app.add_option("--seconds", o.seconds,
                 "Bulk: send for this long (server: the goodput window). Latency: measured seconds");
  app.add_option("--warmup", o.warmup, "Unmeasured seconds first (server window; latency client)");
  app.add_option("--drain", o.drain, "Bulk: wait at most this long for the answer after sending");
  app.add_option("--message", o.message, "Bulk message size (bytes)")->check(CLI::Range(16, 1 << 20));
  app.add_option("--conns", o.conns, "Latency: connections")->check(CLI::Range(1, 200));
  app.add_option("--interval-ms", o.interval_ms, "Latency: one message per connection every this long");
  app.add_option("--min-size", o.min_size, "Latency: smallest message")->check(CLI::Range(8, 65536));
  app.add_option("--max-size", o.max_size, "Latency: largest message")->check(CLI::Range(8, 65536));
  app.add_option("--seed", o.seed, "Seed of sizes and contents");
  app.add_option("--label", o.label, "Label in the JSON line");
  app.add_option("--json", o.json, "Append one JSON line with the result");
}

// The receiver's accounting of one connection: everything from the first
// data byte, after the warm-up, and within the fixed window [first +
// warmup, first + seconds] (rudp_bulk's server does the same).
struct Receiver {
  uint64_t bytes = 0, warm_bytes = 0, window_bytes = 0;
  Clock::time_point first;
  bool window_done = false;

  void on_data(size_t n, Clock::time_point now, const Options& o) {
    if (bytes == 0) first = now;
    bytes += n;
    if (now - first >= dur(o.warmup)) {
      warm_bytes += n;
      if (!window_done && now - first < dur(o.seconds)) window_bytes += n;
    }
  }
  // "R ..." for an end marker.
  std::string answer(Clock::time_point now, const Options& o) const {
    const double secs = bytes ? std::chrono::duration<double>(now - first).count() : 0;
    const double warm = bytes ? std::chrono::duration<double>(now - first).count() - o.warmup : 0;
    char b[160];
    std::snprintf(b, sizeof b, "R %llu %.6f %llu %.6f", static_cast<unsigned long long>(bytes), secs,
                  static_cast<unsigned long long>(warm_bytes), warm > 0 ? warm : 0.0);
    return b;
  }
  // Once per connection: the window's JSON line (at the first data after
  // the window, the end marker, or the connection's end).
  void finish_window(Clock::time_point now, const Options& o, const char* proto,
                     const std::string& peer) {
    if (window_done || o.json.empty()) return;
    if (bytes == 0) return;  // no data (a latency connection): no line
    window_done = true;
    auto end = bytes ? std::min(now, first + dur(o.seconds)) : now;
    const double secs = bytes ? std::chrono::duration<double>(end - (first + dur(o.warmup))).count() : 0;
    if (FILE* f = std::fopen(o.json.c_str(), "a")) {
      std::fprintf(f,
                   "{\"side\":\"server\",\"proto\":\"%s\",\"peer\":\"%s\",\"bytes_so_far\":%llu,"
                   "\"window_bytes\":%llu,\"window_seconds\":%.3f,\"window_mbit_s\":%.3f}\n",
                   proto, peer.c_str(), static_cast<unsigned long long>(bytes),
                   static_cast<unsigned long long>(window_bytes), secs > 0 ? secs : 0.0,
                   secs > 0 ? window_bytes * 8 / secs / 1e6 : 0.0);
      std::fclose(f);
    }
  }
  bool window_over(Clock::time_point now, const Options& o) const {
    return bytes > 0 && now - first >= dur(o.seconds);
  }
  static Clock::duration dur(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }
};

// The bulk client's result, as rudp_bulk's JSON line.
struct BulkResult {
  uint64_t sent = 0, recv_bytes = 0, warm_bytes = 0;
  double send_seconds = 0, total_seconds = 0, recv_seconds = 0, warm_seconds = 0;
  double retx_overhead = -1, srtt_ms = 0;
  uint64_t retransmitted = 0;  // units of the transport's own counter (packets for ENet/UDT)
  bool verified = false;
};

inline void print_bulk(const char* proto, const Options& o, const BulkResult& r) {
  const double mbit = r.send_seconds > 0 ? r.sent * 8 / r.send_seconds / 1e6 : 0;
  const double goodput = r.recv_seconds > 0 ? r.recv_bytes * 8 / r.recv_seconds / 1e6 : 0;
  const double warm = r.warm_seconds > 0 ? r.warm_bytes * 8 / r.warm_seconds / 1e6 : 0;
  std::printf("%s: %llu bytes sent in %.2f s: %s; receiver goodput %.2f Mbit/s (%.2f after warm-up), "
              "retransmitted %.2f%%\n",
              proto, static_cast<unsigned long long>(r.sent), r.send_seconds,
              r.verified ? "verified count" : "NOT VERIFIED", goodput, warm, r.retx_overhead * 100);
  if (o.json.empty()) return;
  if (FILE* f = std::fopen(o.json.c_str(), "a")) {
    std::fprintf(f,
                 "{\"proto\":\"%s\",\"cc\":\"\",\"bytes\":%llu,\"seconds\":%.3f,\"mbit_s\":%.2f,"
                 "\"verified\":%s,\"retransmitted\":%llu,\"srtt_ms\":%.3f,\"send_seconds\":%.3f,"
                 "\"recv_bytes\":%llu,\"recv_seconds\":%.3f,\"goodput_mbit_s\":%.3f,\"warm_bytes\":%llu,"
                 "\"warm_seconds\":%.3f,\"warm_mbit_s\":%.3f,\"retx_overhead\":%.5f}\n",
                 proto, static_cast<unsigned long long>(r.sent), r.total_seconds, mbit,
                 r.verified ? "true" : "false", static_cast<unsigned long long>(r.retransmitted), r.srtt_ms,
                 r.send_seconds, static_cast<unsigned long long>(r.recv_bytes), r.recv_seconds, goodput,
                 static_cast<unsigned long long>(r.warm_bytes), r.warm_seconds, warm, r.retx_overhead);
    std::fclose(f);
  }
}

// The latency client's result, as msg_rtt's line (RTTs recorded in us).
inline void print_latency(const char* proto, const Options& o, const sluice::perf::Histogram& h,
                          uint64_t wrong, uint64_t unanswered, uint64_t lost) {
  auto ms = [](uint64_t us) { return static_cast<double>(us) / 1000.0; };
  std::printf("%s: %zu conns, %llu messages timed: mean %.1f ms, p50 %.1f, p90 %.1f, p99 %.1f, max %.1f ms; "
              "%llu wrong echoes, %llu unanswered\n",
              proto, o.conns, static_cast<unsigned long long>(h.count()), h.mean() / 1000.0,
              ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)), ms(h.max()),
              static_cast<unsigned long long>(wrong), static_cast<unsigned long long>(unanswered));
  if (o.json.empty()) return;
  if (FILE* f = std::fopen(o.json.c_str(), "a")) {
    std::fprintf(f,
                 "{\"label\":\"%s\",\"proto\":\"%s\",\"tcp_cc\":\"\",\"conns\":%zu,\"messages\":%llu,"
                 "\"mean_ms\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
                 "\"wrong\":%llu,\"unanswered\":%llu,\"lost\":%llu,\"spurious\":0}\n",
                 o.label.c_str(), proto, o.conns, static_cast<unsigned long long>(h.count()),
                 h.mean() / 1000.0, ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)),
                 ms(h.max()), static_cast<unsigned long long>(wrong),
                 static_cast<unsigned long long>(unanswered), static_cast<unsigned long long>(lost));
    std::fclose(f);
  }
}

}  // namespace peers::bench
