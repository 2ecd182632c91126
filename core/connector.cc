#include "core/connector.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/sys.h"
#include "core/event_loop.h"
#include "core/resolve.h"

namespace sluice {

struct Connector::Request {
  enum class State { kNew, kConnecting, kDone };
  EventLoop* loop = nullptr;
  Done done;
  std::vector<SocketAddress> addrs;
  size_t next = 0;  // the address the next attempt goes to
  int last_err = -EHOSTUNREACH;  // the latest attempt's failure
  TcpOptions tcp;
  Clock::time_point deadline;          // the whole request's
  Clock::time_point attempt_deadline;  // the current address's share
  State state = State::kNew;
  int fd = -1;        // while connecting
  int result = 0;     // once done: fd or -errno
  bool cancelled = false;
  bool posted = false;  // deliver() is queued on the loop
};

Connector::Connector() : reqs_(std::make_unique<std::unordered_map<uint64_t, Request>>()) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "connector eventfd");
  }
  thread_ = std::thread([this] { run(); });
}

Connector::~Connector() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake();
  thread_.join();
  for (auto& [id, r] : *reqs_) {
    if (r.state == Request::State::kConnecting && r.fd >= 0) ::close(r.fd);
    if (r.state == Request::State::kDone && r.result >= 0) ::close(r.result);
  }
  ::close(wake_fd_);
}

void Connector::wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof one);
  (void)n;  // a saturated counter still wakes the thread
}

uint64_t Connector::connect(EventLoop& loop, const sockaddr_storage& addr, socklen_t len,
                            std::chrono::milliseconds timeout, const TcpOptions& tcp,
                            Done done) {
  SocketAddress a;
  a.addr = addr;
  a.len = std::min<socklen_t>(len, sizeof addr);
  return connect(loop, std::vector<SocketAddress>{a}, timeout, tcp, std::move(done));
}

uint64_t Connector::connect(EventLoop& loop, std::vector<SocketAddress> addrs,
                            std::chrono::milliseconds timeout, const TcpOptions& tcp,
                            Done done) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_id_++;
    Request& r = (*reqs_)[id];
    r.loop = &loop;
    r.done = std::move(done);
    r.addrs = std::move(addrs);
    r.tcp = tcp;
    r.deadline = Clock::now() + timeout;
  }
  wake();
  return id;
}

bool Connector::cancel(uint64_t id) {
  Done dropped;  // destroyed outside the lock, on the caller's thread
  int fd = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = reqs_->find(id);
    if (it == reqs_->end() || it->second.cancelled) return false;
    Request& r = it->second;
    dropped = std::move(r.done);
    if (r.state == Request::State::kDone) {
      fd = r.result;
      reqs_->erase(it);  // a queued deliver() finds nothing
    } else {
      // The helper thread may be polling r.fd: only it closes the fd.
      r.cancelled = true;
    }
  }
  if (fd >= 0) ::close(fd);
  wake();
  return true;
}

size_t Connector::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reqs_->size();
}

void Connector::finish(Request& r, int result) {
  r.state = Request::State::kDone;
  r.result = result;
  r.fd = -1;
}

// Helper thread, mu_ held: this address failed with err; the next one
// gets its turn (begin() on the next pass), or the request fails.
void Connector::fail_attempt(Request& r, int err) {
  r.last_err = err;
  r.fd = -1;
  if (r.next < r.addrs.size()) {
    r.state = Request::State::kNew;
  } else {
    finish(r, err);
  }
}

