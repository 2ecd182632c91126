#include "core/server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>

#include <spdlog/spdlog.h>

#include "base/sys.h"
#include "core/loop_lag.h"
#include "core/ktls_probe.h"

namespace sluice {

// How long stop() waits, at least, past its deadline for the back ends to
// release the connections it aborted (see stop_slot()).
constexpr std::chrono::milliseconds kDetachGrace{1000};

// The listening socket as a channel of loop 0.
class Server::Acceptor final : public io::Channel {
 public:
  Acceptor(int fd, Server& server) : io::Channel(fd, Kind::kListener), server_(server) {
    open_spare();
  }
  ~Acceptor() override {
    if (!released_) ::close(fd());
    if (spare_fd_ >= 0) ::close(spare_fd_);
  }

  bool released() const { return released_; }

 private:
  void on_accept(int fd) override { server_.on_accepted(fd); }

  void on_accept_error(int err) override;

  // One descriptor held on /dev/null so that, out of descriptors, the
  // server can still take a pending connection off the backlog and close it
  // (the peer sees a close instead of hanging, and a level-triggered
  // poller stops reporting the listener). -1 when it could not be opened.
  void open_spare() {
    if (spare_fd_ < 0) spare_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  // Out of descriptors: give back the spare, accept and close what is
  // pending (bounded), take the spare again. Only for a nonblocking
  // listening socket (the reactors): a blocking accept here would stall
  // the loop, and the blocking and io_uring back ends back off themselves.
  size_t shed_pending() {
    const int flags = ::fcntl(fd(), F_GETFL);
    if (flags < 0 || !(flags & O_NONBLOCK)) return 0;
    open_spare();  // lost earlier (descriptors were short): try again
    if (spare_fd_ < 0) return 0;
    ::close(spare_fd_);
    spare_fd_ = -1;
    size_t shed = 0;
    for (int i = 0; i < kMaxShed; ++i) {
      int c = sys::accept4(fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) break;
      ::close(c);
      ++shed;
    }
    open_spare();
    return shed;
  }

  static constexpr int kMaxShed = 64;

  void on_detached() override;

  Server& server_;
  bool released_ = false;
  LogLimiter log_limit_;
  uint64_t shed_total_ = 0;
  int spare_fd_ = -1;
};

struct Server::Slot final : Connection::Owner, TransportHost {
  Slot(Server& s, std::unique_ptr<EventLoop> l, size_t i)
      : server(s),
        loop(std::move(l)),
        index(i),
        shared{s.handler_, *this, s.codec_.get(), s.options_.limits, s.options_.idle_close} {
    shared.tls = s.tls_.get();
    shared.stats = s.loop_stats_.at(i).get();
    shared.proxy = s.options_.proxy_protocol;
    shared.proxy_timeout = s.options_.proxy_header_timeout;
    shared.proxy_max_header = s.options_.proxy_header_max;
  }

  // TransportHost.
  Connection* adopt(const PeerAddr& peer) override { return server.adopt_peer(*this, peer); }
  void released() override {
    transport_released = true;
    maybe_quit();
  }

  void release(Connection& conn) override {
    auto it = conns.find(conn.id());
    if (it == conns.end()) return;
    const PeerAddr peer = conn.peer_addr();
    // A connection still waiting for its PROXY header (or refused after
    // it) took no per-source hold.
    const bool held = !conn.proxy_pending();
    loop->destroy_later(std::move(it->second));
    conns.erase(it);
    server.forget(peer, held);
    maybe_quit();
  }

  void count_linger(LingerEvent event) override {
    server.linger_[static_cast<size_t>(event)].fetch_add(1, std::memory_order_relaxed);
  }

  void tls_done(Connection&, TlsEvent event) override {
    server.tls_events_[static_cast<size_t>(event)].fetch_add(1, std::memory_order_relaxed);
  }

  bool proxy_done(Connection& conn) override { return server.admit_proxied(conn, *this); }

  void maybe_quit() {
    if (!stopping || !conns.empty()) return;
    if (index == 0 && server.acceptor_ && !server.acceptor_->released()) return;
    if (transport && !transport_released) return;
    loop->quit();
  }

  // Ids are dealt per loop: seq * loops + index + 1, so an id names its
  // loop ((id - 1) % loops) and run_on() needs no shared table.
  uint64_t next_id() { return next_seq++ * server.options_.threads + index + 1; }

