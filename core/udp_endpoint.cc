#include "core/udp_endpoint.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/event_loop.h"
#include "core/net.h"

namespace sluice {

UdpEndpoint::UdpEndpoint(EventLoop& loop, int fd, DatagramHandler& handler, Owner& owner,
                         size_t max_queued)
    : io::Channel(fd, Kind::kDatagram),
      loop_(loop),
      handler_(handler),
      owner_(owner),
      max_queued_(max_queued == 0 ? 1 : max_queued) {}

UdpEndpoint::~UdpEndpoint() {
  if (close_timer_ != 0) loop_.cancel(close_timer_);
  // Attached endpoints close their fd in on_detached; one never started
  // still owns it.
  if (state_ == State::kNew) ::close(fd());
}

int UdpEndpoint::start() {
  if (state_ != State::kNew) return -EALREADY;
  int rc = loop_.backend().attach(*this);
  if (rc < 0) {
    ::close(fd());
    state_ = State::kClosed;
    return rc;
  }
  state_ = State::kOpen;
  handler_.on_open(*this);
  return 0;
}

uint16_t UdpEndpoint::local_port() const { return sluice::local_port(fd()); }

bool UdpEndpoint::send_to(const sockaddr* addr, socklen_t len, std::string_view data) {
  if (state_ != State::kOpen || len > sizeof(sockaddr_storage)) return false;
  if (data.size() > io::kMaxDatagram) {
    ++stats_.dropped_too_big;
    return false;
  }
  if (pending() >= max_queued_) {
    ++stats_.dropped_full;
    return false;
  }
  datagrams().push(addr, len, data);
  ++stats_.queued;
  schedule_flush();
  return true;
}

void UdpEndpoint::schedule_flush() {
  if (flush_scheduled_) return;
  flush_scheduled_ = true;
  // `this` stays valid: endpoints are only destroyed through
  // EventLoop::destroy_later, which runs after every deferred task.
  loop_.defer([this] {
    flush_scheduled_ = false;
    if (state_ == State::kOpen) loop_.backend().update(*this);
  });
}

void UdpEndpoint::close() {
  if (state_ != State::kOpen) return;
  state_ = State::kClosing;
  set_want_read(false);
  handler_.on_close(*this);
  finish_close(loop_.clock() + kCloseFlushLimit);
}

// Detaching drops whatever the back end has not sent yet, including what
// it already took from datagrams() (io_uring and blocking move the queue
// into their own), and update() need not send at once (a reactor waiting
// for writability sends on its next event). So wait until every datagram
// is reported finished (on_datagrams_sent), checking every tick, up to a
// bound: a socket the kernel never takes from must not hold the close up
// for long.
void UdpEndpoint::finish_close(Clock::time_point deadline) {
  if (state_ != State::kClosing) return;
  if (pending() > 0 && loop_.clock() < deadline) {
    loop_.backend().update(*this);
    if (state_ != State::kClosing) return;  // a fatal error detached it
    if (pending() > 0) {
      // `this` stays valid: the destructor cancels the timer.
      close_timer_ = loop_.run_after(std::chrono::milliseconds(1), [this, deadline] {
        close_timer_ = 0;
        finish_close(deadline);
      });
      return;
    }
  }
  state_ = State::kDetaching;
  loop_.backend().detach(*this);
}

int UdpEndpoint::abandon() {
  if (state_ == State::kNew || state_ == State::kClosed) return -1;
  if (close_timer_ != 0) {
    loop_.cancel(close_timer_);
    close_timer_ = 0;
  }
  if (state_ == State::kOpen) {
    state_ = State::kClosing;
    handler_.on_close(*this);
  }
  if (state_ == State::kClosing) {
    state_ = State::kDetaching;
    loop_.backend().detach(*this);  // a reactor releases at once
    if (state_ == State::kClosed) return -1;
  }
  // The others release from a wait() that will not come.
  spdlog::warn("udp fd {}: the {} loop stopped before its back end released the socket",
               fd(), loop_.io_name());
  state_ = State::kClosed;
  io.reset();
  return fd();
}

void UdpEndpoint::on_datagram(const io::Datagram& d) {
  if (state_ != State::kOpen) return;
  ++stats_.received;
  handler_.on_datagram(*this, d);
}

void UdpEndpoint::on_datagrams_sent(size_t n) { stats_.sent += n; }

void UdpEndpoint::on_input(std::string_view data) {
  // Only a back end with no datagram path delivers stream bytes here: the
  // sender is unknown, so nothing can be answered. Refuse to limp along.
  const size_t n = data.size();
  if (state_ != State::kOpen) return;
  spdlog::error("udp fd {}: the {} back end delivered {} stream bytes on a datagram "
                "socket (no datagram support); closing",
                fd(), loop_.io_name(), n);
  close();
}

// Back ends report only errors that make the socket unusable (EBADF,
// ENOTSOCK, ENOMEM ..., never a peer's ICMP report), at most once per
// endpoint: one line, saying which error and what it cost.
void UdpEndpoint::on_error(int err) {
  if (state_ != State::kOpen && state_ != State::kClosing) {
    spdlog::debug("udp fd {}: socket error after close: {}", fd(), std::strerror(-err));
    return;
  }
  const bool was_open = state_ == State::kOpen;
  if (was_open) {
    spdlog::warn("udp fd {}: the {} back end reported a socket error: {}; closing the endpoint "
                 "({} datagram(s) unsent)",
                 fd(), loop_.io_name(), std::strerror(-err), pending());
  } else {
    spdlog::warn("udp fd {}: socket error while closing: {}; {} datagram(s) unsent", fd(),
                 std::strerror(-err), pending());
  }
  close_error_ = err;
  state_ = State::kDetaching;
  if (was_open) handler_.on_close(*this);
  loop_.backend().detach(*this);
}

void UdpEndpoint::on_detached() {
  state_ = State::kClosed;
  ::close(fd());
  owner_.release(*this);
}

}  // namespace sluice
