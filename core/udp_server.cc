#include "core/udp_server.h"

#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>

#include <spdlog/spdlog.h>

#include "core/log.h"

namespace sluice {

// A slot is also the handler's gate when per-source limits are on: it
// passes on what the limiter admits (on_open and on_close always).
struct UdpServer::Slot final : UdpEndpoint::Owner, DatagramHandler {
  Slot(std::unique_ptr<EventLoop> l, UdpServer& s) : loop(std::move(l)), server(s) {
    if (s.options_.per_source.rate > 0) sources.emplace(s.options_.per_source);
  }
  ~Slot() {
    endpoint.reset();
    loop.reset();  // the back end is gone: nothing uses orphan_fd any more
    if (orphan_fd >= 0) ::close(orphan_fd);
  }

  void on_open(UdpEndpoint& ep) override { server.handler_.on_open(ep); }
  void on_close(UdpEndpoint& ep) override { server.handler_.on_close(ep); }
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
    const PeerAddr peer = PeerAddr::from(d.addr, d.addr_len);
    if (sources->admit(peer, loop->clock(), /*hold=*/false) != SourceVerdict::kAdmit) {
      server.limited_.fetch_add(1, std::memory_order_relaxed);
      if (uint64_t skipped = 0; log.allow(loop->clock(), &skipped)) {
        spdlog::warn("udp per-source limit: dropped datagrams from {} ({} since last report)",
                     peer.str(), skipped + 1);
      }
      return;
    }
    server.handler_.on_datagram(ep, d);
  }

  void release(UdpEndpoint& ep) override {
    if (endpoint.get() != &ep) return;
    loop->destroy_later(std::move(endpoint));
    if (stopping) loop->quit();
  }

  // The loop thread: run() returns on quit() or when the back end's wait()
  // fails. An endpoint still here was never released (a dead loop, or
  // stop()'s deadline passed): close it now, on its own thread, instead of
  // leaking the socket without on_close.
  void run() {
    loop->run();
    if (endpoint) {
      orphan_fd = endpoint->abandon();
      endpoint.reset();
    }
    {
      std::lock_guard<std::mutex> lock(m);
      exited = true;
    }
    cv.notify_all();
  }

  std::unique_ptr<EventLoop> loop;
  UdpServer& server;
  std::optional<SourceLimiter> sources;  // per-source limits on
  LogLimiter log;
  std::thread thread;
  std::unique_ptr<UdpEndpoint> endpoint;  // loop thread once running
  bool stopping = false;                  // loop thread
  int orphan_fd = -1;  // abandoned socket, closed after the loop (above)
  // start()'s wait for the attach task, which a loop that died first never
  // runs (nothing runs posted tasks after run() returns).
  std::mutex m;
  std::condition_variable cv;
  std::optional<int> attach_rc;  // guarded by m
  bool exited = false;           // guarded by m: run() has returned
};

UdpServer::UdpServer(UdpServerOptions options, DatagramHandler& handler)
    : options_(std::move(options)), handler_(handler) {
  if (options_.threads == 0) options_.threads = 1;
  if (options_.threads > 1) options_.socket.reuse_port = true;
}

UdpServer::~UdpServer() { stop(); }

int UdpServer::start(std::string* error) {
  if (started_) return 0;
  spdlog::default_logger_raw();
  if (std::string why = options_.per_source.validate(); !why.empty()) {
    if (error) *error = "per-source limits: " + why;
    return -EINVAL;
  }  // before the loops log (see Server::start)
  auto fail = [&](int rc, std::string why) {
    if (error) *error = std::move(why);
    stop();  // closes what did start and joins the threads
    started_ = stopped_ = false;
    return rc;
  };
  // Bind every socket first: a port clash fails before any thread starts.
  std::vector<int> fds;
  auto close_fds = [&] {
    for (int fd : fds) ::close(fd);
    fds.clear();
  };
  uint16_t port = options_.port;
  for (size_t i = 0; i < options_.threads; ++i) {
    int fd = bind_udp(options_.host, port, options_.socket);
    if (fd < 0) {
      close_fds();
      if (error) {
        *error = "cannot bind UDP " + options_.host + ":" + std::to_string(port) + ": " +
                 std::strerror(-fd);
      }
      return fd;
    }
    if (i == 0) port = local_port(fd);
    fds.push_back(fd);
  }
  port_ = port;
  for (size_t i = 0; i < options_.threads; ++i) {
    auto loop = EventLoop::create(options_.backend_factory, i, options_.io, options_.io_options, error);
    if (!loop) {
      close_fds();
      slots_.clear();
      return -ENOTSUP;
    }
    slots_.push_back(std::make_unique<Slot>(std::move(loop), *this));
  }
  io_name_ = std::string(slots_[0]->loop->io_name());
  for (auto& slot : slots_) {
    Slot* s = slot.get();
    slot->thread = std::thread([s] { s->run(); });
  }
  started_ = true;
  // Attach on each loop's own thread, so on_open and every later callback
  // run there; wait for the outcome to report errors synchronously.
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot* s = slots_[i].get();
    const int fd = fds[i];
    s->loop->post([this, s, fd] {
      DatagramHandler& h = s->sources ? static_cast<DatagramHandler&>(*s) : handler_;
      s->endpoint = std::make_unique<UdpEndpoint>(*s->loop, fd, h, *s, options_.max_queued);
      int rc = s->endpoint->start();
      if (rc < 0) s->endpoint.reset();  // start() closed the fd
      {
        std::lock_guard<std::mutex> lock(s->m);
        s->attach_rc = rc;
      }
      s->cv.notify_all();
    });
    int rc;
    bool died;
    {
      std::unique_lock<std::mutex> lock(s->m);
      s->cv.wait(lock, [s] { return s->attach_rc.has_value() || s->exited; });
      died = s->exited;
      if (!s->attach_rc) ::close(fd);  // the task never ran: the fd is still ours
      rc = s->attach_rc.value_or(-EIO);
    }
    if (rc < 0 || died) {
      for (size_t j = i + 1; j < fds.size(); ++j) ::close(fds[j]);
      if (rc < 0 && !died) {
        return fail(rc, "the " + io_name_ + " back end cannot serve UDP: " + std::strerror(-rc));
      }
      return fail(-EIO, "the " + io_name_ + " loop stopped (its back end failed) while starting");
    }
  }
  return 0;
}

void UdpServer::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  for (auto& slot : slots_) {
    Slot* s = slot.get();
    const auto deadline = options_.stop_deadline;
    s->loop->post([s, deadline] {
      s->stopping = true;
      if (!s->endpoint) {
        s->loop->quit();
        return;
      }
      s->endpoint->close();  // release() quits the loop
      if (s->endpoint) {
        s->loop->run_after(deadline, [s] {
          spdlog::error("udp server stop: the back end did not release its socket; quitting");
          s->loop->quit();
        });
      }
    });
  }
  for (auto& slot : slots_) slot->thread.join();
  slots_.clear();
}

}  // namespace sluice