  Server& server;
  std::unique_ptr<EventLoop> loop;
  size_t index;
  std::thread thread;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns;
  uint64_t next_seq = 0;
  // Server timers on this loop: handle -> the loop's TimerId.
  std::unordered_map<ServerTimer, TimerId> timers;
  LogLimiter refusal_log;  // transport refusals (TCP's are loop 0's)
  LogLimiter source_log;   // per-source refusals made on this loop
  // for_each's snapshot (closing a connection may erase it from conns);
  // kept to reuse its storage.
  std::vector<Connection*> scratch;
  bool stopping = false;
  Connection::Shared shared;  // what this loop's connections share
  // ServerOptions::transport: this loop's, in place of the acceptor.
  std::unique_ptr<Transport> transport;
  bool transport_released = false;
  LagProbe lag_probe;  // ServerOptions::lag_probe; stopped before the loop goes
};

void Server::Acceptor::on_accept_error(int err) {
  server_.accept_errors_.fetch_add(1, std::memory_order_relaxed);
  size_t shed = 0;
  if (err == -EMFILE || err == -ENFILE) shed = shed_pending();
  // Log at most once a second: EMFILE under load would otherwise flood.
  shed_total_ += shed;
  uint64_t skipped = 0;
  if (!log_limit_.allow(server_.slots_[0]->loop->clock(), &skipped)) return;
  spdlog::warn("accept failed: {} ({} times since last report; {} pending "
               "connections shed)",
               std::strerror(-err), skipped + 1, shed_total_);
  shed_total_ = 0;
}

void Server::Acceptor::on_detached() {
  ::close(fd());
  released_ = true;
  server_.slots_[0]->maybe_quit();
}

Server::Server(ServerOptions options, Handler& handler,
               std::unique_ptr<codec::Codec> codec)
    : options_(std::move(options)), handler_(handler), codec_(std::move(codec)) {
  if (options_.threads == 0) options_.threads = 1;
}

Server::~Server() { stop(); }

int Server::start(std::string* error) {
  if (started_) return 0;
  // Writes use MSG_NOSIGNAL, but a stray SIGPIPE must never kill a server.
  ::signal(SIGPIPE, SIG_IGN);
  // spdlog makes its registry on first use. Make it here, before the loop
  // threads, so two loops' first log lines never race to create it (TSan
  // reported it when a program logged nothing before start()).
  spdlog::default_logger_raw();
  if (std::string why = options_.per_source.validate(); !why.empty()) {
    if (error) *error = "per-source limits: " + why;
    return -EINVAL;
  }
  if (options_.per_source.enabled()) sources_ = std::make_unique<SourceLimiter>(options_.per_source);
  if (options_.transport) {
    if (codec_) {
      if (error) *error = std::string(options_.transport->name()) +
                          " frames its own messages: give the server no codec";
      return -EINVAL;
    }
    codec_ = options_.transport->codec();
  }
  if (options_.proxy_protocol != ProxyProtocol::kOff && options_.transport) {
    if (error) *error = "PROXY protocol: TCP only (not over " +
                        std::string(options_.transport->name()) + ")";
    return -EINVAL;
  }
  if (options_.tls) {
    if (options_.transport) {
      if (error) *error = "tls: TCP only (not over " + std::string(options_.transport->name()) + ")";
      return -EINVAL;
    }
    std::string why;
    tls_ = TlsContext::make_server(*options_.tls, &why);
    if (!tls_) {
      if (error) *error = why;
      return -EINVAL;
    }
    // Records are sealed in user space on every kernel (docs/TLS.md, "kTLS").
    const KtlsProbe& ktls = ktls_probe();
    spdlog::info("tls: records in user space (kTLS: {}{})", ktls.detail,
                 ktls.available ? "; offload is not built" : "");
  }

  while (loop_stats_.size() < options_.threads) {
    loop_stats_.push_back(std::make_unique<LoopStats>());
  }
  for (size_t i = 0; i < options_.threads; ++i) {
    auto loop = EventLoop::create(options_.backend_factory, i, options_.io, options_.io_options, error);
    if (!loop) {
      slots_.clear();
      return -ENOTSUP;
    }
    slots_.push_back(std::make_unique<Slot>(*this, std::move(loop), i));
  }
  io_name_ = std::string(slots_[0]->loop->io_name());
  if (options_.transport) {
    if (int rc = start_transports(error); rc < 0) return rc;
  } else if (int rc = start_acceptor(error); rc < 0) {
    return rc;
  }
  launch_loops();
  started_ = true;
  return 0;
}

int Server::start_transports(std::string* error) {
  uint16_t port = options_.port;
  for (auto& slot : slots_) {
    slot->transport = options_.transport->make(*slot->loop, slot->index, slots_.size(),
                                               options_.host, &port, error);
    if (!slot->transport) {
      slots_.clear();
      return -EADDRNOTAVAIL;
    }
    slot->shared.ops = &slot->transport->ops();
  }
  port_ = port;
  return 0;
}

int Server::start_acceptor(std::string* error) {
  int fd = listen_tcp(options_.host, options_.port, options_.listen);
  if (fd < 0) {
    if (error) {
      *error = "cannot listen on " + options_.host + ":" +
               std::to_string(options_.port) + ": " + std::strerror(-fd);
    }
    slots_.clear();
    return fd;
  }
  port_ = local_port(fd);
  for (const std::string& w : listen_warnings(options_.listen)) {
    spdlog::warn("{}:{}: {}", options_.host, port_, w);
  }
  acceptor_ = std::make_unique<Acceptor>(fd, *this);
  if (int rc = slots_[0]->loop->backend().attach(*acceptor_); rc < 0) {
    if (error) *error = std::string("cannot watch the listening socket: ") + std::strerror(-rc);
    acceptor_.reset();
    slots_.clear();
    return rc;
  }
  return 0;
}

void Server::launch_loops() {
  {
    // Before the loops start: a loop's on_loop_start may already use the
    // cross-thread API (a server timer, a post to another loop); the tasks
    // wait in the loops' queues until they run.
    std::unique_lock lock(run_mu_);
    running_ = true;
  }
  std::shared_future<void> posted = posts_done_.get_future().share();
  for (auto& slot : slots_) {
    Slot* s = slot.get();
    // Each loop is torn down on its own thread: a back end such as
    // io_uring (SINGLE_ISSUER) can only drain its in-flight operations from
    // the thread that drove it.
    s->thread = std::thread([this, s, posted] {
      s->loop->run([this, s] {
        if (options_.lag_probe > Clock::duration::zero()) {
          s->lag_probe.start(*s->loop, s->shared.stats->loop_lag, options_.lag_probe);
        }
        handler_.on_loop_start(*s->loop, s->index);
        if (s->transport) s->transport->start(*s);
      });
      s->lag_probe.stop();
      // post() touches the loop after queueing its task, so the loop may
      // only be destroyed once stop() has finished posting to it.
      posted.wait();
      s->conns.clear();
      s->transport.reset();  // after its connections: they refer to it
      if (s->index == 0) acceptor_.reset();
      s->loop.reset();
    });
  }
}

void Server::on_accepted(int fd) {
  // live_ counts from here, so a burst cannot overrun the limit while
  // connections are still on their way to their loops.
  accepted_.fetch_add(1, std::memory_order_relaxed);
  PeerAddr peer;
  if (admits_at_accept()) {
    peer = PeerAddr::of(fd);
    if (!admit_source(peer, *slots_[0])) {
      // A reset: the abuser's connection leaves no FIN_WAIT or TIME_WAIT
      // here, and its next attempt meets the same limit.
      const linger reset{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      ::close(fd);
      return;
    }
  }
  const size_t live = live_.fetch_add(1, std::memory_order_relaxed);
  if (options_.max_connections != 0 && live >= options_.max_connections) {
    forget(peer, admits_at_accept());
    refused_.fetch_add(1, std::memory_order_relaxed);
    refused_limit_.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
    if (uint64_t skipped = 0; refusal_log_.allow(slots_[0]->loop->clock(), &skipped)) {
      spdlog::warn("max connections ({}) reached: closed {} new connections "
                   "since last report",
                   options_.max_connections, skipped + 1);
    }
    return;
  }
  if (int rc = apply_tcp_options(fd, options_.tcp); rc < 0) {
    spdlog::debug("accepted fd {}: TCP options: {}", fd, std::strerror(-rc));
  }
  Slot& slot = *slots_[next_slot_++ % slots_.size()];
  if (slot.index == 0) {
    adopt(slot, fd, peer);
  } else {
    // The server outlives its loops (stop() joins them), so `this` is safe.
    slot.loop->post([this, &slot, fd, peer] { adopt(slot, fd, peer); });
  }
}

bool Server::admit_source(const PeerAddr& peer, Slot& slot) {
  SourceVerdict v;
  {
    std::lock_guard lock(sources_mu_);
    v = sources_->admit(peer, slot.loop->clock(), /*hold=*/true);
  }
  if (v == SourceVerdict::kAdmit) return true;
  refused_.fetch_add(1, std::memory_order_relaxed);
  if (uint64_t skipped = 0; slot.source_log.allow(slot.loop->clock(), &skipped)) {
    spdlog::warn("per-source limit: refused {} ({}; {} refused since last report)", peer.str(),
                 to_string(v), skipped + 1);
  }
  return false;
}

bool Server::admits_at_accept() const {
  return sources_ && options_.proxy_protocol == ProxyProtocol::kOff;
}

// PROXY protocol: the header named the client (conn.peer_addr()); the
// per-source limits apply to it now, as admit_source() does at accept
// without the protocol (the socket's address is the balancer's).
bool Server::admit_proxied(Connection& conn, Slot& slot) {
  if (!sources_ || admit_source(conn.peer_addr(), slot)) return true;
  // A reset, as at accept: no FIN handshake or TIME_WAIT kept for it.
  const linger reset{1, 0};
  ::setsockopt(conn.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  return false;
}

void Server::forget(const PeerAddr& peer, bool held) {
  live_.fetch_sub(1, std::memory_order_relaxed);
  if (!sources_ || !held) return;
  std::lock_guard lock(sources_mu_);
  sources_->release(peer);
}

SourceLimitStats Server::source_stats() const {
  std::lock_guard lock(sources_mu_);
  return sources_ ? sources_->stats() : SourceLimitStats{};
}

Connection* Server::adopt_peer(Slot& slot, const PeerAddr& peer) {
  accepted_.fetch_add(1, std::memory_order_relaxed);
  if (slot.stopping) return nullptr;
  if (sources_ && !admit_source(peer, slot)) return nullptr;
  const size_t live = live_.fetch_add(1, std::memory_order_relaxed);
  if (options_.max_connections != 0 && live >= options_.max_connections) {
    forget(peer, true);
    refused_.fetch_add(1, std::memory_order_relaxed);
    refused_limit_.fetch_add(1, std::memory_order_relaxed);
    if (uint64_t skipped = 0; slot.refusal_log.allow(slot.loop->clock(), &skipped)) {
      spdlog::warn("max connections ({}) reached: refused {} {} peers since last report",
                   options_.max_connections, skipped + 1, options_.transport->name());
    }
    return nullptr;
  }
  const uint64_t id = slot.next_id();
  return start_connection(slot, std::make_unique<Connection>(*slot.loop, peer, id, slot.shared));
}

void Server::adopt(Slot& slot, int fd, const PeerAddr& peer) {
  if (slot.stopping) {
    ::close(fd);
    forget(peer, admits_at_accept());  // counted in on_accepted
    return;
  }
  const uint64_t id = slot.next_id();
  // With per-source limits at accept, the address the hold was taken for.
  start_connection(slot, admits_at_accept()
                             ? std::make_unique<Connection>(*slot.loop, fd, peer, id, slot.shared)
                             : std::make_unique<Connection>(*slot.loop, fd, id, slot.shared));
}

Connection* Server::start_connection(Slot& slot, std::unique_ptr<Connection> owned) {
  Connection& conn = *owned;
  const uint64_t id = conn.id();
  if (options_.idle.enabled()) conn.set_idle(options_.idle);
  slot.conns.emplace(id, std::move(owned));
  if (int rc = conn.start(); rc < 0) {
    spdlog::warn("conn #{} {}: refused: {} back end cannot take it: {}", id,
                 conn.peer(), io_name_, std::strerror(-rc));
    auto it = slot.conns.find(id);
    const PeerAddr peer = conn.peer_addr();
    const bool held = !conn.proxy_pending();
    slot.loop->destroy_later(std::move(it->second));  // closes the fd
    slot.conns.erase(it);
    forget(peer, held);
    return nullptr;
  }
  return &conn;
}

ServerLoopTotals Server::loop_totals() const {
  ServerLoopTotals t;
  for (const auto& s : loop_stats_) s->add_to(t);
  return t;
}

LingerStats Server::linger_stats() const {
  auto get = [this](LingerEvent e) {
    return linger_[static_cast<size_t>(e)].load(std::memory_order_relaxed);
  };
  LingerStats s;
  s.started = get(LingerEvent::kStarted);
  s.peer_eof = get(LingerEvent::kPeerEof);
  s.fin_acked = get(LingerEvent::kFinAcked);
  s.cut_by_time = get(LingerEvent::kTimeLimit);
  s.cut_by_bytes = get(LingerEvent::kByteLimit);
  return s;
}

TlsStats Server::tls_stats() const {
  auto get = [this](TlsEvent e) {
    return tls_events_[static_cast<size_t>(e)].load(std::memory_order_relaxed);
  };
  TlsStats s;
  s.resumed = get(TlsEvent::kResumed);
  s.handshakes = get(TlsEvent::kDone) + s.resumed;
  s.failed = get(TlsEvent::kFailed);
  s.timed_out = get(TlsEvent::kTimedOut);
  s.truncated = get(TlsEvent::kTruncated);
  return s;
}

void Server::stop_slot(Slot& slot) {
  handler_.on_server_stop(*slot.loop, slot.index);
  slot.stopping = true;
  if (slot.transport) slot.transport->stop(options_.stop_deadline);  // no new connections
  for (const auto& [handle, id] : slot.timers) slot.loop->cancel(id);
  slot.timers.clear();
  // Closing may release (erase) connections synchronously: iterate a copy.
  std::vector<uint64_t> ids;
  ids.reserve(slot.conns.size());
  for (auto& [id, conn] : slot.conns) ids.push_back(id);
  for (uint64_t id : ids) {
    if (auto it = slot.conns.find(id); it != slot.conns.end()) {
      it->second->close_for_stop(false);
    }
  }
  // Peers that do not take what they are owed get cut off at the deadline.
  Slot* s = &slot;
  slot.loop->run_after(options_.stop_deadline, [s] {
    std::vector<Connection*> left;
    for (auto& [id, conn] : s->conns) left.push_back(conn.get());
    for (Connection* c : left) c->close_for_stop(true);
  });
  // Last resort, for a back end that never releases what it was told to
  // detach: quit anyway (what it holds then leaks). Not at once after the
  // deadline: an aborted connection's on_detached may take a while (an
  // io_uring cancel, a blocking helper thread finishing its call), and
  // quitting first leaked its descriptor (the simulator found it: seed 451
  // of stop_deadline, a 10 ms deadline and a detach that took longer).
  slot.loop->run_after(options_.stop_deadline + std::max<std::chrono::milliseconds>(
                                                    options_.stop_deadline, kDetachGrace),
                       [s] {
    spdlog::error("server stop: loop {} still has {} connections; quitting",
                  s->index, s->conns.size());
    s->loop->quit();
  });
  slot.maybe_quit();
}

void Server::stop(std::chrono::milliseconds deadline) {
  if (!started_ || stopped_) return;
  options_.stop_deadline = deadline;  // read by stop_slot() after the posts below
  stop();
}

void Server::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  {
    // From here on cross-thread calls post nothing; what they posted
    // before is queued ahead of stop_slot() and runs first.
    std::unique_lock lock(run_mu_);
    running_ = false;
  }
  // First stop accepting, and wait for it: after that loop 0 posts no more
  // new connections to the other loops, so none can be posted to a loop
  // that has already quit (its descriptor would leak).
  std::promise<void> accepting_stopped;
  slots_[0]->loop->post([this, &accepting_stopped] {
    if (acceptor_ && !acceptor_->released()) {
      slots_[0]->loop->backend().detach(*acceptor_);
    }
    accepting_stopped.set_value();
  });
  accepting_stopped.get_future().wait();
  for (auto& slot : slots_) {
    Slot* s = slot.get();
    s->loop->post([this, s] { stop_slot(*s); });
  }
  posts_done_.set_value();
  for (auto& slot : slots_) slot->thread.join();
  slots_.clear();
}

bool Server::post_slot(size_t index, std::function<void(Slot&)> fn) {
  std::shared_lock lock(run_mu_);
  if (!running_ || index >= slots_.size()) return false;
  Slot* s = slots_[index].get();
  // The server outlives its loops (stop() joins them): `s` is safe.
  s->loop->post([s, fn = std::move(fn)] { fn(*s); });
  return true;
}

EventLoop& Server::loop(size_t index) { return *slots_.at(index)->loop; }

bool Server::post(size_t index, std::function<void()> fn) {
  return post_slot(index, [fn = std::move(fn)](Slot&) { fn(); });
}

bool Server::run_on(uint64_t id, std::function<void(Connection*)> fn) {
  if (id == 0) return false;
  return post_slot((id - 1) % options_.threads, [id, fn = std::move(fn)](Slot& s) {
    auto it = s.conns.find(id);
    fn(it != s.conns.end() && it->second->alive() ? it->second.get() : nullptr);
  });
}

bool Server::send_to(uint64_t id, std::string payload) {
  return run_on(id, [payload = std::move(payload)](Connection* c) {
    if (c) c->send(payload);
  });
}

bool Server::visit(std::function<void(size_t, Connection&)> fn, std::function<void()> done) {
  struct Job {
    std::function<void(size_t, Connection&)> fn;
    std::function<void()> done;
    std::atomic<size_t> left;
  };
  std::shared_lock lock(run_mu_);
  if (!running_) return false;
  auto job = std::make_shared<Job>();
  job->fn = std::move(fn);
  job->done = std::move(done);
  job->left.store(slots_.size(), std::memory_order_relaxed);
  for (auto& slot : slots_) {
    Slot* s = slot.get();
    s->loop->post([s, job] {
      // A snapshot: fn may close connections, which erases them from
      // conns; the objects live until the end of the iteration.
      std::vector<Connection*> list;
      list.swap(s->scratch);
      for (auto& [id, conn] : s->conns) list.push_back(conn.get());
      for (Connection* c : list) {
        // Not one still waiting for its PROXY header: its handler has
        // not heard on_open, and its address is not the client's yet.
        if (c->is_open() && !c->proxy_pending()) job->fn(s->index, *c);
      }
      list.clear();
      s->scratch.swap(list);
      // acq_rel: the last loop sees what every other loop's fn did.
      if (job->left.fetch_sub(1, std::memory_order_acq_rel) == 1 && job->done) job->done();
    });
  }
  return true;
}

bool Server::for_each(std::function<void(Connection&)> fn, std::function<void()> done) {
  return visit([fn = std::move(fn)](size_t, Connection& c) { fn(c); }, std::move(done));
}

bool Server::broadcast(std::string_view payload, std::function<bool(Connection&)> to) {
  // Framed once; every connection then sends the same bytes.
  auto framed = std::make_shared<std::string>();
  if (codec_) {
    Buffer out;
    if (!codec_->encode(payload, out)) return false;
    framed->assign(out.view());
  } else {
    framed->assign(payload);
  }
  return visit(
      [framed, to = std::move(to)](size_t, Connection& c) {
        if (!to || to(c)) c.send_raw_now(*framed);
      },
      nullptr);
}

ServerTimer Server::add_timer(Clock::duration d, bool repeat, std::function<void()> fn,
                              size_t index) {
  // The handle names its loop, as connection ids do.
  const ServerTimer handle =
      next_timer_.fetch_add(1, std::memory_order_relaxed) * options_.threads + index + 1;
  const bool posted = post_slot(index, [handle, d, repeat, fn = std::move(fn)](Slot& s) {
    if (s.stopping) return;
    Slot* sp = &s;
    const TimerId id =
        repeat ? s.loop->run_every(d, fn)
               : s.loop->run_after(d, [sp, handle, fn] {
                   sp->timers.erase(handle);
                   fn();
                 });
    s.timers[handle] = id;
  });
  return posted ? handle : 0;
}

ServerTimer Server::run_after(Clock::duration delay, std::function<void()> fn, size_t index) {
  return add_timer(delay, false, std::move(fn), index);
}

ServerTimer Server::run_every(Clock::duration interval, std::function<void()> fn,
                              size_t index) {
  return add_timer(interval, true, std::move(fn), index);
}

bool Server::cancel_timer(ServerTimer timer) {
  if (timer == 0) return false;
  return post_slot((timer - 1) % options_.threads, [timer](Slot& s) {
    auto it = s.timers.find(timer);
    if (it == s.timers.end()) return;
    s.loop->cancel(it->second);
    s.timers.erase(it);
  });
}

}  // namespace sluice
