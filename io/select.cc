#include "io/select.h"

#include <sys/select.h>

#include <algorithm>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "base/sys.h"
#include "io/poller.h"
#include "io/reactor.h"

namespace sluice::io {
namespace {

class SelectPoller final : public Poller {
 public:
  SelectPoller() : ctx_(FD_SETSIZE, nullptr), interest_(FD_SETSIZE, 0) {
    FD_ZERO(&read_);
    FD_ZERO(&write_);
  }

  int set_interest(int fd, uint32_t interest, void* ctx) override {
    if (fd < 0 || fd >= FD_SETSIZE) {
      if (interest == 0) return 0;
      // FD_SET beyond the bitmap would corrupt memory: refuse instead. The
      // caller logs the refusal per connection; this says why, once a second.
      auto now = std::chrono::steady_clock::now();
      ++refused_;
      if (now - last_log_ >= std::chrono::seconds(1)) {
        spdlog::warn("select: cannot watch fd {} (>= FD_SETSIZE {}); {} such "
                     "descriptors refused since the last report",
                     fd, FD_SETSIZE, refused_);
        refused_ = 0;
        last_log_ = now;
      }
      return -EMFILE;
    }
    if (interest & kRead) FD_SET(fd, &read_); else FD_CLR(fd, &read_);
    if (interest & kWrite) FD_SET(fd, &write_); else FD_CLR(fd, &write_);
    ctx_[fd] = interest ? ctx : nullptr;
    interest_[fd] = interest;
    if (interest && fd > max_fd_) max_fd_ = fd;
    while (max_fd_ >= 0 && interest_[max_fd_] == 0) --max_fd_;
    return 0;
  }

  int wait(std::chrono::milliseconds timeout, int /*progress*/,
           std::vector<Event>& out) override {
    // select() overwrites its sets, so it gets copies.
    fd_set rd = read_, wr = write_;
    struct timeval tv, *tvp = nullptr;
    if (timeout.count() >= 0) {
      tv.tv_sec = timeout.count() / 1000;
      tv.tv_usec = (timeout.count() % 1000) * 1000;
      tvp = &tv;
    }
    int n = sys::select(max_fd_ + 1, &rd, &wr, nullptr, tvp);
    // Interrupted: the sweep is owed all the same (Poller::wait). The sets
    // are undefined after a failed select(), so they are copied afresh.
    while (n < 0 && errno == EINTR) {
      rd = read_;
      wr = write_;
      struct timeval zero {};
      n = sys::select(max_fd_ + 1, &rd, &wr, nullptr, &zero);
    }
    if (n < 0) return -errno;
    for (int fd = 0; fd <= max_fd_ && n > 0; ++fd) {
      uint32_t mapped = 0;
      if (FD_ISSET(fd, &rd)) mapped |= kRead;
      if (FD_ISSET(fd, &wr)) mapped |= kWrite;
      if (!mapped) continue;
      n -= __builtin_popcount(mapped);
      out.push_back({ctx_[fd], mapped});
    }
    return static_cast<int>(out.size());
  }

 private:
  fd_set read_, write_;
  std::vector<void*> ctx_;
  std::vector<uint32_t> interest_;
  int max_fd_ = -1;
  std::chrono::steady_clock::time_point last_log_{};
  uint64_t refused_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_select_backend(const BackendOptions&) {
  return std::make_unique<ReactorBackend>("select",
                                          std::make_unique<SelectPoller>());
}

}  // namespace sluice::io
