// The metrics library without sockets: the text format (read back by a
// strict parser), counters and histogram buckets, the server series with
// worker labels, the HTTP request parser of the /metrics responder, and
// the loop-lag arithmetic.
#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "core/loop_lag.h"
#include "core/metrics.h"
#include "core/metrics_server.h"
#include "core/server_metrics.h"
#include "tests/exposition.h"

namespace sluice {
namespace {

using metrics::LatencyCounts;
using metrics::TextWriter;
using metrics::Type;
using testing::Exposition;

Exposition parse(const std::string& text) {
  Exposition e;
  std::string error;
  EXPECT_TRUE(testing::parse_exposition(text, &e, &error)) << error << "\n" << text;
  return e;
}

TEST(MetricsText, CounterAndGaugeWithEscapedLabels) {
  TextWriter w;
  w.family("requests_total", Type::kCounter, "Requests.\nSecond line \\ slash.");
  w.value({{"path", "/a\"b\\c\nd"}}, 42);
  w.value({}, 7);
  w.family("temperature_celsius", Type::kGauge, "Temp.");
  w.value({{"room", "x"}}, -1.5);
  EXPECT_TRUE(w.error().empty()) << w.error();
  const std::string text = w.text();
  EXPECT_NE(text.find("# HELP requests_total Requests.\\nSecond line \\\\ slash.\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("requests_total{path=\"/a\\\"b\\\\c\\nd\"} 42\n"), std::string::npos) << text;
  const Exposition e = parse(text);
  EXPECT_EQ(e.types.at("requests_total"), "counter");
  EXPECT_EQ(e.types.at("temperature_celsius"), "gauge");
  EXPECT_EQ(e.help.at("requests_total"), "Requests.\nSecond line \\ slash.");
  EXPECT_EQ(e.samples.at("requests_total{path=\"/a\"b\\c\nd\"}"), 42);
  EXPECT_EQ(e.samples.at("requests_total"), 7);
  EXPECT_EQ(e.samples.at("temperature_celsius{room=\"x\"}"), -1.5);
}

TEST(MetricsText, InvalidNamesAreSkippedAndReported) {
  TextWriter w;
  w.family("0bad", Type::kCounter, "x");
  w.value({}, 1);
  w.family("good_total", Type::kCounter, "x");
  w.value({{"bad-label", "v"}}, 1);
  w.value({{"__reserved", "v"}}, 1);
  w.value({{"ok", "v"}}, 2);
  EXPECT_NE(w.error().find("0bad"), std::string::npos);
  EXPECT_NE(w.error().find("bad-label"), std::string::npos);
  EXPECT_NE(w.error().find("__reserved"), std::string::npos);
  const Exposition e = parse(w.text());
  EXPECT_EQ(e.samples.size(), 1u);
  EXPECT_EQ(e.samples.at("good_total{ok=\"v\"}"), 2);
}

TEST(MetricsText, Values) {
  EXPECT_EQ(TextWriter::format_value(0), "0");
  EXPECT_EQ(TextWriter::format_value(18446744073709.0), "18446744073709");
  EXPECT_EQ(TextWriter::format_value(0.0001), "0.0001");
  EXPECT_EQ(TextWriter::format_value(2.5), "2.5");
  EXPECT_EQ(TextWriter::format_value(INFINITY), "+Inf");
  EXPECT_EQ(TextWriter::format_value(-INFINITY), "-Inf");
  EXPECT_EQ(TextWriter::format_value(NAN), "NaN");
  double back = 0;
  const double v = 0.1 + 0.2;  // not short in decimal: must round-trip
  back = std::stod(TextWriter::format_value(v));
  EXPECT_EQ(back, v);
}

TEST(MetricsHistogram, BucketsAreInclusiveUpperBounds) {
  EXPECT_EQ(metrics::latency_bucket(0), 0u);
  EXPECT_EQ(metrics::latency_bucket(100'000), 0u);    // le=0.0001 holds 0.1 ms
  EXPECT_EQ(metrics::latency_bucket(100'001), 1u);
  EXPECT_EQ(metrics::latency_bucket(10'000'000'000), metrics::kLatencyBuckets - 2);
  EXPECT_EQ(metrics::latency_bucket(10'000'000'001), metrics::kLatencyBuckets - 1);  // +Inf
}

TEST(MetricsHistogram, CumulativeBucketsSumAndCount) {
  metrics::LocalHistogram h;
  h.observe_ns(50'000);         // 0.05 ms
  h.observe_ns(3'000'000);      // 3 ms -> le 0.005
  h.observe_ns(3'000'000);
  h.observe_ns(20'000'000'000);  // 20 s -> +Inf only
  TextWriter w;
  w.family("lag_seconds", Type::kHistogram, "Lag.");
  w.latency({{"worker", "0"}}, h.read());
  EXPECT_TRUE(w.error().empty()) << w.error();
  const Exposition e = parse(w.text());
  EXPECT_EQ(e.samples.at("lag_seconds_bucket{worker=\"0\",le=\"0.0001\"}"), 1);
  EXPECT_EQ(e.samples.at("lag_seconds_bucket{worker=\"0\",le=\"0.0025\"}"), 1);
  EXPECT_EQ(e.samples.at("lag_seconds_bucket{worker=\"0\",le=\"0.005\"}"), 3);
  EXPECT_EQ(e.samples.at("lag_seconds_bucket{worker=\"0\",le=\"10\"}"), 3);
  EXPECT_EQ(e.samples.at("lag_seconds_bucket{worker=\"0\",le=\"+Inf\"}"), 4);
  EXPECT_EQ(e.samples.at("lag_seconds_count{worker=\"0\"}"), 4);
  EXPECT_NEAR(e.samples.at("lag_seconds_sum{worker=\"0\"}"), 20.00605, 1e-9);
}

TEST(MetricsHistogram, WrongShapeIsRefused) {
  TextWriter w;
  w.family("c_total", Type::kCounter, "x");
  w.latency({}, LatencyCounts{});  // a histogram sample in a counter family
  w.family("h", Type::kHistogram, "x");
  w.value({}, 1);  // a plain value in a histogram family
  const double bounds[] = {1, 2};
  const uint64_t counts[] = {1, 2};  // needs 3
  w.histogram({}, bounds, counts, 3);
  w.histogram({{"le", "1"}}, bounds, {}, 0);
  EXPECT_FALSE(w.error().empty());
  const Exposition e = parse(w.text());
  EXPECT_TRUE(e.samples.empty());
}

TEST(MetricsCounter, LocalCounterAdds) {
  metrics::LocalCounter c;
  c.add();
  c.add(41);
  EXPECT_EQ(c.get(), 42u);
}

TEST(ServerMetrics, EveryWorkerLabelledAndSectionsOptional) {
  ServerSample a, b;
  a.connections_open = 3;
  a.accepted = 10;
  a.refused_max_connections = 2;
  a.refused_source_rate = 1;
  a.bytes_in = 1000;
  a.messages_out = 5;
  a.frame_errors = 1;
  a.idle[1] = 4;
  a.loop_lag.buckets[0] = 7;
  b.connections_open = 4;
  b.accept_errors = 9;
  TextWriter w;
  const ServerSample both[] = {a, b};
  write_server_metrics(w, both);
  EXPECT_TRUE(w.error().empty()) << w.error();
  const Exposition e = parse(w.text());
  auto at = [&](const std::string& k) {
    auto it = e.samples.find(k);
    EXPECT_NE(it, e.samples.end()) << k;
    return it == e.samples.end() ? -1.0 : it->second;
  };
  EXPECT_EQ(at("sluice_connections_open{worker=\"0\"}"), 3);
  EXPECT_EQ(at("sluice_connections_open{worker=\"1\"}"), 4);
  EXPECT_EQ(at("sluice_connections_accepted_total{worker=\"0\"}"), 10);
  EXPECT_EQ(at("sluice_connections_refused_total{worker=\"0\",reason=\"max_connections\"}"), 2);
  EXPECT_EQ(at("sluice_connections_refused_total{worker=\"0\",reason=\"source_rate\"}"), 1);
  EXPECT_EQ(at("sluice_connections_refused_total{worker=\"1\",reason=\"source_cap\"}"), 0);
  EXPECT_EQ(at("sluice_accept_errors_total{worker=\"1\"}"), 9);
  EXPECT_EQ(at("sluice_received_bytes_total{worker=\"0\"}"), 1000);
  EXPECT_EQ(at("sluice_sent_messages_total{worker=\"0\"}"), 5);
  EXPECT_EQ(at("sluice_frame_errors_total{worker=\"0\"}"), 1);
  EXPECT_EQ(at("sluice_idle_timeouts_total{worker=\"0\",kind=\"writer\"}"), 4);
  EXPECT_EQ(at("sluice_loop_lag_seconds_count{worker=\"0\"}"), 7);
  EXPECT_EQ(at("sluice_loop_lag_seconds_count{worker=\"1\"}"), 0);
  EXPECT_EQ(e.types.at("sluice_loop_lag_seconds"), "histogram");
  EXPECT_EQ(e.types.count("sluice_heartbeat_drops_total"), 0u);
  EXPECT_EQ(e.types.count("sluice_rudp_lost_packets_total"), 0u);
  // Every family's name follows the conventions: counters end in _total.
  for (const auto& [name, type] : e.types) {
    if (type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
  }

  b.has_heartbeat = 1;
  b.heartbeat_drops_timeout = 2;
  b.heartbeat_rtt.buckets[3] = 1;
  b.heartbeat_rtt.sum_ns = 900'000;
  b.has_rudp = 1;
  b.rudp_lost_packets = 6;
  TextWriter w2;
  const ServerSample again[] = {a, b};
  write_server_metrics(w2, again);
  const Exposition e2 = parse(w2.text());
  EXPECT_EQ(e2.samples.at("sluice_heartbeat_drops_total{worker=\"1\",reason=\"timeout\"}"), 2);
  EXPECT_EQ(e2.samples.at("sluice_heartbeat_rtt_seconds_bucket{worker=\"1\",le=\"0.001\"}"), 1);
  EXPECT_NEAR(e2.samples.at("sluice_heartbeat_rtt_seconds_sum{worker=\"1\"}"), 0.0009, 1e-12);
  EXPECT_EQ(e2.samples.at("sluice_rudp_lost_packets_total{worker=\"1\"}"), 6);
  EXPECT_EQ(e2.samples.at("sluice_rudp_lost_packets_total{worker=\"0\"}"), 0);
}

TEST(HttpRequest, Parses) {
  using S = HttpRequest::Status;
  HttpRequest r = parse_http_request("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET", 8192);
  ASSERT_EQ(r.status, S::kOk) << r.error;
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/metrics");
  EXPECT_TRUE(r.keep_alive);
  EXPECT_EQ(r.length, std::string("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").size());

  r = parse_http_request("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n", 8192);
  ASSERT_EQ(r.status, S::kOk);
  EXPECT_FALSE(r.keep_alive);
  r = parse_http_request("GET / HTTP/1.0\r\n\r\n", 8192);
  ASSERT_EQ(r.status, S::kOk);
  EXPECT_FALSE(r.keep_alive);
  r = parse_http_request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 8192);
  EXPECT_TRUE(r.keep_alive);

  EXPECT_EQ(parse_http_request("GET /metrics HTTP/1.1\r\nHost: a\r\n", 8192).status, S::kIncomplete);
  EXPECT_EQ(parse_http_request("", 8192).status, S::kIncomplete);
  for (const char* bad : {"GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics HTTP/2\r\n\r\n",
                          "GET metrics HTTP/1.1\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
                          "G(T / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n",
                          "GET / HTTP/1.1\r\n: v\r\n\r\n",
                          "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                          "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                          "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                          "\x01\x02\r\n\r\n"}) {
    EXPECT_EQ(parse_http_request(bad, 8192).status, S::kBad) << bad;
  }
  // Bounded: a head that never ends, or ends too late.
  EXPECT_EQ(parse_http_request(std::string(9000, 'a'), 8192).status, S::kBad);
  EXPECT_EQ(parse_http_request("GET / HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n", 8192)
                .status,
            S::kBad);
  EXPECT_EQ(parse_http_request(std::string(100, 'a'), 8192).status, S::kIncomplete);
}

TEST(LoopLag, IdleSlopIsNotLagAndBusyTimeIs) {
  using std::chrono::milliseconds;
  const Clock::time_point due = Clock::time_point{} + std::chrono::seconds(10);
  // Idle: woke 1.5 ms past the deadline (tick rounding), ran the timer 20 µs
  // into the iteration.
  EXPECT_EQ(LagProbe::lag(due, due + std::chrono::microseconds(1500),
                          due + std::chrono::microseconds(1520)),
            std::chrono::microseconds(20));
  // Busy before the wait: began 50 ms late; counted from the slop on.
  EXPECT_EQ(LagProbe::lag(due, due + milliseconds(50), due + milliseconds(50)),
            milliseconds(48));
  // Busy in the iteration's own IO dispatch: 30 ms of callbacks first.
  EXPECT_EQ(LagProbe::lag(due, due + milliseconds(1), due + milliseconds(31)), milliseconds(30));
}

}  // namespace
}  // namespace sluice