// Helper thread, mu_ held: socket + options + nonblocking connect() to the
// next address. Addresses that fail at once (refused on loopback, no
// route, a family this host lacks) make way for the next one here.
void Connector::begin(Request& r, Clock::time_point now) {
  while (r.next < r.addrs.size()) {
    const SocketAddress& a = r.addrs[r.next++];
    const size_t left = r.addrs.size() - r.next + 1;  // this one included
    r.attempt_deadline = now + (r.deadline - now) / static_cast<int>(left);
    int fd = ::socket(a.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      r.last_err = -errno;
      continue;
    }
    if (int rc = apply_tcp_options(fd, r.tcp); rc < 0) {
      spdlog::debug("connector: TCP options: {}", std::strerror(-rc));
    }
    if (::connect(fd, a.sa(), a.len) == 0) {
      finish(r, fd);  // loopback can complete at once
      return;
    }
    const int err = errno;
    if (err == EINPROGRESS || err == EINTR) {  // EINTR: it goes on in the background
      r.fd = fd;
      r.state = Request::State::kConnecting;
      return;
    }
    ::close(fd);
    r.last_err = -err;
  }
  finish(r, r.last_err);
}

void Connector::run() {
  std::vector<pollfd> pfds;
  std::vector<uint64_t> ids;
  std::vector<std::pair<EventLoop*, uint64_t>> ready;
  for (;;) {
    pfds.clear();
    ids.clear();
    ready.clear();
    int timeout_ms = -1;
    std::vector<Done> dropped;  // cancelled callbacks, destroyed unlocked
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      const Clock::time_point now = Clock::now();
      for (auto it = reqs_->begin(); it != reqs_->end();) {
        Request& r = it->second;
        if (r.cancelled) {
          if (r.state == Request::State::kConnecting) ::close(r.fd);
          if (r.state == Request::State::kDone && r.result >= 0) ::close(r.result);
          dropped.push_back(std::move(r.done));
          it = reqs_->erase(it);
          continue;
        }
        if (r.state == Request::State::kNew) begin(r, now);
        if (r.state == Request::State::kConnecting && now >= r.attempt_deadline) {
          // This address's share is spent: the next one, if time is left.
          ::close(r.fd);
          fail_attempt(r, -ETIMEDOUT);
          if (now >= r.deadline) finish(r, -ETIMEDOUT);
          if (r.state == Request::State::kNew) begin(r, now);
        }
        if (r.state == Request::State::kConnecting) {
          pfds.push_back({r.fd, POLLOUT, 0});
          ids.push_back(it->first);
          const auto left = std::max<int64_t>(
              0, std::chrono::ceil<std::chrono::milliseconds>(r.attempt_deadline - now).count());
          timeout_ms = timeout_ms < 0 ? static_cast<int>(left)
                                      : std::min(timeout_ms, static_cast<int>(left));
        }
        if (r.state == Request::State::kDone && !r.posted) {
          r.posted = true;
          ready.emplace_back(r.loop, it->first);
        }
        ++it;
      }
    }
    dropped.clear();
    // `this` outlives the tasks (see Lifetime in the header).
    for (auto& [loop, id] : ready) loop->post([this, id = id] { deliver(id); });
    pfds.push_back({wake_fd_, POLLIN, 0});
    int n = sys::poll(pfds.data(), pfds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) {
      spdlog::error("connector: poll: {}", std::strerror(errno));
      return;
    }
    if (pfds.back().revents & POLLIN) {
      uint64_t v;
      ssize_t r = ::read(wake_fd_, &v, sizeof v);
      (void)r;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t k = 0; k + 1 < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      auto it = reqs_->find(ids[k]);
      if (it == reqs_->end()) continue;
      Request& r = it->second;
      if (r.cancelled || r.state != Request::State::kConnecting || r.fd != pfds[k].fd) continue;
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(r.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
      if (err == 0 && (pfds[k].revents & POLLOUT)) {
        finish(r, r.fd);
      } else {
        ::close(r.fd);
        fail_attempt(r, -(err ? err : ECONNREFUSED));  // the next address, if any
      }
    }
  }
}

void Connector::deliver(uint64_t id) {
  Done done;
  int result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = reqs_->find(id);
    if (it == reqs_->end()) return;  // cancelled
    result = it->second.result;
    done = std::move(it->second.done);
    reqs_->erase(it);
  }
  if (done) {
    done(result);
  } else if (result >= 0) {
    ::close(result);
  }
}

}  // namespace sluice
