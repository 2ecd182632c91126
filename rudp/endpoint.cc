#include "rudp/endpoint.h"

#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/event_loop.h"
#include "rudp/cc/registry.h"
#include "rudp/link.h"

namespace sluice::rudp {

namespace {

// A cookie is good for this long after the RETRY that carried it.
constexpr uint32_t kCookieLifetimeS = 10;
// A client follows at most this many RETRYs per connect (a server that
// keeps sending them is broken or hostile).
constexpr int kMaxRetries = 8;
// The handshake's resend interval doubles from 250 ms up to this.
constexpr std::chrono::milliseconds kMaxConnectBackoff{2000};

Link* link_of(io::Channel& ch) { return dynamic_cast<Link*>(ch.io.get()); }

}  // namespace

Endpoint::Endpoint(EventLoop& loop, int fd, const Options& opts, Role role)
    : loop_(loop),
      opts_(opts),
      role_(role),
      udp_(std::make_unique<UdpEndpoint>(loop, fd, *this, *this, opts.max_queued)) {
  port_ = udp_->local_port();
  // ECN (docs/RUDP.md, "ECN"): every datagram's codepoint is read (for the
  // sessions' ACK_ECN counts) and, unless turned off, ours are ECT(0).
  if (int rc = set_udp_ecn(fd, true, opts_.ecn ? io::kEct0 : io::kNotEct); rc < 0) {
    spdlog::debug("rudp: fd {}: cannot set up ECN: {}", fd, std::strerror(-rc));
  }
  // The controllers size their windows in datagrams of this size.
  opts_.cc_config.max_datagram = opts_.max_datagram;
  uint64_t seed = 0;
  if (::getrandom(secret_.data(), secret_.size(), 0) != static_cast<ssize_t>(secret_.size()) ||
      ::getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) {
    // No entropy source: fall back on the clock (cookies then only stop
    // blind spoofing by peers that cannot guess the start time).
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    std::mt19937_64 r(seed);
    for (auto& b : secret_) b = static_cast<unsigned char>(r());
  }
  rng_.seed(seed);
  if (role_ == Role::kServer && opts_.handshake_limit.rate > 0) {
    initial_limit_.emplace(opts_.handshake_limit);
  }
}

Endpoint::~Endpoint() {
  if (connect_timer_) loop_.cancel(connect_timer_);
  if (stop_timer_) loop_.cancel(stop_timer_);
  // The loop is ending with sessions left (a stop deadline passed, or
  // the loop failed): their connections, if still attached, must not
  // point at us.
  sessions_.clear();
  graveyard_.clear();
  if (udp_) {
    const int fd = udp_->abandon();
    if (fd >= 0) ::close(fd);
  }
}

int Endpoint::start() { return udp_ ? udp_->start() : -EBADF; }

void Endpoint::retire(std::unique_ptr<Endpoint> ep) {
  if (!ep) return;
  EventLoop& loop = ep->loop_;
  if (!loop.looping() || !ep->udp_ || ep->released_) return;  // destroyed here
  Endpoint* e = ep.release();
  std::vector<Session*> left;
  for (auto& [id, s] : e->sessions_) left.push_back(s.get());
  for (Session* s : left) s->abort_now(-ECONNABORTED);
  e->stopping_ = false;  // stop() below runs in full
  e->stop({}, [e, &loop] { loop.defer([e] { delete e; }); });
}

Params Endpoint::local_params() const {
  Params p;
  p.max_message = opts_.max_message;
  p.initial_window = opts_.window;
  p.idle_timeout_ms = static_cast<uint64_t>(opts_.idle_timeout.count());
  p.max_ack_delay_ms = static_cast<uint64_t>(opts_.max_ack_delay.count());
  p.max_datagram = opts_.max_datagram;
  return p;
}

cc::Config Endpoint::cc_config() {
  // A seed per connection for the controller's random choices (BBR's
  // first gain phase): from the endpoint's generator, unless the options
  // fix one (tests that must replay).
  cc::Config c = opts_.cc_config;
  if (c.seed == 0) c.seed = rng_() | 1;
  return c;
}

uint32_t Endpoint::fresh_id() {
  for (;;) {
    const uint32_t id = static_cast<uint32_t>(rng_());
    if (id != 0 && !sessions_.contains(id)) return id;
  }
}

uint32_t Endpoint::now_seconds() const {
  return static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(loop_.clock().time_since_epoch()).count());
}

