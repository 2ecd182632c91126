// ReactorBackend: adapts a readiness Poller to the completion-style
// Backend interface. It performs the actual accept/read/write when the
// poller says a descriptor is ready, and reports completions to channels.
//
// Thread rules: as Backend (loop thread only; wakeup() from any thread).
//
// Invariants:
//  * Channels are registered with the poller under their own pointer, so a
//    stale event for a channel detached earlier in the same batch is
//    recognised (its state says detached) even if its fd number was reused.
//  * A channel with no interest is not registered at all, so a paused
//    reader cannot spin on a hang-up it is not ready to handle.
//  * Writes are attempted directly from update() (muduo's fast path): the
//    write interest is only registered while output is left over.
//  * Stream reads land in one buffer per backend (per loop), handed to
//    on_input as a view; output storage is released once it is sent. A
//    connection that holds no bytes holds no buffer.
//  * UDP channels move datagrams in batches (recvmmsg/sendmmsg): one
//    syscall for up to kBatch datagrams each way. A handler that turns
//    want_read() off mid-batch gets no more of it: the rest is held per
//    channel and delivered first when reading resumes.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "io/backend.h"
#include "io/poller.h"

namespace sluice::io {

class ReactorBackend final : public Backend {
 public:
  ReactorBackend(std::string name, std::unique_ptr<Poller> poller);
  ~ReactorBackend() override;

  std::string_view name() const override { return name_; }
  int attach(Channel& ch) override;
  void update(Channel& ch) override;
  void detach(Channel& ch) override;
  int wait(std::chrono::milliseconds timeout) override;
  void wakeup() override;
  ssize_t send_now(Channel& ch, std::string_view bytes) override;

 private:
  struct State;
  State& state(Channel& ch);
  int apply_interest(Channel& ch, State& st);
  void handle(Channel& ch, uint32_t events);
  void handle_accept(Channel& ch);
  void retry_at(Channel& ch, std::chrono::steady_clock::time_point due);
  void run_retries();
  void handle_read(Channel& ch, State& st);
  void handle_write(Channel& ch, State& st);
  void handle_recv_datagrams(Channel& ch, State& st);
  bool deliver_held_datagrams(Channel& ch, State& st);
  void handle_send_datagrams(Channel& ch, State& st);
  void fail(Channel& ch, State& st, int err);

  std::string name_;
  std::unique_ptr<Poller> poller_;
  int wake_fd_ = -1;
  std::atomic<bool> wake_pending_{false};
  std::vector<Poller::Event> events_;
  int progress_ = 0;  // work done in the current pass
  // Channels to serve again without a poller event. Listeners: one that stopped
  // at kMaxAcceptsPerEvent under edge triggering (due now), or one paused
  // after running out of descriptors (due after a back-off). Also datagram
  // channels whose reading resumed with datagrams held back (due now): no
  // poller event may come for those.
  struct Retry {
    Channel* ch;
    std::chrono::steady_clock::time_point due;
  };
  std::vector<Retry> retries_;
  // The loop's one read buffer: every stream recv lands here and is handed
  // to on_input as a view, so no connection needs an input buffer of its
  // own (allocated on first stream use).
  std::unique_ptr<char[]> read_buf_;
  struct DatagramSlab;  // recvmmsg buffers, allocated on first UDP use
  std::unique_ptr<DatagramSlab> dgram_;
};

// Makes fd nonblocking (and keeps other flags). Returns 0 or -errno.
int set_nonblocking(int fd, bool on);

}  // namespace sluice::io
