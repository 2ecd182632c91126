#include "io/reactor.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "base/sys.h"

namespace sluice::io {

struct ReactorBackend::State final : ChannelState {
  uint32_t interest = 0;  // what is registered with the poller now
  bool attached = true;
  bool eof = false;     // read side finished: never read again
  bool failed = false;  // socket error reported: no more IO at all
  // The last write left output behind (socket buffer full). Only then is
  // write interest registered; otherwise update() writes directly, which
  // saves an epoll_ctl pair and a loop round trip per message.
  bool write_blocked = false;
  bool accept_paused = false;  // listener: out of descriptors, backing off
  // Datagram channel: the rest of a recvmmsg batch whose handler turned
  // want_read() off mid-batch (at most kBatch - 1), delivered first once
  // reading resumes. Null when empty.
  std::unique_ptr<DatagramQueue> held;
};

namespace {
// Datagrams per recvmmsg/sendmmsg call.
constexpr size_t kBatch = 32;
// The loop's stream read buffer: one recv takes up to this much (like
// libuv's 64 KiB read callback buffer).
constexpr size_t kReadBuffer = 64 * 1024;
// A burst of connections is taken in one go, but bounded so one listener
// cannot starve the loop's other channels.
constexpr int kMaxAcceptsPerEvent = 64;
// After accept failed for lack of a resource (EMFILE, ENFILE, ENOBUFS,
// ENOMEM) the listener stops being watched for this long: a level-triggered
// poller would otherwise report it again at once and the loop would spin,
// and an edge-triggered one might never report it again. Same as the
// blocking back end's back-off.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(50);

bool resource_shortage(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}
}  // namespace

struct ReactorBackend::DatagramSlab {
  std::vector<char> bytes = std::vector<char>(kBatch * kMaxDatagram);
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  sockaddr_storage addrs[kBatch];
  // Per message: room for the TOS / traffic-class cmsg (Datagram::ecn).
  alignas(cmsghdr) char control[kBatch][kEcnControlSize];
};

int set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0) return -errno;
  int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (want != flags && ::fcntl(fd, F_SETFL, want) < 0) return -errno;
  return 0;
}

ReactorBackend::ReactorBackend(std::string name, std::unique_ptr<Poller> poller)
    : name_(std::move(name)), poller_(std::move(poller)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  }
  int rc = poller_->set_interest(wake_fd_, Poller::kRead, nullptr);
  if (rc < 0) {
    ::close(wake_fd_);
    throw std::runtime_error(std::string("poller: cannot watch eventfd: ") +
                             std::strerror(-rc));
  }
  events_.reserve(256);
}

ReactorBackend::~ReactorBackend() {
  poller_->set_interest(wake_fd_, 0, nullptr);
  ::close(wake_fd_);
}

ReactorBackend::State& ReactorBackend::state(Channel& ch) {
  return static_cast<State&>(*ch.io);
}

int ReactorBackend::attach(Channel& ch) {
  // Taking it again would replace its state under the poller's feet.
  if (ch.io) return -EEXIST;
  int rc = set_nonblocking(ch.fd(), true);
  if (rc < 0) return rc;
  ch.io = std::make_unique<State>();
  rc = apply_interest(ch, state(ch));
  if (rc < 0) ch.io.reset();
  return rc;
}

int ReactorBackend::apply_interest(Channel& ch, State& st) {
  uint32_t want = 0;
  if (st.attached && !st.failed) {
    if (ch.kind() == Channel::Kind::kListener) {
      want = st.accept_paused ? 0u : uint32_t{Poller::kRead};
    } else {
      if (ch.want_read() && !st.eof) want |= Poller::kRead;
      const bool owed = ch.kind() == Channel::Kind::kStream ? !ch.output().empty()
                                                            : !ch.datagrams().empty();
      if (st.write_blocked && owed) want |= Poller::kWrite;
    }
  }
  if (want == st.interest) return 0;
  int rc = poller_->set_interest(ch.fd(), want, &ch);
  if (rc == 0) st.interest = want;
  return rc;
}

