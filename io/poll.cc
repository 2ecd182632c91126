#include "io/poll.h"

#include <poll.h>

#include <cerrno>

#include "io/poller.h"
#include "io/reactor.h"

namespace sluice::io {
namespace {

class PollPoller final : public Poller {
 public:
  int set_interest(int fd, uint32_t interest, void* ctx) override {
    if (static_cast<size_t>(fd) >= index_.size()) {
      index_.resize(static_cast<size_t>(fd) * 2 + 64, -1);
    }
    int& slot = index_[fd];
    if (interest == 0) {
      if (slot < 0) return 0;
      // Swap-remove keeps the array dense so poll() scans no holes.
      const size_t last = fds_.size() - 1;
      if (static_cast<size_t>(slot) != last) {
        fds_[slot] = fds_[last];
        ctxs_[slot] = ctxs_[last];
        index_[fds_[slot].fd] = slot;
      }
      fds_.pop_back();
      ctxs_.pop_back();
      slot = -1;
      return 0;
    }
    short events = 0;
    if (interest & kRead) events |= POLLIN;
    if (interest & kWrite) events |= POLLOUT;
    if (slot < 0) {
      slot = static_cast<int>(fds_.size());
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
    int n = ::poll(fds_.data(), fds_.size(), static_cast<int>(timeout.count()));
    if (n < 0) return errno == EINTR ? 0 : -errno;
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
  std::vector<struct pollfd> fds_;
  std::vector<void*> ctxs_;
  std::vector<int> index_;  // fd -> slot in fds_, -1 if not watched
};

}  // namespace

std::unique_ptr<Backend> make_poll_backend(const BackendOptions&) {
  return std::make_unique<ReactorBackend>("poll", std::make_unique<PollPoller>());
}

}  // namespace sluice::io
