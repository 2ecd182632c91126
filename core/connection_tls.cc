// Connection's TLS layer (see "TLS" in core/connection.h and docs/TLS.md):
// ciphertext from the back end goes through the TlsEngine into
// plain_input(); plaintext from send() is queued and encrypted at each
// flush into output(), which the back end sends like any bytes. The
// handshake runs on the loop, a step per input, bounded by a deadline.
#include <cerrno>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/connection.h"
#include "core/event_loop.h"
#include "core/log.h"
#include "core/tls_state.h"

namespace sluice {

namespace {
// Plaintext is decrypted into one buffer per loop thread (as input lands
// in one read buffer per loop): a connection keeps none of its own.
constexpr size_t kPlainChunk = 64 << 10;
char* plain_buffer() {
  thread_local std::unique_ptr<char[]> buf(new char[kPlainChunk]);
  return buf.get();
}
}  // namespace

bool Connection::handler_open() const {
  return !proxy_pending_ && (!tls_ || tls_->opened);
}

bool Connection::tls_established() const { return tls_ && tls_->opened; }

bool Connection::tls_truncated() const { return tls_ && tls_->truncated; }

// The peer's TCP EOF (on_eof) on an established connection: without its
// close_notify first, and with our side still open, the stream may have
// been cut short. Our close_notify sent first is the ordinary case of a
// peer that closes without answering it (RFC 8446 section 6.1 allows it).
void Connection::tls_check_truncation() {
  if (!tls_->opened || tls_->failed || tls_->peer_notified || tls_->notified ||
      state_ != State::kOpen) {
    return;
  }
  tls_->truncated = true;
  close_detail_ = std::make_unique<std::string>("TLS: peer closed without close_notify");
  // Common from careless peers, so not logged above debug: counted instead.
  spdlog::debug("conn #{} {}: peer closed without close_notify (truncated)", id_, peer());
  shared_.owner.tls_done(*this, TlsEvent::kTruncated);
}

std::string Connection::tls_summary() const {
  if (!tls_ || !tls_->opened) return "";
  const TlsEngine& e = *tls_->engine;
  std::string s = e.version() + " " + e.cipher();
  if (const std::string alpn = e.alpn(); !alpn.empty()) s += " alpn=" + alpn;
  if (e.resumed()) s += " resumed";
  return s;
}

bool Connection::holds_buffers() const {
  return leftover_.allocated() || output().allocated() || (tls_ && tls_->plain.allocated());
}

Buffer& Connection::send_queue() { return tls_ ? tls_->plain : output(); }

int Connection::tls_start() {
  std::string error;
  auto engine = TlsEngine::make(*shared_.tls, shared_.tls_host, &error);
  if (!engine) {
    spdlog::warn("conn #{} {}: {}", id_, peer(), error);
    return -ENOMEM;
  }
  tls_ = std::make_unique<Tls>();
  tls_->engine = std::move(engine);
  return 0;
}

// Ciphertext the engine appended to output() since `before`: owed like
// any output (handshake flights, alerts and records alike).
void Connection::tls_wrote(size_t before) {
  const size_t n = output().readable() - before;
  if (n == 0) return;
  pending_ += n;
  schedule_flush();
}

void Connection::tls_input(std::string_view data) {
  if (state_ != State::kOpen || tls_->failed) {
    consume_input(data);  // closing: read and discarded, as without TLS
    return;
  }
  if (peer_shut_) return;  // after its close_notify nothing counts
  char* buf = plain_buffer();
  std::string_view in = data;
  for (;;) {
    const bool was_done = tls_->engine->handshake_done();
    const size_t before = output().readable();
    size_t n = 0;
    const TlsEngine::Status s = tls_->engine->read(&in, output(), buf, kPlainChunk, &n);
    tls_wrote(before);
    if (!was_done && tls_->engine->handshake_done()) tls_open();
    if (n > 0) plain_input(std::string_view(buf, n));
    if (s == TlsEngine::Status::kError) {
      tls_fail(tls_->engine->error(), TlsEvent::kFailed, false);
      return;
    }
    if (s == TlsEngine::Status::kClosed) {
      tls_->peer_notified = true;
      on_eof();  // close_notify: the peer's orderly end of its stream
      return;
    }
    if (state_ != State::kOpen) {  // the handler closed: the rest is discarded
      if (!in.empty()) discard_input(in.size());
      return;
    }
    if (s == TlsEngine::Status::kNeedInput) return;
  }
}

void Connection::tls_open() {
  if (tls_->deadline != 0) {
    loop_.cancel(tls_->deadline);
    tls_->deadline = 0;
  }
  tls_->opened = true;
  spdlog::debug("conn #{} {}: {}", id_, peer(), tls_summary());
  if (idle_on_) {
    idle_.start(idle_.options(), loop_.clock());  // the clocks start now
    arm_idle();
  }
  handler().on_open(*this);
  // Sends queued during the handshake (a broadcast) go out now.
  if (!tls_->plain.empty()) schedule_flush();
  shared_.owner.tls_done(*this, tls_->engine->resumed() ? TlsEvent::kResumed : TlsEvent::kDone);
}

// A failed handshake (or a bad record later): one rate-limited line, and a
// close that still flushes the alert OpenSSL queued (unless drop_output).
void Connection::tls_fail(const std::string& why, TlsEvent event, bool drop_output) {
  tls_->failed = true;
  close_detail_ = std::make_unique<std::string>("TLS: " + why);
  // Peers choose to fail: at most one line a second per loop thread.
  thread_local LogLimiter limiter;
  if (uint64_t skipped = 0; limiter.allow(loop_.now(), &skipped)) {
    spdlog::info("conn #{} {}: {}{}; closing ({} more TLS failures not logged)", id_, peer(),
                 tls_->opened ? "" : "handshake failed: ", *close_detail_, skipped);
  }
  // Plaintext waiting for a handshake that will not come is dropped.
  pending_ -= tls_->plain.readable();
  tls_->plain.release();
  const bool opened = tls_->opened;
  close_with(CloseReason::kPeerReset, event == TlsEvent::kTimedOut ? -ETIMEDOUT : -EPROTO,
             drop_output);
  // After the close: a client reconnecting from its done callback must
  // find this connection closing. `this` lives to the end of the iteration.
  if (!opened) shared_.owner.tls_done(*this, event);
}

void Connection::on_tls_deadline() {
  tls_->deadline = 0;
  if (tls_->opened || tls_->failed || !alive()) return;
  // A slowloris: nothing to flush to it, so no graceful close either.
  tls_fail(fmt::format("handshake not done within {} ms",
                       shared_.tls->options().handshake_timeout.count()),
           TlsEvent::kTimedOut, true);
}

// At each flush: everything queued becomes records in one SSL_write.
void Connection::tls_encrypt() {
  if (!tls_->opened || tls_->failed || tls_->plain.empty()) return;
  const size_t plain = tls_->plain.readable();
  const size_t before = output().readable();
  const bool ok = tls_->engine->write(tls_->plain.view(), output());
  tls_->plain.retrieve_all();
  tls_->plain.release();
  // pending_ counted the plaintext; from now on it counts the records.
  pending_ = pending_ - plain + (output().readable() - before);
  if (!ok) {
    // `this` stays valid until the end of the iteration (destroy_later).
    loop_.defer([this] {
      if (alive()) tls_fail(tls_->engine->error(), TlsEvent::kFailed, true);
    });
  }
}

// Ending our side (close, or shutdown()'s FIN) with everything sent:
// queue close_notify first. True while it is still to be sent.
bool Connection::tls_notify() {
  if (!tls_->opened || tls_->failed || tls_->notified) return false;
  const bool ending = state_ == State::kClosing ||
                      (state_ == State::kOpen && shutdown_wanted_ && !write_shut_);
  if (!ending) return false;
  tls_->notified = true;
  const size_t before = output().readable();
  tls_->engine->close_notify(output());
  tls_wrote(before);
  return pending_ != 0;
}

}  // namespace sluice