std::string Endpoint::peer_key(const sockaddr* addr, socklen_t len, uint32_t id) {
  std::string k(reinterpret_cast<const char*>(addr), len);
  k.append(reinterpret_cast<const char*>(&id), sizeof(id));
  return k;
}

// ---- the socket ----

bool Endpoint::send_datagram(Session& s, std::string_view d) {
  if (!udp_ || !udp_->is_open()) return false;
  return udp_->send_to(s.peer_addr(), s.peer_len(), d);
}

size_t Endpoint::send_room() const {
  if (!udp_ || !udp_->is_open()) return 0;
  const size_t pending = udp_->pending();
  return pending >= opts_.max_queued ? 0 : opts_.max_queued - pending;
}

void Endpoint::on_datagram(UdpEndpoint&, const io::Datagram& d) {
  ++stats_.datagrams;
  Header h;
  if (parse_header(d.data, &h) != WireError::kNone) {
    ++stats_.bad_header;  // corrupted, foreign or truncated: never further
    return;
  }
  const std::string_view body = d.data.substr(kHeaderSize);
  switch (h.type) {
    case PacketType::kInitial:
      if (role_ == Role::kServer) on_initial(d, body);
      return;
    case PacketType::kRetry:
      if (role_ == Role::kClient && h.dst_id == client_id_) on_retry(d, body);
      return;
    case PacketType::kAccept:
      if (role_ == Role::kClient && h.dst_id == client_id_) on_accept_packet(d, body);
      return;
    case PacketType::kData: break;
  }
  auto it = sessions_.find(h.dst_id);
  if (it == sessions_.end()) {
    ++stats_.unknown_id;
    return;
  }
  Session& s = *it->second;
  // Ids route datagrams; the address must match as well (no migration):
  // a forged id from elsewhere is dropped.
  if (!s.same_peer(d.addr, d.addr_len)) {
    ++stats_.wrong_peer;
    return;
  }
  s.on_packet(body, d.ecn);
}

void Endpoint::ecn_failed(Session& s) {
  (void)s;
  // A client's socket is its session's alone: stop marking there. A
  // server's is shared by every session, so it keeps marking for the
  // others; the session that failed just stops relying on ECN.
  if (role_ == Role::kClient && udp_) set_udp_ecn(udp_->fd(), true, io::kNotEct);
}

void Endpoint::release(UdpEndpoint& ep) {
  if (udp_.get() != &ep) return;
  loop_.destroy_later(std::move(udp_));
  released_ = true;
  if (on_released_) {
    auto fn = std::move(on_released_);
    fn();
  }
}

// ---- server handshake ----

std::string Endpoint::make_cookie(const sockaddr* addr, socklen_t len, uint32_t id,
                                  uint32_t stamp) const {
  // MAC input: stamp, client id, address (family, port and host bytes).
  unsigned char msg[4 + 4 + sizeof(sockaddr_storage)];
  std::memcpy(msg, &stamp, 4);
  std::memcpy(msg + 4, &id, 4);
  std::memcpy(msg + 8, addr, len);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()), msg, 8 + len, mac,
       &mac_len);
  std::string c(reinterpret_cast<const char*>(&stamp), 4);
  c.append(reinterpret_cast<const char*>(mac), kCookieSize - 4);
  return c;
}

bool Endpoint::check_cookie(const sockaddr* addr, socklen_t len, uint32_t id,
                            std::string_view c) const {
  if (c.size() != kCookieSize) return false;
  uint32_t stamp = 0;
  std::memcpy(&stamp, c.data(), 4);
  const uint32_t now = now_seconds();
  if (stamp > now + 1 || now - stamp > kCookieLifetimeS) return false;
  const std::string want = make_cookie(addr, len, id, stamp);
  return CRYPTO_memcmp(want.data(), c.data(), kCookieSize) == 0;
}

