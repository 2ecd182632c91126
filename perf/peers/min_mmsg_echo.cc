// min_mmsg_echo: the UDP yardstick. One IPv4 UDP socket, one thread:
// datagrams come in 64 at a time with recvmmsg and each batch goes back
// with sendmmsg, straight from the buffers it was received into. Nothing is
// allocated after start-up and user space never touches the payload.
//
//   min_mmsg_echo --port 7000 --proto udp [--wait block|epoll]
//
// --wait block (default): a blocking socket and recvmmsg(MSG_WAITFORONE),
//   which sleeps until one datagram is there and then takes whatever else
//   is queued without waiting: one recvmmsg + one sendmmsg per batch, the
//   fewest syscalls a readiness-free loop can make.
// --wait epoll: a nonblocking socket in a level-triggered epoll set, and
//   recvmmsg until a batch comes back short (or EAGAIN): the same shape as
//   an event loop serving this socket, one epoll_wait more per wake-up.
//
// Sending: sendmmsg may take only part of a batch; the rest is sent next,
// from where it stopped. If the socket's send buffer is full (EAGAIN, only
// possible in epoll mode) the loop stops reading and waits for EPOLLOUT,
// so the backlog stays in the kernel's receive queue (where UDP drops, and
// the harness counts, what does not fit) instead of being thrown away here.
// A datagram the kernel refuses outright (ENOBUFS, EHOSTUNREACH, EPERM ...)
// is skipped and counted. EINTR is retried everywhere. SIGTERM/SIGINT
// print the counts on stderr and exit.
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "perf/peers/peer_util.h"

namespace {

constexpr unsigned kBatch = 64;
// Room for any UDP/IPv4 payload (at most 65507 bytes): nothing is truncated.
constexpr size_t kMaxPayload = 65536;
// Slots one cache line more than 64 KiB apart: slot i starts in cache set
// i rather than all 64 (small) datagrams of a batch landing in one set.
constexpr size_t kStride = kMaxPayload + 64;

// Counts for the exit line. One writer (the loop); the signal handler only
// reads, so relaxed loads and stores, no read-modify-write on the hot path.
std::atomic<uint64_t> g_echoed{0};
std::atomic<uint64_t> g_batches{0};
std::atomic<uint64_t> g_dropped{0};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "read from a signal handler");

void bump(std::atomic<uint64_t>& c, uint64_t n) { c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }

