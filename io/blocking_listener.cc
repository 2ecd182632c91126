// Listeners on the blocking back end: the acceptor thread (blocking
// accept4, the max_conns cap, back-off after errors) and delivery on the
// loop thread (on_accept, on_accept_error). See io/blocking.h for the
// model.
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>

#include <spdlog/spdlog.h>

#include "base/sys.h"
#include "io/blocking_impl.h"

namespace sluice::io::blocking_internal {
namespace {

// Acceptor back-off after an accept error.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);
// Undelivered accept errors kept per listener (older ones are dropped).
constexpr size_t kMaxQueuedAcceptErrors = 64;

}  // namespace

// ---------------------------------------------------------------- threads

void BlockingBackend::acceptor_loop(Conn& c) {
  await_start(c);
  // Refusals over max_conns: the first after a quiet second is logged at
  // once, later ones are counted and reported with the next line (or when
  // the acceptor accepts normally again / exits).
  Clock::time_point last_refuse_log{};
  size_t refused = 0;
  auto report_refused = [&](Clock::time_point now) {
    spdlog::warn(
        "blocking: listener fd {}: max_conns ({}) reached, refused {} "
        "connection(s)",
        c.fd, max_conns_, refused);
    last_refuse_log = now;
    refused = 0;
  };
  Clock::time_point last_err_log{};
  int last_err = 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(c.m);
      if (c.stopping) break;
    }
    const int fd = sys::accept4(c.fd, nullptr, nullptr, SOCK_CLOEXEC);
    const int err = fd < 0 ? errno : 0;
    if (fd >= 0) {
      last_err = 0;
      bool refuse = false, stop = false;
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) {
          stop = true;
        } else if (served_.fetch_add(1, std::memory_order_acq_rel) >=
                   max_conns_) {
          served_.fetch_sub(1, std::memory_order_acq_rel);
          refuse = true;
        } else {
          c.accepted.push_back(fd);
        }
      }
      if (stop) {
        ::close(fd);
        break;
      }
      if (refuse) {
        ::close(fd);
        ++refused;
        const auto now = Clock::now();
        if (now - last_refuse_log >= std::chrono::seconds(1)) {
          report_refused(now);
        }
        continue;
      }
      if (refused > 0) report_refused(Clock::now());
      post(c);
      continue;
    }
    if (err == EINTR || err == ECONNABORTED) continue;
    {
      std::unique_lock<std::mutex> lk(c.m);
      if (c.stopping) break;
      if (c.accept_errors.size() >= kMaxQueuedAcceptErrors) {
        c.accept_errors.pop_front();
      }
      c.accept_errors.push_back(-err);
    }
    const auto now = Clock::now();
    if (err != last_err || now - last_err_log >= std::chrono::seconds(1)) {
      spdlog::warn("blocking: listener fd {}: accept: {}", c.fd,
                   std::strerror(err));
      last_err_log = now;
      last_err = err;
    }
    post(c);
    std::unique_lock<std::mutex> lk(c.m);
    c.reader_cv.wait_for(lk, kAcceptBackoff, [&] { return c.stopping; });
  }
  if (refused > 0) report_refused(Clock::now());
  reader_exit(c);
}

// ------------------------------------------------------------- loop side

int BlockingBackend::dispatch_listener(Conn& c) {
  std::deque<int> fds;
  std::deque<int> errs;
  {
    std::lock_guard<std::mutex> lk(c.m);
    fds.swap(c.accepted);
    errs.swap(c.accept_errors);
  }
  int events = 0;
  for (int fd : fds) {
    if (c.detaching || c.ch == nullptr) {
      ::close(fd);
    } else {
      c.ch->on_accept(fd);  // the callee attaches (served_ +1) or closes
      ++events;
    }
    served_.fetch_sub(1, std::memory_order_acq_rel);
  }
  for (int err : errs) {
    if (c.detaching || c.ch == nullptr) break;
    c.ch->on_accept_error(err);
    ++events;
  }
  return events;
}

}  // namespace sluice::io::blocking_internal
