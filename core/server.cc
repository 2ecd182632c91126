#include "core/server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <future>

#include <spdlog/spdlog.h>

namespace sluice {

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

  void on_accept_error(int err) override {
    size_t shed = 0;
    if (err == -EMFILE || err == -ENFILE) shed = shed_pending();
    // Log at most once a second: EMFILE under load would otherwise flood.
    Clock::time_point now = Clock::now();
    ++suppressed_;
    shed_total_ += shed;
    if (now - last_log_ < std::chrono::seconds(1)) return;
    spdlog::warn("accept failed: {} ({} times since last report; {} pending "
                 "connections shed)",
                 std::strerror(-err), suppressed_, shed_total_);
    suppressed_ = 0;
    shed_total_ = 0;
    last_log_ = now;
  }

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
      int c = ::accept4(fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
  Clock::time_point last_log_{};
  uint64_t suppressed_ = 0;
  uint64_t shed_total_ = 0;
  int spare_fd_ = -1;
};

struct Server::Slot final : Connection::Owner {
  Slot(Server& s, std::unique_ptr<EventLoop> l, size_t i)
      : server(s),
        loop(std::move(l)),
        index(i),
        shared{s.handler_, *this, s.codec_.get(), s.options_.limits} {}

  void release(Connection& conn) override {
    auto it = conns.find(conn.id());
    if (it == conns.end()) return;
    loop->destroy_later(std::move(it->second));
    conns.erase(it);
    server.live_.fetch_sub(1, std::memory_order_relaxed);
    maybe_quit();
  }

  void count_linger(LingerEvent event) override {
    server.linger_[static_cast<size_t>(event)].fetch_add(1, std::memory_order_relaxed);
  }

  void maybe_quit() {
    if (!stopping || !conns.empty()) return;
    if (index == 0 && server.acceptor_ && !server.acceptor_->released()) return;
    loop->quit();
  }

  Server& server;
  std::unique_ptr<EventLoop> loop;
  size_t index;
  std::thread thread;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> conns;
  bool stopping = false;
  Connection::Shared shared;  // what this loop's connections share
};

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

  for (size_t i = 0; i < options_.threads; ++i) {
    auto loop = EventLoop::create(options_.io, options_.io_options, error);
    if (!loop) {
      slots_.clear();
      return -ENOTSUP;
    }
    slots_.push_back(std::make_unique<Slot>(*this, std::move(loop), i));
  }
  io_name_ = std::string(slots_[0]->loop->io_name());

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
  acceptor_ = std::make_unique<Acceptor>(fd, *this);
  if (int rc = slots_[0]->loop->backend().attach(*acceptor_); rc < 0) {
    if (error) *error = std::string("cannot watch the listening socket: ") + std::strerror(-rc);
    acceptor_.reset();
    slots_.clear();
    return rc;
  }
  std::shared_future<void> posted = posts_done_.get_future().share();
  for (auto& slot : slots_) {
    Slot* s = slot.get();
    // Each loop is torn down on its own thread: a back end such as
    // io_uring (SINGLE_ISSUER) can only drain its in-flight operations from
    // the thread that drove it.
    s->thread = std::thread([this, s, posted] {
      s->loop->run();
      // post() touches the loop after queueing its task, so the loop may
      // only be destroyed once stop() has finished posting to it.
      posted.wait();
      s->conns.clear();
      if (s->index == 0) acceptor_.reset();
      s->loop.reset();
    });
  }
  started_ = true;
  return 0;
}

void Server::on_accepted(int fd) {
  // live_ counts from here, so a burst cannot overrun the limit while
  // connections are still on their way to their loops.
  const size_t live = live_.fetch_add(1, std::memory_order_relaxed);
  if (options_.max_connections != 0 && live >= options_.max_connections) {
    live_.fetch_sub(1, std::memory_order_relaxed);
    refused_.fetch_add(1, std::memory_order_relaxed);
    ::close(fd);
    ++refusals_unlogged_;
    Clock::time_point now = Clock::now();
    if (now - last_refusal_log_ >= std::chrono::seconds(1)) {
      spdlog::warn("max connections ({}) reached: closed {} new connections "
                   "since last report",
                   options_.max_connections, refusals_unlogged_);
      refusals_unlogged_ = 0;
      last_refusal_log_ = now;
    }
    return;
  }
  if (int rc = apply_tcp_options(fd, options_.tcp); rc < 0) {
    spdlog::debug("accepted fd {}: TCP options: {}", fd, std::strerror(-rc));
  }
  Slot& slot = *slots_[next_slot_++ % slots_.size()];
  if (slot.index == 0) {
    adopt(slot, fd);
  } else {
    // The server outlives its loops (stop() joins them), so `this` is safe.
    slot.loop->post([this, &slot, fd] { adopt(slot, fd); });
  }
}

void Server::adopt(Slot& slot, int fd) {
  if (slot.stopping) {
    ::close(fd);
    live_.fetch_sub(1, std::memory_order_relaxed);  // counted in on_accepted
    return;
  }
  const uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
  auto owned = std::make_unique<Connection>(*slot.loop, fd, id, slot.shared);
  Connection& conn = *owned;
  if (options_.idle.enabled()) conn.set_idle(options_.idle);
  slot.conns.emplace(id, std::move(owned));
  if (int rc = conn.start(); rc < 0) {
    spdlog::warn("conn #{} {}: refused: {} back end cannot take it: {}", id,
                 conn.peer(), io_name_, std::strerror(-rc));
    auto it = slot.conns.find(id);
    slot.loop->destroy_later(std::move(it->second));  // closes the fd
    slot.conns.erase(it);
    live_.fetch_sub(1, std::memory_order_relaxed);
  }
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

void Server::stop_slot(Slot& slot) {
  slot.stopping = true;
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
  slot.loop->run_after(options_.stop_deadline * 2, [s] {
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

}  // namespace sluice
