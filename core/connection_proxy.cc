// Connection's PROXY protocol layer (see "PROXY protocol" in
// core/connection.h and docs/OPERATIONS.md): the balancer's header is
// parsed off the front of the stream before TLS or the codec see a byte,
// the connection takes the client address it names, and whatever came
// after it in the same read goes on unchanged.
#include <cerrno>
#include <memory>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/buffer.h"
#include "core/connection.h"
#include "core/event_loop.h"
#include "core/log.h"
#include "core/proxy_protocol.h"

namespace sluice {

void Connection::proxy_input(std::string_view data) {
  if (state_ != State::kOpen) {  // bad, refused or stopping: discarded
    consume_input(data);
    return;
  }
  // A header split over reads waits in leftover_ (nothing else uses it
  // yet); the parse starts over from its first byte each time.
  const bool joined = !leftover_.empty();
  if (joined) leftover_.append(data);
  const std::string_view view = joined ? leftover_.view() : data;
  const ProxyParse r = parse_proxy_header(view, shared_.proxy_max_header);
  if (r.status == ProxyStatus::kNeedMore) {
    if (!joined) leftover_.append(data);
    return;
  }
  const bool plain = r.status == ProxyStatus::kError &&
                     r.error == ProxyError::kNotProxy &&
                     shared_.proxy == ProxyProtocol::kOptional;
  if (r.status == ProxyStatus::kError && !plain) {
    leftover_.retrieve_all();
    leftover_.release();
    proxy_fail(to_string(r.error), false, false);
    return;
  }
  // What follows the header is the protocol's. If it sits in leftover_,
  // take the storage out first: the layers above keep their own
  // incomplete frame there.
  Buffer held;
  if (joined) held = std::move(leftover_);
  const std::string_view rest = (joined ? held.view() : data).substr(r.consumed);
  if (!proxy_accept(plain ? nullptr : &r.header) || rest.empty()) return;
  if (tls_) {
    tls_input(rest);
  } else {
    plain_input(rest);
  }
}

// The header is in (null: optional mode, and none was sent). False: the
// connection is closing (refused by the owner, or closed from on_open).
bool Connection::proxy_accept(const ProxyHeader* header) {
  stop_idle();  // the header's deadline
  const PeerAddr via = peer_;
  if (header && header->proxied) peer_ = header->source;
  if (!shared_.owner.proxy_done(*this)) {
    close_detail_ = std::make_unique<std::string>("refused after the PROXY header");
    close_with(CloseReason::kRefused, 0, true);
    return false;  // still proxy_pending(): the handler never hears of it
  }
  proxy_pending_ = false;
  if (header) {
    spdlog::debug("conn #{} {}: PROXY v{} header from {}{}", id_, peer(), header->version,
                  via.str(), header->proxied ? "" : " (keeps the socket's address)");
  }
  if (!tls_) proxy_open();  // with TLS, on_open follows the handshake
  return state_ == State::kOpen;
}

void Connection::proxy_open() {
  if (idle_on_) {
    idle_.start(idle_.options(), loop_.clock());  // the clocks start now
    arm_idle();
  }
  handler().on_open(*this);
}

// No usable header: one rate-limited line (none when quiet) and a close.
// A graceful one unless drop_output (nothing is owed to such a peer
// either way: the handler never heard of it).
void Connection::proxy_fail(const std::string& why, bool quiet, bool drop_output) {
  close_detail_ = std::make_unique<std::string>("PROXY protocol: " + why);
  // Peers choose to fail: at most one line a second per loop thread.
  thread_local LogLimiter limiter;
  if (uint64_t skipped = 0; !quiet && limiter.allow(loop_.now(), &skipped)) {
    spdlog::info("conn #{} {}: {}; closing ({} more PROXY protocol failures not logged)", id_,
                 peer(), *close_detail_, skipped);
  } else {
    spdlog::debug("conn #{} {}: {}; closing", id_, peer(), *close_detail_);
  }
  close_with(CloseReason::kRefused, -EPROTO, drop_output);
}

void Connection::on_proxy_deadline() {
  idle_timer_ = 0;
  if (!proxy_pending_ || state_ != State::kOpen) return;
  const bool partial = !leftover_.empty();
  leftover_.retrieve_all();
  leftover_.release();
  // A slowloris: nothing to flush to it, so no graceful close either.
  proxy_fail(fmt::format("{} within {} ms", partial ? "header not complete" : "no header",
                         shared_.proxy_timeout.count()),
             false, true);
}

}  // namespace sluice
