#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/event_loop.h"
#include "core/net.h"
#include "rudp/endpoint.h"
#include "rudp/rudp.h"

namespace sluice::rudp {

namespace {

// host:port as a socket address; false for a host that is not numeric.
bool resolve(const std::string& host, uint16_t port, sockaddr_storage* out, socklen_t* len) {
  const std::string h = host == "localhost" ? "127.0.0.1" : host;
  *out = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

}  // namespace

Client::Client(EventLoop& loop, Handler& handler, ClientOptions options)
    : loop_(loop),
      handler_(handler),
      options_(std::move(options)),
      codec_(message_codec(options_.rudp)),
      shared_{handler_, *this, codec_.get(), options_.limits} {}

Client::~Client() {
  // Connections go first: their channels point into the endpoint. While
  // the loop runs they are aborted (released at once: rudp detaches
  // synchronously) and destroyed by the loop, after their queued tasks.
  if (loop_.looping()) {
    std::vector<Connection*> open;
    for (auto& c : conns_) open.push_back(c.get());
    for (Connection* c : open) {
      if (c->alive()) c->abort();
    }
  }
  conns_.clear();
  Endpoint::retire(std::move(endpoint_));
}

uint16_t Client::local_port() const { return endpoint_ ? endpoint_->local_port() : 0; }

void Client::release_socket(std::function<void()> released) {
  if (!endpoint_ || endpoint_->released()) {
    if (released) released();
    return;
  }
  // A pending attempt ends with done(-ECANCELED).
  endpoint_->close_when_done(std::move(released));
}

bool Client::socket_released() const { return !endpoint_ || endpoint_->released(); }

bool Client::connect(ConnectDone done) {
  if (connecting_ || (current_ && current_->is_open())) return false;
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!resolve(options_.host, options_.port, &addr, &len)) {
    done(-EINVAL);
    return true;
  }
  if (endpoint_ && endpoint_->released()) {  // after release_socket(): a new one
    endpoint_.reset();
    shared_.ops = nullptr;
  }
  if (!endpoint_) {
    const int fd = bind_udp(addr.ss_family == AF_INET6 ? "::" : "0.0.0.0", 0, {});
    if (fd < 0) {
      done(fd);
      return true;
    }
    endpoint_ = std::make_unique<Endpoint>(loop_, fd, options_.rudp, Endpoint::Role::kClient);
    if (int rc = endpoint_->start(); rc < 0) {
      endpoint_.reset();
      done(rc);
      return true;
    }
    shared_.ops = endpoint_.get();
  }
  connecting_ = true;
  const PeerAddr peer = PeerAddr::from(reinterpret_cast<const sockaddr*>(&addr), len);
  endpoint_->connect(reinterpret_cast<const sockaddr*>(&addr), len,
                     [this, peer, done = std::move(done)](int rc, Session* s) {
    connecting_ = false;
    if (rc < 0) {
      done(rc);
      return;
    }
    auto owned = std::make_unique<Connection>(loop_, peer, next_id_++, shared_);
    Connection& conn = *owned;
    if (options_.idle.enabled()) conn.set_idle(options_.idle);
    conns_.push_back(std::move(owned));
    current_ = &conn;
    endpoint_->bind_next(s);
    if (int rc2 = conn.start(); rc2 < 0) {
      current_ = nullptr;
      loop_.destroy_later(std::move(conns_.back()));
      conns_.pop_back();
      done(rc2);
      return;
    }
    done(0);
  });
  return true;
}

void Client::abort() {
  if (connecting_) {
    // Forget the attempt: a fresh endpoint (socket) next time.
    connecting_ = false;
    Endpoint::retire(std::move(endpoint_));
    shared_.ops = nullptr;
  }
  if (current_ && current_->alive()) current_->abort();
}

void Client::release(Connection& conn) {
  if (current_ == &conn) current_ = nullptr;
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    if (it->get() == &conn) {
      loop_.destroy_later(std::move(*it));
      conns_.erase(it);
      return;
    }
  }
}

}  // namespace sluice::rudp