void Endpoint::on_initial(const io::Datagram& d, std::string_view body) {
  ++stats_.initials;
  if (initial_limit_ && initial_limit_->admit(PeerAddr::from(d.addr, d.addr_len), loop_.clock(),
                                              /*hold=*/false) != SourceVerdict::kAdmit) {
    ++stats_.limited;  // silently: an answer is what a flood wants
    return;
  }
  Initial in;
  if (parse_initial(body, &in) != WireError::kNone) {
    ++stats_.bad_header;
    return;
  }
  const bool stale = !in.cookie.empty() &&
                     !check_cookie(d.addr, d.addr_len, in.src_id, in.cookie);
  if (stale) ++stats_.bad_cookies;
  if (in.cookie.empty() || stale) {
    // No state: answer with a cookie (smaller than the padded INITIAL). A
    // cookie that expired (a handshake that took long on a lossy path) or
    // never was ours gets a fresh one: the answer costs the same either way.
    begin_datagram(out_, PacketType::kRetry, in.src_id);
    write_retry(out_, make_cookie(d.addr, d.addr_len, in.src_id, now_seconds()));
    seal_datagram(out_);
    if (udp_ && udp_->send_to(d.addr, d.addr_len, out_)) ++stats_.retries_sent;
    return;
  }
  const std::string key = peer_key(d.addr, d.addr_len, in.src_id);
  if (auto it = by_peer_.find(key); it != by_peer_.end()) {
    // Our ACCEPT was lost: the same answer again (a draining session is
    // not reopened: a late INITIAL never starts a second connection).
    auto s = sessions_.find(it->second);
    if (s != sessions_.end() && s->second->open()) {
      send_accept(d.addr, d.addr_len, in.src_id, it->second);
    }
    return;
  }
  if (stopping_ || !accept_) {
    ++stats_.refused;
    return;
  }
  std::string error;
  auto cc = cc::create(opts_.cc, cc_config(), &error);
  if (!cc) {
    spdlog::error("rudp: {}", error);
    return;
  }
  const uint32_t id = fresh_id();
  auto owned = std::make_unique<Session>(*this, opts_, id, in.src_id, d.addr, d.addr_len,
                                         in.params, std::move(cc));
  Session& s = *owned;
  sessions_.emplace(id, std::move(owned));
  by_peer_.emplace(key, id);
  send_accept(d.addr, d.addr_len, in.src_id, id);
  ++stats_.accepted;
  pending_ = &s;
  const bool taken = accept_(s);
  pending_ = nullptr;
  if (!taken) {
    ++stats_.refused;
    s.abort_now(-ECONNREFUSED, ResetCode::kRefused);
  }
}

void Endpoint::send_accept(const sockaddr* to, socklen_t len, uint32_t client_id,
                           uint32_t server_id) {
  begin_datagram(out_, PacketType::kAccept, client_id);
  write_accept(out_, Accept{server_id, local_params()});
  seal_datagram(out_);
  if (udp_) udp_->send_to(to, len, out_);
}

// ---- client handshake ----

void Endpoint::connect(const sockaddr* addr, socklen_t len, ConnectFn done) {
  connect_done_ = std::move(done);
  std::memcpy(&server_, addr, std::min<size_t>(len, sizeof(server_)));
  server_len_ = len;
  client_id_ = fresh_id();
  // Each connect is a handshake of its own (a cookie is bound to the id).
  cookie_.clear();
  retries_seen_ = 0;
  connect_backoff_ = std::chrono::milliseconds(250);
  connect_deadline_ = loop_.clock() + opts_.connect_timeout;
  send_initial();
}

void Endpoint::send_initial() {
  Initial in;
  in.src_id = client_id_;
  in.cookie = cookie_;
  in.params = local_params();
  begin_datagram(out_, PacketType::kInitial, 0);
  write_initial(out_, in);
  seal_datagram(out_);
  if (udp_) udp_->send_to(reinterpret_cast<const sockaddr*>(&server_), server_len_, out_);
  // RFC 6298 §5.5-style backoff for the handshake.
  const auto wait = std::min<Clock::duration>(connect_backoff_, connect_deadline_ - loop_.clock());
  connect_backoff_ = std::min<std::chrono::milliseconds>(2 * connect_backoff_, kMaxConnectBackoff);
  if (connect_timer_) loop_.cancel(connect_timer_);
  connect_timer_ = loop_.run_after(std::max<Clock::duration>(wait, Clock::duration::zero()),
                                   [this] {
                                     connect_timer_ = 0;
                                     on_connect_timer();
                                   });
}

void Endpoint::on_connect_timer() {
  if (!connect_done_) return;
  if (loop_.clock() >= connect_deadline_) {
    connect_done(-ETIMEDOUT, nullptr);
    return;
  }
  send_initial();
}

