#include "io/epoll.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "base/sys.h"
#include "io/reactor.h"

namespace sluice::io {
namespace {

class EpollPoller final : public Poller {
 public:
  explicit EpollPoller(bool et) : et_(et), events_(128) {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) {
      throw std::runtime_error(std::string("epoll_create1: ") +
                               std::strerror(errno));
    }
  }
  ~EpollPoller() override { ::close(epfd_); }

  int set_interest(int fd, uint32_t interest, void* ctx) override {
    // The kernel keeps the registration; we only need to know whether fd is
    // in the set to choose ADD, MOD or DEL. Descriptors are small ints, so a
    // flat vector indexed by fd is the cheapest map.
    if (static_cast<size_t>(fd) >= registered_.size()) {
      registered_.resize(static_cast<size_t>(fd) * 2 + 64, false);
    }
    const bool known = registered_[fd];
    if (interest == 0) {
      if (!known) return 0;
      registered_[fd] = false;
      if (::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) < 0) return -errno;
      return 0;
    }
    struct epoll_event ev {};
    ev.data.ptr = ctx;
    if (interest & kRead) ev.events |= EPOLLIN;
    if (interest & kWrite) ev.events |= EPOLLOUT;
    if (et_) ev.events |= EPOLLET;
    if (::epoll_ctl(epfd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0) {
      return -errno;
    }
    registered_[fd] = true;
    return 0;
  }

  int wait(std::chrono::milliseconds timeout, int /*progress*/,
           std::vector<Event>& out) override {
    int ms = static_cast<int>(timeout.count());
    for (;;) {
      int n = sys::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), ms);
      if (n < 0) {
        // Interrupted (EINTR also follows SIGSTOP/SIGCONT with no handler
        // installed): the sweep is owed all the same, without blocking.
        if (errno == EINTR) {
          ms = 0;
          continue;
        }
        return -errno;
      }
      for (int i = 0; i < n; ++i) {
        const uint32_t e = events_[i].events;
        uint32_t mapped = 0;
        if (e & (EPOLLIN | EPOLLPRI)) mapped |= kRead;
        if (e & EPOLLOUT) mapped |= kWrite;
        if (e & (EPOLLERR | EPOLLHUP)) mapped |= kError;
        out.push_back({events_[i].data.ptr, mapped});
      }
      if (static_cast<size_t>(n) < events_.size()) return static_cast<int>(out.size());
      // A full batch may have left ready descriptors behind, and the sweep
      // must be complete (Poller::wait). Take the rest now: epoll_wait
      // reports each descriptor at most once per call, so this ends once
      // the array outgrows the registrations. (Level-triggered descriptors
      // reported twice just get one more read attempt.)
      events_.resize(events_.size() * 2);
      ms = 0;
    }
  }

  bool edge_triggered() const override { return et_; }

 private:
  bool et_;
  int epfd_ = -1;
  std::vector<struct epoll_event> events_;
  std::vector<bool> registered_;
};

}  // namespace

std::unique_ptr<Poller> make_epoll_poller(bool edge_triggered) {
  return std::make_unique<EpollPoller>(edge_triggered);
}

std::unique_ptr<Backend> make_epoll_backend(const BackendOptions& options) {
  return std::make_unique<ReactorBackend>(
      options.edge_triggered ? "epoll-et" : "epoll",
      make_epoll_poller(options.edge_triggered));
}

}  // namespace sluice::io
