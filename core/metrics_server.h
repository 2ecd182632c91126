// MetricsServer: serves GET /metrics in the Prometheus text format over a
// small HTTP/1.1 responder, on a sluice Server of its own (one loop, its
// own port), so a scrape never runs on, or waits for, the loops of the
// server it describes.
//
//   sluice::MetricsServer metrics({.port = 9100}, [&] {
//     sluice::metrics::TextWriter w;
//     sluice::write_server_metrics(w, {sluice::sample_server(server)});
//     return w.take();
//   });
//   if (metrics.start(&err) < 0) ...
//
// HTTP: GET (or HEAD) /metrics -> 200, Content-Type text/plain;
// version=0.0.4; any other path 404; another method 405; a request that
// does not parse, carries a body, or whose head exceeds kMaxRequest bytes
// -> 400 and close. Keep-alive as HTTP/1.1 says (HTTP/1.0 or "Connection:
// close": closed after the reply); pipelined requests are answered in
// order. A connection silent for 30 s is closed; at most 64 at once. Bad
// requests are logged at most once a second (the responder faces peers).
//
// Thread rules: start(), stop() and the destructor on one thread that is
// not the metrics loop (typically main); port() any thread after start().
// `render` runs on the metrics loop's thread, once per scrape: it must
// only read what other threads publish (atomics: Server's counters,
// core/loop_stats.h, a worker's shared page) and must not block. Stop the
// MetricsServer before what `render` reads goes away.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace sluice {

class Server;

struct MetricsOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (see port())
  std::string io{};   // back end of the metrics loop; empty: the default
};

// One HTTP request head parsed from the start of a buffer.
struct HttpRequest {
  enum class Status { kIncomplete, kOk, kBad };
  Status status = Status::kIncomplete;
  size_t length = 0;  // bytes of the head, with its blank line (kOk)
  std::string method;
  std::string path;   // without the query string
  bool keep_alive = false;
  std::string error;  // kBad: why
};

// Parses the request head at the start of `buf` (pure; no sockets). A head
// longer than `max_head` bytes, a request line or header that does not
// parse, or a body (Content-Length > 0, Transfer-Encoding) is kBad.
HttpRequest parse_http_request(std::string_view buf, size_t max_head);

class MetricsServer {
 public:
  static constexpr size_t kMaxRequest = 8192;

  MetricsServer(MetricsOptions options, std::function<std::string()> render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // 0, or -errno and *error (address in use ...).
  int start(std::string* error);
  void stop();
  uint16_t port() const;

 private:
  class Handler;
  MetricsOptions options_;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<Server> server_;
};

}  // namespace sluice
