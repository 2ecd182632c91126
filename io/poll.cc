#include "io/poll.h"

#include <poll.h>

#include <cerrno>

#include "base/sys.h"
#include "io/fd_slots.h"
#include "io/poller.h"
#include "io/reactor.h"

namespace sluice::io {
namespace {

class PollPoller final : public Poller {
 public:
  int set_interest(int fd, uint32_t interest, void* ctx) override {
    if (interest == 0) {
      if (slots_.remove(fd, [this](size_t from, size_t to) {
            fds_[to] = fds_[from];
            ctxs_[to] = ctxs_[from];
          })) {
        fds_.pop_back();
        ctxs_.pop_back();
      }
      return 0;
    }
    short events = 0;
    if (interest & kRead) events |= POLLIN;
    if (interest & kWrite) events |= POLLOUT;
    int slot = slots_.find(fd);
    if (slot < 0) {
      slots_.add(fd);
      fds_.push_back({fd, events, 0});
      ctxs_.push_back(ctx);
    } else {
      fds_[slot].events = events;
      ctxs_[slot] = ctx;
    }
    return 0;
  }

  int wait(std::chrono::milliseconds timeout, int /*progress*/,
           std::vector<Event>& out) override {
    int n = sys::poll(fds_.data(), fds_.size(), static_cast<int>(timeout.count()));
    // Interrupted: the sweep is owed all the same (Poller::wait).
    while (n < 0 && errno == EINTR) n = sys::poll(fds_.data(), fds_.size(), 0);
    if (n < 0) return -errno;
    for (size_t i = 0; i < fds_.size() && n > 0; ++i) {
      const short re = fds_[i].revents;
      if (re == 0) continue;
      --n;
      uint32_t mapped = 0;
      if (re & (POLLIN | POLLPRI)) mapped |= kRead;
      if (re & POLLOUT) mapped |= kWrite;
      if (re & (POLLERR | POLLHUP | POLLNVAL)) mapped |= kError;
      out.push_back({ctxs_[i], mapped});
    }
    return static_cast<int>(out.size());
  }

 private:
  FdSlots slots_;
  std::vector<struct pollfd> fds_;  // per slot, contiguous for poll()
  std::vector<void*> ctxs_;         // per slot
};

}  // namespace

std::unique_ptr<Backend> make_poll_backend(const BackendOptions&) {
  return std::make_unique<ReactorBackend>("poll", std::make_unique<PollPoller>());
}

}  // namespace sluice::io
