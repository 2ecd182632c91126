#include "servers/heartbeat_pinger.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <mutex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "codec/heartbeat.h"
#include "core/backoff.h"
#include "core/client.h"
#include "core/connector.h"
#include "core/event_loop.h"
#include "core/idle_timer.h"
#include "core/net.h"
#include "core/udp_endpoint.h"

namespace sluice::servers {

namespace hb = codec::heartbeat;

namespace {

uint64_t ns_of(Clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

bool same_address(const sockaddr* a, socklen_t alen, const sockaddr_storage& b, socklen_t blen) {
  if (a->sa_family != b.ss_family) return false;
  if (a->sa_family == AF_INET && alen >= sizeof(sockaddr_in) && blen >= sizeof(sockaddr_in)) {
    sockaddr_in x, y;
    std::memcpy(&x, a, sizeof x);
    std::memcpy(&y, &b, sizeof y);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  if (a->sa_family == AF_INET6 && alen >= sizeof(sockaddr_in6) && blen >= sizeof(sockaddr_in6)) {
    sockaddr_in6 x, y;
    std::memcpy(&x, a, sizeof x);
    std::memcpy(&y, &b, sizeof y);
    return x.sin6_port == y.sin6_port &&
           std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
  }
  return false;
}

const char* reason_text(CloseReason r) { return to_string(r); }

struct Outstanding {
  uint64_t seq;
  Clock::time_point sent;
};

class Session;

}  // namespace

struct Pinger::Impl {
  explicit Impl(const PingerOptions& o) : opts(o) {}
  void finish();
  void fail(int err, std::string why);

  const PingerOptions& opts;
  // Declaration order is destruction order reversed: sessions go first,
  // then the loop, then the connector (which must outlive the loop).
  std::unique_ptr<Connector> connector;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<codec::Codec> codec;
  std::vector<std::unique_ptr<Session>> sessions;
  sockaddr_storage server{};
  socklen_t server_len = 0;
  std::string local_host;  // UDP sockets bind here

  PingerReport stats;
  std::vector<uint64_t> rtts_us;
  bool finishing = false;
  int fatal = 0;
  std::string fatal_error;

  std::mutex mu;               // guards `running` against run() ending
  EventLoop* running = nullptr;
};

namespace {

// One logical connection: PINGs, outstanding bookkeeping, backoff.
class Session {
 public:
  virtual ~Session() = default;
  virtual void start() = 0;
  virtual void go_silent() = 0;
  virtual void finish(Clock::time_point end) = 0;
  virtual bool released() const = 0;

 protected:
  Session(Pinger::Impl& p, size_t index)
      : p_(p),
        index_(index),
        backoff_(p.opts.backoff_initial, p.opts.backoff_max, p.opts.seed * 7919 + index) {}

  void sent(uint64_t seq, Clock::time_point now) {
    outstanding_.push_back({seq, now});
    ++p_.stats.pings_sent;
  }

  void answered(uint64_t seq, Clock::time_point now) {
    // PONGs come back in order, so the match is almost always the front.
    for (auto it = outstanding_.begin(); it != outstanding_.end(); ++it) {
      if (it->seq != seq) continue;
      const auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(now - it->sent);
      p_.rtts_us.push_back(static_cast<uint64_t>(std::max<int64_t>(0, rtt.count())));
      ++p_.stats.pongs_received;
      outstanding_.erase(it);
      return;
    }
    ++p_.stats.unmatched_pongs;
  }

  // The connection/socket is given up: its PINGs can no longer be answered.
  void give_up() {
    p_.stats.lost += outstanding_.size();
    outstanding_.clear();
    ++p_.stats.drops;
  }

  void account_end(Clock::time_point end) {
    for (const Outstanding& o : outstanding_) {
      if (o.sent > end - p_.opts.interval) {
        ++p_.stats.in_flight;
      } else {
        ++p_.stats.lost;
      }
    }
    outstanding_.clear();
  }

  void cancel_timers() {
    if (ping_timer_) p_.loop->cancel(ping_timer_);
    if (retry_timer_) p_.loop->cancel(retry_timer_);
    ping_timer_ = retry_timer_ = 0;
  }

  Clock::duration silence_limit() const { return p_.opts.interval * p_.opts.misses; }

  Pinger::Impl& p_;
  const size_t index_;
  Backoff backoff_;
  std::deque<Outstanding> outstanding_;
  uint64_t next_seq_ = 1;
  bool ever_up_ = false;
  bool silent_ = false;
  bool finished_ = false;
  TimerId ping_timer_ = 0;
  TimerId retry_timer_ = 0;
};

// ---------------------------------------------------------------- TCP ----

class TcpSession final : public Session, public Handler {
 public:
  TcpSession(Pinger::Impl& p, size_t index)
      : Session(p, index), client_(*p.loop, *p.connector, *this, p.codec.get(), options(p.opts)) {}

  void start() override { connect(); }

  void go_silent() override {
    silent_ = true;
    cancel_timers();
    // Stop watching the server too: what we want to see is the server
    // dropping us, not us giving up first.
    if (Connection* c = client_.connection()) c->set_idle({});
    spdlog::info("session {}: stops sending pings", index_);
  }

  void finish(Clock::time_point end) override {
    finished_ = true;
    cancel_timers();
    account_end(end);
    client_.abort();
  }

  bool released() const override { return client_.live() == 0 && !client_.connecting(); }

  // Handler (loop thread).
  void on_open(Connection& conn) override {
    if (ever_up_) {
      ++p_.stats.reconnects;
      spdlog::info("session {}: reconnected to {} after {} attempts", index_, conn.peer(),
                   backoff_.attempts());
    } else {
      spdlog::debug("session {}: connected to {}", index_, conn.peer());
    }
    ever_up_ = true;
    backoff_.reset();
    if (silent_) {
      conn.set_idle({});
      return;
    }
    ping(conn);
    // `this` outlives its timers: cancel_timers() runs before a session
    // is destroyed (finish) and whenever the connection goes.
    ping_timer_ = p_.loop->run_every(p_.opts.interval, [this] {
      Connection* c = client_.connection();
      if (c && c->is_open() && !silent_) ping(*c);
    });
  }

  void on_message(Connection& conn, std::string_view payload) override {
    hb::Message m;
    const hb::ParseError err = hb::parse(payload, &m);
    if (err != hb::ParseError::kNone) {
      spdlog::warn("session {}: protocol error from {}: {}", index_, conn.peer(),
                   hb::describe(err, payload));
      conn.abort();
      return;
    }
    if (m.type == hb::Type::kPong) answered(m.seq, Clock::now());
  }

  void on_idle(Connection& conn, IdleKind kind) override {
    if (kind != IdleKind::kReader) return;
    spdlog::info("session {}: nothing from {} for {} ms", index_, conn.peer(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(silence_limit()).count());
    conn.abort();
  }

  void on_close(Connection& conn, CloseReason reason, int err) override {
    if (ping_timer_) p_.loop->cancel(ping_timer_);
    ping_timer_ = 0;
    if (finished_) return;
    give_up();
    const std::string why = reason == CloseReason::kPeerReset
                                ? fmt::format("{}: {}", reason_text(reason), std::strerror(-err))
                                : reason_text(reason);
    if (silent_) {
      spdlog::info("session {}: dropped by {} after going silent ({})", index_, conn.peer(), why);
      return;  // a "dead" peer stays dead
    }
    spdlog::info("session {}: connection to {} lost ({}); reconnecting", index_, conn.peer(), why);
    schedule_retry();
  }

 private:
  static ClientOptions options(const PingerOptions& o) {
    ClientOptions c;
    c.host = o.host;
    c.port = o.port;
    c.connect_timeout = o.connect_timeout;
    c.idle.reader = o.interval * o.misses;
    return c;
  }

  void connect() {
    if (finished_ || silent_) return;
    client_.connect([this](int rc) {
      if (rc >= 0) return;  // on_open has run
      ++p_.stats.connect_failures;
      spdlog::debug("session {}: connect: {}", index_, std::strerror(-rc));
      if (rc == -EINVAL) {
        p_.fail(rc, "bad server address " + p_.opts.host);
        return;
      }
      schedule_retry();
    });
  }

  void schedule_retry() {
    if (finished_ || silent_ || retry_timer_) return;
    retry_timer_ = p_.loop->run_after(backoff_.next(), [this] {
      retry_timer_ = 0;
      connect();
    });
  }

  void ping(Connection& conn) {
    const Clock::time_point now = Clock::now();
    const uint64_t seq = next_seq_++;
    if (conn.send(hb::view(hb::encode_ping(seq, ns_of(now))))) sent(seq, now);
  }

  Client client_;
};

// ---------------------------------------------------------------- UDP ----

class UdpSession final : public Session, public DatagramHandler, public UdpEndpoint::Owner {
 public:
  UdpSession(Pinger::Impl& p, size_t index)
      : Session(p, index), idle_(*p.loop, [this](IdleKind kind) {
          if (kind == IdleKind::kReader) server_silent();
        }) {}

  void start() override { open(); }

  void go_silent() override {
    silent_ = true;
    cancel_timers();
    idle_.stop();
    spdlog::info("session {}: stops sending pings", index_);
  }

  void finish(Clock::time_point end) override {
    finished_ = true;
    cancel_timers();
    idle_.stop();
    account_end(end);
    close_endpoint();
  }

  bool released() const override { return !ep_ && closing_.empty(); }

  // DatagramHandler (loop thread).
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
    if (&ep != ep_.get() || !same_address(d.addr, d.addr_len, p_.server, p_.server_len)) return;
    idle_.on_read();
    hb::Message m;
    if (hb::parse(d.data, &m) != hb::ParseError::kNone || m.type != hb::Type::kPong) return;
    if (!up_) {
      if (ever_up_) {
        ++p_.stats.reconnects;
        spdlog::info("session {}: server answers again after {} attempts", index_,
                     backoff_.attempts());
      }
      up_ = ever_up_ = true;
      backoff_.reset();
    }
    answered(m.seq, Clock::now());
  }

  // UdpEndpoint::Owner.
  void release(UdpEndpoint& ep) override {
    for (auto it = closing_.begin(); it != closing_.end(); ++it) {
      if (it->get() == &ep) {
        p_.loop->destroy_later(std::move(*it));
        closing_.erase(it);
        return;
      }
    }
  }

 private:
  void open() {
    if (finished_ || silent_) return;
    int fd = bind_udp(p_.local_host, 0, {});
    if (fd < 0) {
      p_.fail(fd, fmt::format("cannot bind a UDP socket on {}: {}", p_.local_host,
                              std::strerror(-fd)));
      return;
    }
    ep_ = std::make_unique<UdpEndpoint>(*p_.loop, fd, *this, *this);
    if (int rc = ep_->start(); rc < 0) {
      ep_.reset();  // start() closed the fd
      p_.fail(rc, fmt::format("the {} back end cannot serve UDP: {}", p_.loop->io_name(),
                              std::strerror(-rc)));
      return;
    }
    up_ = false;
    IdleOptions io;
    io.reader = silence_limit();
    idle_.start(io);
    ping();
    ping_timer_ = p_.loop->run_every(p_.opts.interval, [this] {
      if (ep_ && ep_->is_open() && !silent_) ping();
    });
  }

  void ping() {
    const Clock::time_point now = Clock::now();
    const uint64_t seq = next_seq_++;
    if (ep_->send_to(reinterpret_cast<const sockaddr*>(&p_.server), p_.server_len,
                     hb::view(hb::encode_ping(seq, ns_of(now))))) {
      sent(seq, now);
    }
  }

  void server_silent() {
    if (finished_ || silent_) return;
    give_up();
    cancel_timers();
    idle_.stop();
    close_endpoint();
    spdlog::info("session {}: no PONG for {} ms; retrying with a new socket", index_,
                 std::chrono::duration_cast<std::chrono::milliseconds>(silence_limit()).count());
    retry_timer_ = p_.loop->run_after(backoff_.next(), [this] {
      retry_timer_ = 0;
      open();
    });
  }

  void close_endpoint() {
    if (!ep_) return;
    UdpEndpoint* ep = ep_.get();
    closing_.push_back(std::move(ep_));  // release() may come synchronously
    ep->close();
  }

  IdleTimer idle_;
  std::unique_ptr<UdpEndpoint> ep_;
  std::vector<std::unique_ptr<UdpEndpoint>> closing_;  // until released
  bool up_ = false;  // a PONG arrived on the current socket
};

uint64_t percentile(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace

std::string PingerReport::json() const {
  return fmt::format(
      "{{\"pings_sent\":{},\"pongs_received\":{},\"lost\":{},\"in_flight\":{},"
      "\"reconnects\":{},\"rtt_p50_us\":{},\"rtt_p99_us\":{},\"rtt_max_us\":{}}}",
      pings_sent, pongs_received, lost, in_flight, reconnects, rtt_p50_us, rtt_p99_us,
      rtt_max_us);
}

void Pinger::Impl::fail(int err, std::string why) {
  if (fatal == 0) {
    fatal = err;
    fatal_error = std::move(why);
  }
  finish();
}

void Pinger::Impl::finish() {
  if (finishing) return;
  finishing = true;
  const Clock::time_point end = Clock::now();
  for (auto& s : sessions) s->finish(end);
  // Wait (bounded) until the back end has released every socket, so the
  // sessions can be destroyed safely after run() returns.
  const Clock::time_point give_up = end + std::chrono::seconds(2);
  loop->run_every(std::chrono::milliseconds(1), [this, give_up] {
    bool all = true;
    for (auto& s : sessions) all = all && s->released();
    if (all || Clock::now() > give_up) loop->quit();
  });
}

Pinger::Pinger(PingerOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {}

Pinger::~Pinger() = default;

int Pinger::run(PingerReport* report, std::string* error) {
  Impl& im = *impl_;
  if (im.finishing || im.loop) {
    if (error) *error = "a Pinger runs once";
    return -EALREADY;
  }
  const bool udp = options_.proto == "udp";
  if (!udp && options_.proto != "tcp") {
    if (error) *error = "unknown protocol " + options_.proto;
    return -EINVAL;
  }
  if (int rc = make_address(options_.host, options_.port, &im.server, &im.server_len); rc < 0) {
    if (error) *error = "bad server address " + options_.host;
    return rc;
  }
  im.local_host = im.server.ss_family == AF_INET6 ? "::1" : "127.0.0.1";
  if (options_.host != "127.0.0.1" && options_.host != "localhost" && options_.host != "::1") {
    im.local_host = im.server.ss_family == AF_INET6 ? "::" : "0.0.0.0";
  }
  if (!udp) im.connector = std::make_unique<Connector>();
  std::string err;
  im.loop = EventLoop::create(options_.io, {}, &err);
  if (!im.loop) {
    if (error) *error = err;
    return -ENOTSUP;
  }
  im.codec = hb::make_tcp_codec();
  for (size_t i = 0; i < options_.conns; ++i) {
    if (udp) {
      im.sessions.push_back(std::make_unique<UdpSession>(im, i));
    } else {
      im.sessions.push_back(std::make_unique<TcpSession>(im, i));
    }
  }
  // Set up on this thread before run(): it becomes the loop thread.
  for (auto& s : im.sessions) s->start();
  Impl* p = &im;
  im.loop->run_after(options_.duration, [p] { p->finish(); });
  if (options_.stop_pings_after.count() >= 0 && !im.sessions.empty()) {
    im.loop->run_after(options_.stop_pings_after, [p] { p->sessions[0]->go_silent(); });
  }
  {
    std::lock_guard<std::mutex> lock(im.mu);
    im.running = im.loop.get();
  }
  im.loop->run();
  {
    std::lock_guard<std::mutex> lock(im.mu);
    im.running = nullptr;
  }

  PingerReport r = im.stats;
  std::sort(im.rtts_us.begin(), im.rtts_us.end());
  r.rtt_p50_us = percentile(im.rtts_us, 50);
  r.rtt_p99_us = percentile(im.rtts_us, 99);
  r.rtt_max_us = im.rtts_us.empty() ? 0 : im.rtts_us.back();
  if (report) *report = r;
  const int fatal = im.fatal;
  if (fatal < 0 && error) *error = im.fatal_error;
  // Sessions, then the loop, then the connector (see Impl).
  im.sessions.clear();
  im.loop.reset();
  im.connector.reset();
  return fatal;
}

void Pinger::stop() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->running == nullptr) return;
  Impl* p = impl_.get();
  impl_->running->post([p] { p->finish(); });
}

}  // namespace sluice::servers
