#include "core/client.h"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string_view>

#include <spdlog/spdlog.h>

#include "core/event_loop.h"

namespace sluice {
namespace {
// Client connection ids: a range of their own, so logs never confuse them
// with a Server's in the same process.
std::atomic<uint64_t> next_client_conn_id{uint64_t{1} << 48};
}  // namespace

Client::Client(EventLoop& loop, Connector& connector, Handler& handler,
               const codec::Codec* codec, ClientOptions options)
    : loop_(loop),
      connector_(connector),
      handler_(handler),
      codec_(codec),
      options_(std::move(options)) {}

Client::~Client() {
  if (lookup_ != 0) connector_.resolver().cancel(lookup_);
  if (request_ != 0) connector_.cancel(request_);
  if (!conns_.empty()) {
    spdlog::debug("client: destroyed with {} connections not released", conns_.size());
  }
}

bool Client::connect(ConnectDone done) {
  // A connection still flushing or detaching does not block a new one.
  if (connecting() || (current_ != nullptr && current_->is_open())) return false;
  std::vector<SocketAddress> addrs;
  if (resolve_numeric(options_.host, options_.port, SOCK_STREAM, &addrs) == 0) {
    resolve_failure_.clear();
    start_connect(std::move(addrs), std::move(done));
    return true;
  }
  // A name: looked up on the Resolver's thread, never on this loop. `this`
  // is safe for the reason given in start_connect().
  lookup_ = connector_.resolver().resolve(
      loop_, options_.host, options_.port, SOCK_STREAM,
      [this, done = std::move(done)](Resolver::Result r) mutable {
        lookup_ = 0;
        resolve_failure_ = r.error;
        if (r.err < 0) {
          spdlog::debug("client: {}: {}", options_.host, r.error);
          done(r.err);
          return;
        }
        start_connect(std::move(r.addresses), std::move(done));
      });
  return true;
}

void Client::start_connect(std::vector<SocketAddress> addrs, ConnectDone done) {
  // `this` is safe: ~Client and abort() cancel the request on the loop
  // thread, after which the Connector never runs the callback.
  request_ = connector_.connect(loop_, std::move(addrs), options_.connect_timeout, options_.tcp,
                                [this, done = std::move(done)](int fd_or_err) {
                                  request_ = 0;
                                  if (fd_or_err < 0) {
                                    done(fd_or_err);
                                  } else {
                                    adopt(fd_or_err, done);
                                  }
                                });
}

void Client::adopt(int fd, const ConnectDone& done) {
  const uint64_t id = next_client_conn_id.fetch_add(1, std::memory_order_relaxed);
  auto owned = std::make_unique<Connection>(loop_, fd, id, shared_);
  Connection& conn = *owned;
  if (options_.idle.enabled()) conn.set_idle(options_.idle);
  conns_.push_back(std::move(owned));
  current_ = &conn;
  if (int rc = conn.start(); rc < 0) {  // start() closed the fd
    current_ = nullptr;
    for (auto it = conns_.begin(); it != conns_.end(); ++it) {
      if (it->get() == &conn) {
        loop_.destroy_later(std::move(*it));
        conns_.erase(it);
        break;
      }
    }
    done(rc);
    return;
  }
  if (options_.tls) {
    tls_pending_ = done;  // tls_done() reports how the handshake ended
    return;
  }
  // on_open may already have closed it; the caller learns that from
  // on_close, which has run by now.
  done(0);
}

void Client::tls_done(Connection& conn, TlsEvent event) {
  // Only the latest connection can be in its handshake (connect() waits
  // for it), and it may be released already when a failure aborted it
  // (conn itself lives to the end of this loop iteration).
  if (!tls_pending_ || event == TlsEvent::kTruncated) return;
  ConnectDone done = std::move(tls_pending_);
  tls_pending_ = nullptr;
  const bool ok = event == TlsEvent::kDone || event == TlsEvent::kResumed;
  // close_detail() reads "TLS: <OpenSSL's reason>" for a failed handshake.
  std::string_view why = ok ? std::string_view() : conn.close_detail();
  if (why.starts_with("TLS: ")) why.remove_prefix(5);
  tls_failure_ = why;
  done(ok ? 0 : event == TlsEvent::kTimedOut ? -ETIMEDOUT : -EPROTO);
}

void Client::abort() {
  if (lookup_ != 0) {
    connector_.resolver().cancel(lookup_);
    lookup_ = 0;
  }
  if (request_ != 0) {
    connector_.cancel(request_);
    request_ = 0;
  }
  tls_pending_ = nullptr;  // like a cancelled attempt: done is not called
  if (current_ != nullptr) current_->abort();
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

}  // namespace sluice
