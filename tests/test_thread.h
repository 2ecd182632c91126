// Threads in tests that are never left joinable (issue 13).
//
// A std::thread still joinable when its scope ends calls std::terminate
// ("terminate called without an active exception"): an ASSERT_* that
// returns from the test body early then aborts the whole binary, and the
// sanitizer run loses every later test. TestThread is std::jthread: its
// destructor asks the thread to stop (std::stop_token) and joins. So a
// thread body that waits for something must watch its token or be bounded
// by a timeout, else the join waits for it; a body blocked in a socket call
// can install unblock_on_stop() to have the socket shut down on the
// request.
//
// Declare the thread AFTER what it uses (server, sockets, counters): it is
// then destroyed, i.e. stopped and joined, first.
//
// Thread rules: the stop request comes from the owning (test) thread; the
// callbacks below run on whichever thread calls request_stop().
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <stop_token>
#include <thread>
#include <vector>

namespace sluice::testing {

using TestThread = std::jthread;

// Shuts `fd` down (both directions) when `st` is asked to stop, so a
// thread blocked in recv/send/connect on it returns at once. Lives on the
// thread's own stack; the fd must outlive it.
class UnblockOnStop {
 public:
  UnblockOnStop(const std::stop_token& st, int fd)
      : cb_(st, Shut{fd}) {}

 private:
  struct Shut {
    int fd;
    void operator()() const {
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
    }
  };
  std::stop_callback<Shut> cb_;
};

// A TestThread running `body`, for bodies that end on a flag or a call of
// their own (a loop's quit(), a Pinger's stop(), `done = true`) rather
// than on the stop token: a stop request (the destructor's too) runs
// `on_stop` on the requesting thread first, so the join that follows
// cannot wait forever. on_stop must be safe to call from another thread,
// and more than once.
template <class Body, class OnStop>
TestThread stoppable_thread(Body body, OnStop on_stop) {
  return TestThread([body = std::move(body), on_stop = std::move(on_stop)](std::stop_token st) mutable {
    // Registered before body runs; a stop already requested runs it at once.
    std::stop_callback cb(st, on_stop);
    body();
  });
}

// Sleeps in 1 ms steps until pred(), a stop request, or `limit`; returns
// pred() at the end.
inline bool wait_until(const std::stop_token& st, const std::function<bool()>& pred,
                       std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred() && !st.stop_requested() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// Asks every thread to stop, then joins them all (the vector's destructor
// would do both, but one at a time: a thread that waits for its siblings'
// stop would hold up the rest).
inline void stop_and_join(std::vector<TestThread>& threads) {
  for (auto& t : threads) t.request_stop();
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
}

}  // namespace sluice::testing
