// min_uring_echo: the yardstick for sluice's io_uring back end, in the
// style of liburing's echo examples: one ring (SINGLE_ISSUER|DEFER_TASKRUN
// where the kernel has them), multishot accept, multishot recv with a
// provided-buffer ring, and a send straight out of the provided buffer,
// which goes back to the ring when the send completes (zero copies in user
// space). One send in flight per connection keeps the byte order right;
// recvs that land meanwhile queue behind it. One thread. Exits on
// SIGTERM/SIGINT (a poll on a signalfd).
//
//   min_uring_echo --port 7000
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdint>
#include <deque>
#include <vector>

#include "perf/peers/peer_util.h"

namespace {

constexpr unsigned kEntries = 4096;
constexpr unsigned kBufCount = 1024;  // power of two
constexpr unsigned kBufSize = 16 * 1024;
constexpr uint16_t kGroup = 0;

enum Kind : uint64_t { kAccept = 1, kRecv = 2, kSend = 3, kSignal = 4 };
uint64_t ud(Kind k, int fd) { return (static_cast<uint64_t>(k) << 32) | static_cast<uint32_t>(fd); }

struct Chunk {
  uint16_t bid;
  uint32_t len;
  uint32_t off;
};

struct Conn {
  bool open = false;
  bool recv_armed = false;
  bool sending = false;
  bool eof = false;   // no more input (EOF, error)
  bool dead = false;  // a socket error: drop what is queued
  std::deque<Chunk> q;  // received, not yet (fully) sent
};

struct Server {
  io_uring ring;
  io_uring_buf_ring* br = nullptr;
  char* bufs = nullptr;
  int lfd = -1;
  std::vector<Conn> conns;

  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring);
    while (!s) {
      io_uring_submit(&ring);
      s = io_uring_get_sqe(&ring);
    }
    return s;
  }

  void arm_accept() {
    io_uring_sqe* s = sqe();
    io_uring_prep_multishot_accept(s, lfd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, ud(kAccept, lfd));
  }

  void arm_recv(int fd) {
    io_uring_sqe* s = sqe();
    io_uring_prep_recv_multishot(s, fd, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = kGroup;
    io_uring_sqe_set_data64(s, ud(kRecv, fd));
    conns[static_cast<size_t>(fd)].recv_armed = true;
  }

  void send_front(int fd) {
    Conn& c = conns[static_cast<size_t>(fd)];
    const Chunk& k = c.q.front();
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, fd, bufs + size_t{k.bid} * kBufSize + k.off, k.len - k.off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, ud(kSend, fd));
    c.sending = true;
  }

  void recycle(uint16_t bid) {
    io_uring_buf_ring_add(br, bufs + size_t{bid} * kBufSize, kBufSize, bid, io_uring_buf_ring_mask(kBufCount), 0);
    io_uring_buf_ring_advance(br, 1);
  }

  // Closes once no operation of ours can still refer to the fd.
  void maybe_close(int fd) {
    Conn& c = conns[static_cast<size_t>(fd)];
    if (!c.open || !(c.eof || c.dead) || c.recv_armed || c.sending) return;
    if (!c.dead && !c.q.empty()) return;  // still echoing after a half-close
    for (const Chunk& k : c.q) recycle(k.bid);
    c.q.clear();
    c.open = false;
    ::close(fd);
  }

  void on_recv(int fd, int res, unsigned flags) {
    Conn& c = conns[static_cast<size_t>(fd)];
    if (!(flags & IORING_CQE_F_MORE)) c.recv_armed = false;
    if (res > 0) {
      c.q.push_back({static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT), static_cast<uint32_t>(res), 0});
      if (!c.sending && !c.dead) send_front(fd);
      if (!c.recv_armed && !c.eof) arm_recv(fd);
      return;
    }
    if (res == -ENOBUFS) {  // ring ran dry: buffers come back as sends finish
      if (!c.recv_armed && !c.eof) arm_recv(fd);
      return;
    }
    c.eof = true;  // 0: EOF, <0: error
    if (res < 0) c.dead = true;
    maybe_close(fd);
  }

  void on_send(int fd, int res) {
    Conn& c = conns[static_cast<size_t>(fd)];
    c.sending = false;
    if (res < 0) {
      c.dead = true;
    } else if (!c.q.empty()) {
      Chunk& k = c.q.front();
      k.off += static_cast<uint32_t>(res);
      if (k.off >= k.len) {
        recycle(k.bid);
        c.q.pop_front();
      }
      if (!c.q.empty() && !c.dead) send_front(fd);
    }
    maybe_close(fd);
  }

  void on_accept(int res, unsigned flags) {
    if (!(flags & IORING_CQE_F_MORE)) arm_accept();
    if (res < 0) return;
    peers::set_nodelay(res);
    if (static_cast<size_t>(res) >= conns.size()) conns.resize(static_cast<size_t>(res) + 1024);
    Conn& c = conns[static_cast<size_t>(res)];
    c = Conn{};
    c.open = true;
    arm_recv(res);
  }
};

}  // namespace

