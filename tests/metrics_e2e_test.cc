// The /metrics endpoint end to end, in process: a Server with a length
// codec and an echo handler, a MetricsServer rendering its sample, real
// sockets making connections, messages and a bad frame, then scrapes over
// HTTP checked value by value; and the responder's answers to other paths,
// other methods and garbage.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "codec/factory.h"
#include "core/metrics_server.h"
#include "core/server.h"
#include "core/server_metrics.h"
#include "tests/exposition.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

class Echo final : public Handler {
 public:
  void on_message(Connection& conn, std::string_view data) override { conn.send(data); }
};

// Sends `request` on a fresh connection and reads until the server closes
// it (or 5 s pass).
std::string http(uint16_t port, const std::string& request) {
  const int fd = testing::connect_local(port);
  if (fd < 0) return "connect failed";
  testing::set_recv_timeout(fd, 5000);
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string body_of(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

testing::Exposition scrape(uint16_t port) {
  const std::string resp = http(port, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(resp.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << resp;
  EXPECT_NE(resp.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << resp;
  testing::Exposition e;
  std::string error;
  EXPECT_TRUE(testing::parse_exposition(body_of(resp), &e, &error)) << error;
  return e;
}

double value(const testing::Exposition& e, const std::string& key) {
  auto it = e.samples.find(key);
  EXPECT_NE(it, e.samples.end()) << key;
  return it == e.samples.end() ? -1 : it->second;
}

// Polls until `key` reaches `want` (the loops count asynchronously to the
// clients' reads: a bounded wait, never a sleep-and-hope).
void await_value(uint16_t port, const std::string& key, double want) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  double got = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    const testing::Exposition e = scrape(port);
    auto it = e.samples.find(key);
    got = it == e.samples.end() ? -1 : it->second;
    if (got == want) return;
    std::this_thread::sleep_for(20ms);
  }
  ADD_FAILURE() << key << " = " << got << ", want " << want;
}

TEST(MetricsE2e, CountsWhatPeersDid) {
  Echo handler;
  ServerOptions opts;
  opts.threads = 2;
  opts.lag_probe = 10ms;
  codec::CodecOptions copts;
  copts.name = "length";
  copts.max_frame = 1024;
  Server server(opts, handler, codec::make_codec(copts));
  std::string error;
  ASSERT_EQ(server.start(&error), 0) << error;
  MetricsServer metrics({}, [&server] {
    const ServerSample s = sample_server(server);
    metrics::TextWriter w;
    write_server_metrics(w, std::span<const ServerSample>(&s, 1));
    return w.take();
  });
  ASSERT_EQ(metrics.start(&error), 0) << error;
  const uint16_t mport = metrics.port();

  // Three clients, each echoing 4 messages of 100 bytes.
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) {
    const int fd = testing::connect_local(server.port());
    ASSERT_GE(fd, 0);
    testing::set_recv_timeout(fd, 5000);
    fds.push_back(fd);
  }
  const std::string payload(100, 'x');
  const std::string framed = testing::frame(payload);
  for (int fd : fds) {
    for (int m = 0; m < 4; ++m) {
      ASSERT_EQ(::send(fd, framed.data(), framed.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(framed.size()));
      ASSERT_EQ(testing::read_n(fd, framed.size()), framed);
    }
  }
  // One bad frame: longer than max_frame.
  const int bad = testing::connect_local(server.port());
  ASSERT_GE(bad, 0);
  testing::set_recv_timeout(bad, 5000);
  const std::string too_long = testing::frame(std::string(2000, 'y'));
  ::send(bad, too_long.data(), too_long.size(), MSG_NOSIGNAL);
  EXPECT_TRUE(testing::wait_closed(bad, 5000));
  ::close(bad);

  await_value(mport, "sluice_frame_errors_total{worker=\"0\"}", 1);
  await_value(mport, "sluice_connections_open{worker=\"0\"}", 3);
  const testing::Exposition e = scrape(mport);
  EXPECT_EQ(value(e, "sluice_connections_accepted_total{worker=\"0\"}"), 4);
  EXPECT_EQ(value(e, "sluice_received_messages_total{worker=\"0\"}"), 12);
  EXPECT_EQ(value(e, "sluice_sent_messages_total{worker=\"0\"}"), 12);
  // 12 echoed frames in and out, and what the bad connection sent in.
  EXPECT_EQ(value(e, "sluice_sent_bytes_total{worker=\"0\"}"), 12.0 * framed.size());
  const double in = value(e, "sluice_received_bytes_total{worker=\"0\"}");
  EXPECT_GE(in, 12.0 * framed.size() + 4);
  EXPECT_LE(in, 12.0 * framed.size() + too_long.size());
  EXPECT_EQ(value(e, "sluice_connections_refused_total{worker=\"0\",reason=\"max_connections\"}"),
            0);
  EXPECT_EQ(value(e, "sluice_accept_errors_total{worker=\"0\"}"), 0);
  EXPECT_EQ(e.types.at("sluice_loop_lag_seconds"), "histogram");

  for (int fd : fds) ::close(fd);
  await_value(mport, "sluice_connections_open{worker=\"0\"}", 0);
  // Both loops probe every 10 ms: samples arrive.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (value(scrape(mport), "sluice_loop_lag_seconds_count{worker=\"0\"}") < 4 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GE(value(scrape(mport), "sluice_loop_lag_seconds_count{worker=\"0\"}"), 4);
  metrics.stop();
  server.stop();
}

TEST(MetricsE2e, MaxConnectionsRefusalsAreCounted) {
  Echo handler;
  ServerOptions opts;
  opts.max_connections = 1;
  Server server(opts, handler);
  std::string error;
  ASSERT_EQ(server.start(&error), 0) << error;
  MetricsServer metrics({}, [&server] {
    const ServerSample s = sample_server(server);
    metrics::TextWriter w;
    write_server_metrics(w, std::span<const ServerSample>(&s, 1));
    return w.take();
  });
  ASSERT_EQ(metrics.start(&error), 0) << error;
  const int a = testing::connect_local(server.port());
  await_value(metrics.port(), "sluice_connections_open{worker=\"0\"}", 1);
  const int b = testing::connect_local(server.port());
  ASSERT_GE(b, 0);
  EXPECT_TRUE(testing::wait_closed(b, 5000));
  await_value(metrics.port(),
              "sluice_connections_refused_total{worker=\"0\",reason=\"max_connections\"}", 1);
  ::close(a);
  ::close(b);
  metrics.stop();
  server.stop();
}

TEST(MetricsE2e, HttpAnswers) {
  int renders = 0;
  MetricsServer metrics({}, [&renders] {
    ++renders;
    return std::string("# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n");
  });
  std::string error;
  ASSERT_EQ(metrics.start(&error), 0) << error;
  const uint16_t port = metrics.port();
  EXPECT_EQ(http(port, "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n").rfind(
                "HTTP/1.1 404 ", 0),
            0u);
  EXPECT_EQ(http(port, "DELETE /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
                .rfind("HTTP/1.1 405 ", 0),
            0u);
  // Garbage: 400, then the connection is closed (http() returns at EOF).
  EXPECT_EQ(http(port, "\x16\x03\x01 hello\r\n\r\n").rfind("HTTP/1.1 400 ", 0), 0u);
  // A head that never ends is cut off at the bound, not buffered forever.
  EXPECT_EQ(http(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a')).rfind(
                "HTTP/1.1 400 ", 0),
            0u);
  // HEAD: the headers only.
  const std::string head = http(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_TRUE(body_of(head).empty());
  // Keep-alive and pipelining: two requests on one connection, two answers.
  const std::string two = http(port,
                               "GET /metrics HTTP/1.1\r\n\r\n"
                               "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
  size_t answers = 0;
  for (size_t at = two.find("HTTP/1.1 200 OK"); at != std::string::npos;
       at = two.find("HTTP/1.1 200 OK", at + 1)) {
    ++answers;
  }
  EXPECT_EQ(answers, 2u) << two;
  metrics.stop();
  EXPECT_EQ(renders, 3);  // HEAD renders too (the length is the body's)
}

}  // namespace
}  // namespace sluice