void ReactorBackend::update(Channel& ch) {
  State& st = state(ch);
  if (!st.attached) return;
  // Fast path: write now instead of waiting a round trip for writability.
  if (!st.write_blocked) {
    if (ch.kind() == Channel::Kind::kStream) {
      if (!ch.output().empty()) handle_write(ch, st);
    } else if (ch.kind() == Channel::Kind::kDatagram) {
      if (!ch.datagrams().empty()) handle_send_datagrams(ch, st);
    }
    if (!st.attached) return;
  }
  // Reading resumed with datagrams held back: deliver them from wait(),
  // like io_uring and blocking, not from inside update() (which a handler
  // may call from its own callback).
  if (st.held && ch.want_read()) retry_at(ch, now());
  int rc = apply_interest(ch, st);
  if (rc < 0) fail(ch, st, rc);
}

void ReactorBackend::detach(Channel& ch) {
  State& st = state(ch);
  if (!st.attached) return;
  st.attached = false;
  if (ch.kind() != Channel::Kind::kStream) {  // listeners, held datagrams
    retries_.erase(std::remove_if(retries_.begin(), retries_.end(),
                                       [&ch](const Retry& r) { return r.ch == &ch; }),
                        retries_.end());
  }
  if (st.interest) poller_->set_interest(ch.fd(), 0, nullptr);
  st.interest = 0;
  ch.on_detached();
}

int ReactorBackend::wait(std::chrono::milliseconds timeout) {
  if (!retries_.empty()) {
    const auto t = now();
    for (const Retry& r : retries_) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(r.due - t);
      if (left.count() < 0) left = std::chrono::milliseconds(0);
      if (timeout.count() < 0 || left < timeout) timeout = left;
    }
  }
  events_.clear();
  int rc = poller_->wait(timeout, progress_, events_);
  progress_ = 0;
  if (rc < 0) return rc;
  for (const Poller::Event& ev : events_) {
    if (ev.ctx == nullptr) {
      // Drain first, then clear the flag. A wakeup() between the two sees
      // the flag still set and skips its write, which is fine: the loop
      // runs its posted queue after wait() returns. Clearing first would
      // let that wakeup's write be drained here while its flag stays set,
      // and every later wakeup() would then be skipped (a lost wakeup).
      uint64_t v;
      if (::read(wake_fd_, &v, sizeof v) == sizeof v) ++progress_;
      wake_pending_.store(false, std::memory_order_release);
      continue;
    }
    handle(*static_cast<Channel*>(ev.ctx), ev.events);
  }
  run_retries();
  return static_cast<int>(events_.size());
}

void ReactorBackend::retry_at(Channel& ch, std::chrono::steady_clock::time_point due) {
  for (Retry& r : retries_) {
    if (r.ch == &ch) {
      r.due = due;
      return;
    }
  }
  retries_.push_back({&ch, due});
}

void ReactorBackend::run_retries() {
  const auto t = now();
  // One due entry at a time: accepting may detach (and erase) listeners.
  for (size_t guard = retries_.size(); guard > 0; --guard) {
    auto it = std::find_if(retries_.begin(), retries_.end(),
                           [t](const Retry& r) { return r.due <= t; });
    if (it == retries_.end()) return;
    Channel& ch = *it->ch;
    retries_.erase(it);
    State& st = state(ch);
    if (!st.attached) continue;
    if (ch.kind() == Channel::Kind::kDatagram) {
      // Held datagrams after a resume (see update()), then the socket:
      // an edge-triggered poller will not report what is already there.
      if (!st.failed && ch.want_read()) handle_recv_datagrams(ch, st);
      if (!st.attached) continue;
      if (int rc = apply_interest(ch, st); rc < 0) fail(ch, st, rc);
      continue;
    }
    if (st.accept_paused) {
      st.accept_paused = false;
      if (int rc = apply_interest(ch, st); rc < 0) {
        spdlog::warn("{}: cannot watch the listening socket again: {}; retrying", name_,
                     std::strerror(-rc));
        st.accept_paused = true;
        retry_at(ch, t + kAcceptBackoff);
        continue;
      }
    }
    handle_accept(ch);
  }
}

void ReactorBackend::wakeup() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof one);
  (void)n;  // a full eventfd counter still means "awake"
  poller_->interrupt();
}

