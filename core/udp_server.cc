#include "core/udp_server.h"

#include <unistd.h>

#include <cstring>
#include <future>

#include <spdlog/spdlog.h>

namespace sluice {

struct UdpServer::Slot final : UdpEndpoint::Owner {
  explicit Slot(std::unique_ptr<EventLoop> l) : loop(std::move(l)) {}

  void release(UdpEndpoint& ep) override {
    if (endpoint.get() != &ep) return;
    loop->destroy_later(std::move(endpoint));
    if (stopping) loop->quit();
  }

  std::unique_ptr<EventLoop> loop;
  std::thread thread;
  std::unique_ptr<UdpEndpoint> endpoint;  // loop thread once running
  bool stopping = false;                  // loop thread
};

UdpServer::UdpServer(UdpServerOptions options, DatagramHandler& handler)
    : options_(std::move(options)), handler_(handler) {
  if (options_.threads == 0) options_.threads = 1;
  if (options_.threads > 1) options_.socket.reuse_port = true;
}

UdpServer::~UdpServer() { stop(); }

int UdpServer::start(std::string* error) {
  if (started_) return 0;
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
    auto loop = EventLoop::create(options_.io, options_.io_options, error);
    if (!loop) {
      close_fds();
      slots_.clear();
      return -ENOTSUP;
    }
    slots_.push_back(std::make_unique<Slot>(std::move(loop)));
  }
  io_name_ = std::string(slots_[0]->loop->io_name());
  for (auto& slot : slots_) {
    EventLoop* loop = slot->loop.get();
    slot->thread = std::thread([loop] { loop->run(); });
  }
  started_ = true;
  // Attach on each loop's own thread, so on_open and every later callback
  // run there; wait for the outcome to report errors synchronously.
  int first_err = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot* s = slots_[i].get();
    const int fd = fds[i];
    std::promise<int> done;
    s->loop->post([this, s, fd, &done] {
      s->endpoint = std::make_unique<UdpEndpoint>(*s->loop, fd, handler_, *s,
                                                  options_.max_queued);
      int rc = s->endpoint->start();
      if (rc < 0) s->endpoint.reset();  // start() closed the fd
      done.set_value(rc);
    });
    int rc = done.get_future().get();
    if (rc < 0 && first_err == 0) {
      first_err = rc;
      for (size_t j = i + 1; j < fds.size(); ++j) ::close(fds[j]);
      break;
    }
  }
  if (first_err < 0) {
    return fail(first_err, "the " + io_name_ + " back end cannot serve UDP: " +
                               std::strerror(-first_err));
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