void Endpoint::on_retry(const io::Datagram& d, std::string_view body) {
  if (!connect_done_ || d.addr_len != server_len_ ||
      std::memcmp(d.addr, &server_, server_len_) != 0 || ++retries_seen_ > kMaxRetries) {
    return;
  }
  std::string cookie;
  if (parse_retry(body, &cookie) != WireError::kNone) return;
  cookie_ = std::move(cookie);
  connect_backoff_ = std::chrono::milliseconds(250);
  send_initial();
}

void Endpoint::on_accept_packet(const io::Datagram& d, std::string_view body) {
  if (!connect_done_ || d.addr_len != server_len_ ||
      std::memcmp(d.addr, &server_, server_len_) != 0) {
    return;
  }
  Accept a;
  if (parse_accept(body, &a) != WireError::kNone) return;
  std::string error;
  auto cc = cc::create(opts_.cc, cc_config(), &error);
  if (!cc) {
    spdlog::error("rudp: {}", error);
    connect_done(-EINVAL, nullptr);
    return;
  }
  auto owned = std::make_unique<Session>(*this, opts_, client_id_, a.src_id, d.addr, d.addr_len,
                                         a.params, std::move(cc));
  Session* s = owned.get();
  sessions_.emplace(client_id_, std::move(owned));
  connect_done(0, s);
}

void Endpoint::connect_done(int result, Session* s) {
  if (connect_timer_) {
    loop_.cancel(connect_timer_);
    connect_timer_ = 0;
  }
  auto done = std::move(connect_done_);
  connect_done_ = nullptr;
  if (done) done(result, s);
}

// ---- sessions ----

void Endpoint::finished(Session& s) {
  auto it = sessions_.find(s.local_id());
  if (it == sessions_.end()) return;
  if (role_ == Role::kServer) by_peer_.erase(peer_key(s.peer_addr(), s.peer_len(), s.peer_id()));
  graveyard_.push_back(std::move(it->second));
  sessions_.erase(it);
  if (!burying_) {
    burying_ = true;
    // After the tasks already deferred (a session's own flush among them).
    loop_.defer([this, alive = std::weak_ptr<char>(alive_)] {
      if (alive.expired()) return;
      burying_ = false;
      graveyard_.clear();
      maybe_release();
    });
  }
}

void Endpoint::stop(std::chrono::milliseconds deadline, std::function<void()> released) {
  if (stopping_) return;
  stopping_ = true;
  on_released_ = std::move(released);
  if (connect_done_) connect_done(-ECANCELED, nullptr);
  // Draining protects new connections from late packets; there will be
  // none now.
  for (auto& [id, s] : sessions_) s->cut_drain();
  if (!sessions_.empty()) {
    stop_timer_ = loop_.run_after(deadline, [this] {
      stop_timer_ = 0;
      std::vector<Session*> left;
      for (auto& [id, s] : sessions_) left.push_back(s.get());
      for (Session* s : left) s->abort_now(-ETIMEDOUT);
    });
  }
  maybe_release();
}

void Endpoint::maybe_release() {
  if (!stopping_ || !sessions_.empty() || !graveyard_.empty() || !udp_) return;
  if (stop_timer_) {
    loop_.cancel(stop_timer_);
    stop_timer_ = 0;
  }
  // UdpEndpoint::close() sends what is queued (the last CLOSEs), then
  // releases (release() above).
  if (udp_->is_open()) udp_->close();
}

// ---- the connections' channels ----

int Endpoint::attach(io::Channel& ch) {
  if (!pending_ || ch.io) return -EINVAL;
  ch.io = std::make_unique<Link>(pending_);
  pending_->attach(ch);
  pending_ = nullptr;
  return 0;
}

void Endpoint::update(io::Channel& ch) {
  if (Link* l = link_of(ch); l && l->session) l->session->update(ch);
}

void Endpoint::detach(io::Channel& ch) {
  Link* l = link_of(ch);
  Session* s = l ? l->session : nullptr;
  if (l) l->session = nullptr;
  if (s) s->detach(ch);
  ch.io.reset();
  ch.on_detached();
}

int Endpoint::shutdown_write(io::Channel& ch) {
  Link* l = link_of(ch);
  return l && l->session ? l->session->shutdown_write(ch) : -ENOTCONN;
}

bool Endpoint::send_unreliable(io::Channel& ch, std::string_view message) {
  Link* l = link_of(ch);
  return l && l->session && l->session->send_unreliable(message);
}

}  // namespace sluice::rudp