// Async-signal-safe: decimal digits and write(2) only.
char* put(char* p, const char* s) {
  while (*s) *p++ = *s++;
  return p;
}
char* put(char* p, uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

void on_signal(int) {
  char line[160];
  char* p = put(line, "min_mmsg_echo: echoed ");
  p = put(p, g_echoed.load(std::memory_order_relaxed));
  p = put(p, " datagrams in ");
  p = put(p, g_batches.load(std::memory_order_relaxed));
  p = put(p, " batches, dropped ");
  p = put(p, g_dropped.load(std::memory_order_relaxed));
  p = put(p, " (refused by the kernel on send)\n");
  ssize_t w = ::write(STDERR_FILENO, line, static_cast<size_t>(p - line));
  (void)w;
  ::_exit(0);
}

// One batch: receive headers (full capacity) and send headers (the
// received lengths), sharing the payload slots and the peer addresses.
struct Batch {
  std::vector<char> bytes = std::vector<char>(kBatch * kStride);
  sockaddr_in addrs[kBatch];
  iovec riov[kBatch];
  iovec siov[kBatch];
  mmsghdr rmsgs[kBatch];
  mmsghdr smsgs[kBatch];
  unsigned count = 0;  // datagrams received into this batch
  unsigned sent = 0;   // of which sent (or dropped) so far

  Batch() {
    for (unsigned i = 0; i < kBatch; ++i) {
      riov[i] = {bytes.data() + i * kStride, kMaxPayload};
      siov[i] = {bytes.data() + i * kStride, 0};
      rmsgs[i] = {};
      rmsgs[i].msg_hdr.msg_name = &addrs[i];
      rmsgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
      rmsgs[i].msg_hdr.msg_iov = &riov[i];
      rmsgs[i].msg_hdr.msg_iovlen = 1;
      smsgs[i] = {};
      smsgs[i].msg_hdr.msg_name = &addrs[i];
      smsgs[i].msg_hdr.msg_iov = &siov[i];
      smsgs[i].msg_hdr.msg_iovlen = 1;
    }
  }

  bool pending() const { return sent < count; }

  // After recvmmsg returned n: the echo of each datagram is itself, to
  // where it came from. The receive side's in/out name length is reset.
  void received(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      siov[i].iov_len = rmsgs[i].msg_len;
      smsgs[i].msg_hdr.msg_namelen = rmsgs[i].msg_hdr.msg_namelen;
      rmsgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
    }
    count = n;
    sent = 0;
    bump(g_batches, 1);
  }

  // Sends what is left of the batch. False if the socket would block
  // (EAGAIN): the rest stays for the next call.
  bool flush(int fd) {
    while (sent < count) {
      int m = ::sendmmsg(fd, smsgs + sent, count - sent, 0);
      if (m > 0) {  // possibly fewer than asked: go on from there
        sent += static_cast<unsigned>(m);
        bump(g_echoed, static_cast<uint64_t>(m));
        continue;
      }
      if (m < 0 && errno == EINTR) continue;
      if (m < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
      // The first datagram left was refused (sendmmsg reports an error
      // only for the first one of a call): skip it, send the others.
      ++sent;
      bump(g_dropped, 1);
    }
    return true;
  }
};

// recvmmsg errors other than EINTR/EAGAIN: transient ones (ENOMEM, a
// queued ICMP error) are skipped, ones that say the socket is unusable end
// the server rather than spin.
void recv_error(const char* what) {
  if (errno == EBADF || errno == ENOTSOCK || errno == EINVAL || errno == EFAULT) peers::die(what);
}

[[noreturn]] void run_blocking(int fd, Batch& b) {
  for (;;) {
    int n = ::recvmmsg(fd, b.rmsgs, kBatch, MSG_WAITFORONE, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EINTR && errno != EAGAIN) recv_error("recvmmsg");
      continue;
    }
    b.received(static_cast<unsigned>(n));
    while (!b.flush(fd)) {  // EAGAIN on a blocking socket: only with SO_SNDTIMEO, but be safe
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, -1);
    }
  }
}

void set_interest(int ep, int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) peers::die("epoll_ctl");
}

[[noreturn]] void run_epoll(int fd, Batch& b) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) peers::die("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) peers::die("epoll_ctl");
  for (;;) {
    epoll_event got;
    int k = ::epoll_wait(ep, &got, 1, -1);
    if (k <= 0) {
      if (k < 0 && errno != EINTR) peers::die("epoll_wait");
      continue;
    }
    if (b.pending()) {  // EPOLLOUT: finish the batch, then read again
      if (!b.flush(fd)) continue;
      set_interest(ep, fd, EPOLLIN);
    }
    for (;;) {
      int n = ::recvmmsg(fd, b.rmsgs, kBatch, 0, nullptr);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) recv_error("recvmmsg");
        break;  // drained (or a transient error: level-triggered, so epoll says if more is there)
      }
      if (n == 0) break;
      b.received(static_cast<unsigned>(n));
      if (!b.flush(fd)) {  // send buffer full: stop reading until it drains
        set_interest(ep, fd, EPOLLOUT);
        break;
      }
      if (static_cast<unsigned>(n) < kBatch) break;  // short batch: the queue was empty
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string wait = "block";
  peers::Args args = peers::parse_args(argc, argv, "min_mmsg_echo", {{"--wait", &wait}});
  if (args.proto != "udp" || (wait != "block" && wait != "epoll")) {
    std::fprintf(stderr, "min_mmsg_echo: UDP only (--proto udp), --wait block|epoll\n");
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  unsigned port = 0;
  int fd = peers::bind_socket(args, true, wait == "epoll", &port);
  static Batch batch;  // ~4 MiB of slots, allocated (and touched) once, here
  peers::print_listening(args, port, wait == "epoll" ? "min-mmsg-epoll" : "min-mmsg");
  if (wait == "epoll") run_epoll(fd, batch);
  run_blocking(fd, batch);
}
