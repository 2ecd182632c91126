#include "io/nonblocking.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "io/fd_slots.h"
#include "io/poller.h"
#include "io/reactor.h"

namespace sluice::io {
namespace {

using std::chrono::microseconds;

constexpr microseconds kFirstBackoff{20};
constexpr microseconds kMaxBackoff{1000};

// Reports every watched descriptor as ready for what it is interested in;
// the reactor's nonblocking calls find out what is really there.
class RetryPoller final : public Poller {
 public:
  int set_interest(int fd, uint32_t interest, void* ctx) override {
    if (interest == 0) {
      if (slots_.remove(fd, [this](size_t from, size_t to) { entries_[to] = entries_[from]; })) {
        entries_.pop_back();
      }
      return 0;
    }
    int slot = slots_.find(fd);
    if (slot < 0) {
      slots_.add(fd);
      entries_.push_back({interest, ctx});
    } else {
      entries_[slot] = {interest, ctx};
    }
    return 0;
  }

  int wait(std::chrono::milliseconds timeout, int progress,
           std::vector<Event>& out) override {
    if (progress > 0) {
      backoff_ = microseconds{0};
    } else {
      backoff_ = backoff_.count() ? std::min(backoff_ * 2, kMaxBackoff)
                                  : kFirstBackoff;
      microseconds nap = backoff_;
      if (timeout.count() >= 0) nap = std::min<microseconds>(nap, timeout);
      if (nap.count() > 0) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, nap, [this] { return interrupted_; });
        interrupted_ = false;
      }
    }
    for (const Entry& e : entries_) out.push_back({e.ctx, e.interest});
    return static_cast<int>(out.size());
  }

  void interrupt() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      interrupted_ = true;
    }
    cv_.notify_one();
  }

 private:
  struct Entry {
    uint32_t interest;
    void* ctx;
  };
  FdSlots slots_;
  std::vector<Entry> entries_;  // per slot
  microseconds backoff_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool interrupted_ = false;
};

}  // namespace

std::unique_ptr<Backend> make_nonblocking_backend(const BackendOptions&) {
  return std::make_unique<ReactorBackend>("nonblocking",
                                          std::make_unique<RetryPoller>());
}

}  // namespace sluice::io
