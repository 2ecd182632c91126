#include "core/metrics_server.h"

#include <cctype>
#include <charconv>

#include <spdlog/spdlog.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/server.h"

namespace sluice {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether a comma-separated header value holds `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

HttpRequest parse_http_request(std::string_view buf, size_t max_head) {
  HttpRequest r;
  auto bad = [&r](std::string why) {
    r.status = HttpRequest::Status::kBad;
    r.error = std::move(why);
    return r;
  };
  const size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (buf.size() > max_head) return bad("request head over " + std::to_string(max_head) + " bytes");
    return r;  // incomplete
  }
  if (end + 4 > max_head) return bad("request head over " + std::to_string(max_head) + " bytes");
  std::string_view head = buf.substr(0, end);
  // Request line: METHOD SP TARGET SP HTTP/1.x
  const size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  head = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 2);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return bad("malformed request line");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty()) return bad("empty method");
  for (char c : method) {
    if (!token_char(c)) return bad("malformed method");
  }
  if (target.empty() || target.front() != '/') return bad("malformed target");
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("malformed target");
  }
  bool keep_alive;
  if (version == "HTTP/1.1") {
    keep_alive = true;
  } else if (version == "HTTP/1.0") {
    keep_alive = false;
  } else {
    return bad("unsupported version");
  }
  while (!head.empty()) {
    const size_t e = head.find("\r\n");
    const std::string_view h = head.substr(0, e);
    head = e == std::string_view::npos ? std::string_view{} : head.substr(e + 2);
    const size_t colon = h.find(':');
    if (colon == 0 || colon == std::string_view::npos) return bad("malformed header");
    const std::string_view name = h.substr(0, colon);
    for (char c : name) {
      if (!token_char(c)) return bad("malformed header name");
    }
    const std::string_view value = trim(h.substr(colon + 1));
    if (iequals(name, "Connection")) {
      if (has_token(value, "close")) keep_alive = false;
      if (has_token(value, "keep-alive")) keep_alive = true;
    } else if (iequals(name, "Transfer-Encoding")) {
      return bad("request body (Transfer-Encoding)");
    } else if (iequals(name, "Content-Length")) {
      uint64_t n = 0;
      auto res = std::from_chars(value.data(), value.data() + value.size(), n);
      if (res.ec != std::errc() || res.ptr != value.data() + value.size()) {
        return bad("malformed Content-Length");
      }
      if (n != 0) return bad("request body (Content-Length)");
    }
  }
  r.status = HttpRequest::Status::kOk;
  r.length = end + 4;
  r.method = method;
  r.path = target.substr(0, target.find('?'));
  r.keep_alive = keep_alive;
  return r;
}

class MetricsServer::Handler final : public sluice::Handler {
 public:
  explicit Handler(std::function<std::string()> render) : render_(std::move(render)) {}

  void on_message(Connection& conn, std::string_view data) override {
    std::string& in = conn.state<Input>().bytes;
    in.append(data);
    size_t used = 0;
    while (conn.is_open()) {
      const HttpRequest req =
          parse_http_request(std::string_view(in).substr(used), kMaxRequest);
      if (req.status == HttpRequest::Status::kIncomplete) break;
      if (req.status == HttpRequest::Status::kBad) {
        if (uint64_t skipped = 0; log_.allow(conn.loop().clock(), &skipped)) {
          spdlog::warn("metrics: bad request from {}: {} ({} more since last report)",
                       conn.peer(), req.error, skipped);
        }
        reply(conn, "400 Bad Request", "text/plain", "bad request\n", false, false);
        in.clear();
        return;
      }
      used += req.length;
      const bool head = req.method == "HEAD";
      if (req.method != "GET" && !head) {
        reply(conn, "405 Method Not Allowed", "text/plain", "GET /metrics only\n", head,
              req.keep_alive, "Allow: GET, HEAD\r\n");
      } else if (req.path != "/metrics") {
        reply(conn, "404 Not Found", "text/plain", "not found: try /metrics\n", head,
              req.keep_alive);
      } else {
        reply(conn, "200 OK", metrics::kContentType, render_(), head, req.keep_alive);
      }
    }
    in.erase(0, used);
  }

 private:
  struct Input {
    std::string bytes;  // an incomplete request head (bounded by kMaxRequest)
  };

  static void reply(Connection& conn, std::string_view status, std::string_view type,
                    const std::string& body, bool head, bool keep_alive,
                    std::string_view extra = {}) {
    std::string out;
    out.reserve(160 + (head ? 0 : body.size()));
    out += "HTTP/1.1 ";
    out += status;
    out += "\r\nContent-Type: ";
    out += type;
    out += "\r\nContent-Length: ";
    out += std::to_string(body.size());
    out += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
    out += extra;
    out += "\r\n";
    if (!head) out += body;
    conn.send(out);
    if (!keep_alive) conn.close();
  }

  std::function<std::string()> render_;
  LogLimiter log_;  // one loop: this handler's only thread
};

MetricsServer::MetricsServer(MetricsOptions options, std::function<std::string()> render)
    : options_(std::move(options)), handler_(std::make_unique<Handler>(std::move(render))) {}

MetricsServer::~MetricsServer() { stop(); }

int MetricsServer::start(std::string* error) {
  if (server_) return 0;
  ServerOptions so;
  so.host = options_.host;
  so.port = options_.port;
  so.io = options_.io;
  so.threads = 1;
  so.max_connections = 64;
  so.io_options.max_conns = 64;
  so.idle.all = std::chrono::seconds(30);
  so.idle_close = true;
  so.stop_deadline = std::chrono::milliseconds(200);
  so.limits.linger_timeout = std::chrono::milliseconds(500);
  auto server = std::make_unique<Server>(so, *handler_);
  if (int rc = server->start(error); rc < 0) {
    if (error) *error = "metrics: " + *error;
    return rc;
  }
  server_ = std::move(server);
  return 0;
}

void MetricsServer::stop() {
  if (server_) server_->stop();
  server_.reset();
}

uint16_t MetricsServer::port() const { return server_ ? server_->port() : 0; }

}  // namespace sluice