void ReactorBackend::handle(Channel& ch, uint32_t events) {
  State& st = state(ch);
  if (!st.attached) return;  // detached earlier in this batch
  if (ch.kind() == Channel::Kind::kListener) {
    handle_accept(ch);
    return;
  }
  // An error or hang-up is surfaced by whichever call is still wanted:
  // read sees the reset or EOF, write sees EPIPE.
  if (events & Poller::kError) events |= st.interest;
  const bool udp = ch.kind() == Channel::Kind::kDatagram;
  if ((events & Poller::kRead) && (st.interest & Poller::kRead)) {
    udp ? handle_recv_datagrams(ch, st) : handle_read(ch, st);
    if (!st.attached) return;
  }
  if ((events & Poller::kWrite) && (st.interest & Poller::kWrite)) {
    udp ? handle_send_datagrams(ch, st) : handle_write(ch, st);
    if (!st.attached) return;
  }
  int rc = apply_interest(ch, st);
  if (rc < 0) fail(ch, st, rc);
}

void ReactorBackend::handle_accept(Channel& ch) {
  State& st = state(ch);
  for (int i = 0; i < kMaxAcceptsPerEvent && st.attached; ++i) {
    int fd = sys::accept4(ch.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      ++progress_;
      ch.on_accept(fd);
      continue;
    }
    int err = errno;
    if (err == EINTR || err == ECONNABORTED) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    ++progress_;
    ch.on_accept_error(-err);
    if (!st.attached) return;
    if (resource_shortage(err)) {
      // Stop watching the listener for a while (see kAcceptBackoff).
      st.accept_paused = true;
      if (apply_interest(ch, st) < 0) st.accept_paused = false;
      retry_at(ch, now() + kAcceptBackoff);
    } else if (poller_->edge_triggered()) {
      retry_at(ch, now());
    }
    return;
  }
  // Stopped at the bound with connections maybe still pending: an
  // edge-triggered poller will not report them again, so look again after
  // the loop's other ready channels had their turn.
  if (st.attached && poller_->edge_triggered()) {
    retry_at(ch, now());
  }
}