int main(int argc, char** argv) {
  peers::Args args = peers::parse_args(argc, argv, "min_uring_echo");
  if (args.proto != "tcp") {
    std::fprintf(stderr, "min_uring_echo: TCP only\n");
    return 2;
  }
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC);

  Server srv;
  unsigned port = 0;
  srv.lfd = peers::bind_socket(args, false, false, &port);

  // Newest setup flags first; older kernels reject them with EINVAL.
  const unsigned tiers[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                            IORING_SETUP_COOP_TASKRUN, 0};
  int rc = -EINVAL;
  for (unsigned flags : tiers) {
    io_uring_params p{};
    p.flags = flags;
    rc = io_uring_queue_init_params(kEntries, &srv.ring, &p);
    if (rc != -EINVAL) break;
  }
  if (rc < 0) {
    std::fprintf(stderr, "min_uring_echo: io_uring_queue_init: %s\n", std::strerror(-rc));
    return 1;
  }

  size_t ring_bytes = kBufCount * sizeof(io_uring_buf);
  void* brm = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* bm = ::mmap(nullptr, size_t{kBufCount} * kBufSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (brm == MAP_FAILED || bm == MAP_FAILED) peers::die("mmap");
  srv.br = static_cast<io_uring_buf_ring*>(brm);
  srv.bufs = static_cast<char*>(bm);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uintptr_t>(brm);
  reg.ring_entries = kBufCount;
  reg.bgid = kGroup;
  rc = io_uring_register_buf_ring(&srv.ring, &reg, 0);
  if (rc < 0) {
    std::fprintf(stderr, "min_uring_echo: io_uring_register_buf_ring: %s\n", std::strerror(-rc));
    return 1;
  }
  io_uring_buf_ring_init(srv.br);
  for (unsigned i = 0; i < kBufCount; ++i) {
    io_uring_buf_ring_add(srv.br, srv.bufs + size_t{i} * kBufSize, kBufSize, static_cast<unsigned short>(i),
                          io_uring_buf_ring_mask(kBufCount), static_cast<int>(i));
  }
  io_uring_buf_ring_advance(srv.br, static_cast<int>(kBufCount));

  srv.arm_accept();
  io_uring_sqe* s = srv.sqe();
  io_uring_prep_poll_add(s, sfd, POLLIN);
  io_uring_sqe_set_data64(s, ud(kSignal, sfd));
  peers::print_listening(args, port, "min-uring");

  for (;;) {
    int r = io_uring_submit_and_wait(&srv.ring, 1);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      std::fprintf(stderr, "min_uring_echo: submit_and_wait: %s\n", std::strerror(-r));
      return 1;
    }
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    bool stop = false;
    io_uring_for_each_cqe(&srv.ring, head, cqe) {
      ++seen;
      uint64_t d = io_uring_cqe_get_data64(cqe);
      int fd = static_cast<int>(d & 0xffffffffu);
      switch (static_cast<Kind>(d >> 32)) {
        case kAccept:
          srv.on_accept(cqe->res, cqe->flags);
          break;
        case kRecv:
          srv.on_recv(fd, cqe->res, cqe->flags);
          break;
        case kSend:
          srv.on_send(fd, cqe->res);
          break;
        case kSignal:
          stop = true;
          break;
      }
    }
    io_uring_cq_advance(&srv.ring, seen);
    if (stop) return 0;
  }
}