void ReactorBackend::handle_read(Channel& ch, State& st) {
  const bool drain = poller_->edge_triggered();
  if (!read_buf_) read_buf_.reset(new char[kReadBuffer]);
  while (st.attached && ch.want_read()) {
    const ssize_t n = sys::recv(ch.fd(), read_buf_.get(), kReadBuffer, 0);
    if (n > 0) {
      ++progress_;
      ch.on_input({read_buf_.get(), static_cast<size_t>(n)});
      // Level-triggered: one read per event is fair. Edge-triggered: until
      // EAGAIN -- even after a short read: the peer's FIN may be queued
      // behind the data, and no new edge would report it.
      if (!drain) return;
      continue;
    }
    if (n == 0) {
      ++progress_;
      st.eof = true;
      ch.on_eof();
      return;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    fail(ch, st, -err);
    return;
  }
}

ssize_t ReactorBackend::send_now(Channel& ch, std::string_view bytes) {
  State& st = state(ch);
  if (!st.attached || st.failed || st.write_blocked || !ch.output().empty()) return 0;
  for (;;) {
    const ssize_t n = sys::send(ch.fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      if (n > 0) ++progress_;
      return n;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return 0;
    return -err;
  }
}

void ReactorBackend::handle_write(Channel& ch, State& st) {
  Buffer& out = ch.output();
  while (st.attached && !out.empty()) {
    const size_t len = out.readable();
    ssize_t n = sys::send(ch.fd(), out.peek(), len, MSG_NOSIGNAL);
    if (n > 0) {
      ++progress_;
      out.retrieve(static_cast<size_t>(n));
      ch.on_sent(static_cast<size_t>(n));
      if (static_cast<size_t>(n) < len) {  // socket buffer is full
        st.write_blocked = true;
        return;
      }
      continue;
    }
    int err = errno;
    if (n < 0 && err == EINTR) continue;
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
      st.write_blocked = true;
      return;
    }
    fail(ch, st, n < 0 ? -err : -EPIPE);
    return;
  }
  st.write_blocked = false;  // everything went out
  out.release();             // an idle connection holds no output storage
}

// Delivers datagrams while want_read() holds, as the Backend contract
// says: when a handler turns it off mid-batch, the rest of the batch is
// copied out of the shared slab into st.held, and delivered (in order,
// before anything newer) once reading resumes.
void ReactorBackend::handle_recv_datagrams(Channel& ch, State& st) {
  if (!deliver_held_datagrams(ch, st)) return;
  if (!dgram_) dgram_ = std::make_unique<DatagramSlab>();
  DatagramSlab& d = *dgram_;
  const bool drain = poller_->edge_triggered();
  while (st.attached && ch.want_read()) {
    for (size_t i = 0; i < kBatch; ++i) {
      d.iov[i] = {d.bytes.data() + i * kMaxDatagram, kMaxDatagram};
      d.msgs[i].msg_hdr = {};
      d.msgs[i].msg_hdr.msg_name = &d.addrs[i];
      d.msgs[i].msg_hdr.msg_namelen = sizeof d.addrs[i];
      d.msgs[i].msg_hdr.msg_iov = &d.iov[i];
      d.msgs[i].msg_hdr.msg_iovlen = 1;
      d.msgs[i].msg_hdr.msg_control = d.control[i];
      d.msgs[i].msg_hdr.msg_controllen = sizeof d.control[i];
    }
    int n = sys::recvmmsg(ch.fd(), d.msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      // Errors that make the socket itself unusable, as on io_uring and
      // blocking: retrying them would spin here forever.
      if (err == EBADF || err == ENOTSOCK || err == EINVAL || err == EFAULT ||
          err == EOPNOTSUPP) {
        fail(ch, st, -err);
        return;
      }
      // ICMP errors from earlier sends surface here (ECONNREFUSED ...):
      // they concern one peer, not the socket, and are reported once.
      spdlog::debug("udp fd {}: recvmmsg: {}", ch.fd(), std::strerror(err));
      continue;
    }
    progress_ += n;
    for (int i = 0; i < n; ++i) {
      if (!st.attached) return;  // detached: the rest is dropped with it
      const msghdr& h = d.msgs[i].msg_hdr;
      const Datagram dg{static_cast<const sockaddr*>(h.msg_name), h.msg_namelen,
                        {d.bytes.data() + i * kMaxDatagram, d.msgs[i].msg_len},
                        ecn_from_msghdr(h)};
      if (!ch.want_read()) {
        if (!st.held) st.held = std::make_unique<DatagramQueue>();
        st.held->push(dg.addr, dg.addr_len, dg.data, dg.ecn);
        continue;
      }
      ch.on_datagram(dg);
    }
    if (st.held) return;  // paused mid-batch
    if (!drain && static_cast<size_t>(n) < kBatch) return;
  }
}

// Datagrams held back by handle_recv_datagrams, oldest first, until
// want_read() turns off again. True when none is left (and reading is on).
bool ReactorBackend::deliver_held_datagrams(Channel& ch, State& st) {
  while (st.held) {
    if (!st.attached || !ch.want_read()) return false;
    // Only handle_recv_datagrams pushes, never from a callback: the views
    // stay valid through the call.
    DatagramQueue& q = *st.held;
    const DatagramQueue::Item& it = q.item(0);
    ++progress_;
    ch.on_datagram(q.datagram(it));
    q.pop(1);
    if (q.empty()) st.held.reset();  // do not pin up to 2 MiB while idle
  }
  return st.attached && ch.want_read();
}

void ReactorBackend::handle_send_datagrams(Channel& ch, State& st) {
  DatagramQueue& q = ch.datagrams();
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  while (st.attached && !q.empty()) {
    const size_t batch = std::min(q.size(), kBatch);
    for (size_t i = 0; i < batch; ++i) {
      const DatagramQueue::Item& it = q.item(i);
      std::string_view p = q.payload(it);
      iov[i] = {const_cast<char*>(p.data()), p.size()};
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_name = const_cast<sockaddr_storage*>(&it.addr);
      msgs[i].msg_hdr.msg_namelen = it.addr_len;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sys::sendmmsg(ch.fd(), msgs, static_cast<unsigned>(batch), MSG_NOSIGNAL);
    if (n > 0) {
      progress_ += n;
      q.pop(static_cast<size_t>(n));
      ch.on_datagrams_sent(static_cast<size_t>(n));
      continue;
    }
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
      st.write_blocked = true;
      return;
    }
    // The first datagram of the batch was refused (EMSGSIZE, unreachable
    // ...): drop just that one and go on with the rest.
    spdlog::debug("udp fd {}: dropping a {}-byte datagram: {}", ch.fd(),
                  q.item(0).size, std::strerror(err));
    q.pop(1);
    ch.on_datagrams_sent(1);
  }
  if (q.empty()) st.write_blocked = false;
}

void ReactorBackend::fail(Channel& ch, State& st, int err) {
  ++progress_;
  if (st.interest) poller_->set_interest(ch.fd(), 0, nullptr);
  st.interest = 0;
  st.failed = true;
  ch.on_error(err);
}

}  // namespace sluice::io
