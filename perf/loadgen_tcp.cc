// loadgen's TCP client path: each connection is a byte stream verified
// against a FIFO ring of `pipeline` in-flight messages.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "perf/loadgen_internal.h"

namespace sluice::perf::loadgen {

// TCP: queue one more message on c.
void Worker::queue_tcp(Conn& c, uint64_t ts) {
  size_t idx = (c.head + c.inflight) % c.slots.size();
  Slot& s = c.slots[idx];
  uint64_t seq = c.next_seq++;
  fill_slot(s, seq, ts);
  c.out.append(s.hdr, w_.hdr_len);
  c.out.append(w_.payload(seq), body_len());
  ++c.inflight;
}

void Worker::flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    const char* data = c.out.data() + c.out_off;
    const size_t len = c.out.size() - c.out_off;
    ssize_t n = c.ssl ? tls_write(c.ssl, data, len) : ::send(c.fd, data, len, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c.want_out) set_out(c, true);
      return;
    }
    error(c, t_.reset_errors);
    return;
  }
  c.out.clear();
  c.out_off = 0;
  if (c.want_out) set_out(c, false);
}

void Worker::set_out(Conn& c, bool on) {
  epoll_event ev{};
  ev.data.ptr = &c;
  ev.events = on ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
  ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  c.want_out = on;
}

void Worker::on_tcp_readable(Conn& c) {
  // With TLS, OpenSSL may hold read-ahead bytes that no epoll event will
  // announce: read on until it has none (or would block).
  for (int rounds = 0; c.alive && (rounds < 16 || (c.ssl && tls_has_pending(c.ssl))); ++rounds) {
    ssize_t n = 0;
    const Recv r = recv_rx(c, &n);
    if (r == Recv::kRetry) continue;
    if (r == Recv::kDrained) break;
    if (r == Recv::kFailed) return;
    if (n == 0) {  // the server closed on us
      error(c, t_.reset_errors);
      return;
    }
    const uint64_t now = now_ns();
    c.last_progress = now;
    const char* p = rx_.data();
    size_t left = static_cast<size_t>(n);
    size_t done = 0;
    while (left > 0) {
      if (c.inflight == 0) {  // bytes nobody asked for
        error(c, t_.verify_errors);
        return;
      }
      Slot& s = c.slots[c.head];
      size_t take = std::min(left, w_.wire_len - c.rx_off);
      if (!verify(s, c.rx_off, p, take)) {
        error(c, t_.verify_errors);
        return;
      }
      c.rx_off += take;
      p += take;
      left -= take;
      if (c.rx_off == w_.wire_len) {
        complete(s.ts, now);
        s.used = false;
        c.rx_off = 0;
        c.head = (c.head + 1) % c.slots.size();
        --c.inflight;
        ++done;
      }
    }
    if (done && sending(now)) {
      for (size_t i = 0; i < done; ++i) queue_tcp(c, now);
      flush(c);
    }
    if (!c.ssl && static_cast<size_t>(n) < rx_.size()) break;  // drained the socket
  }
}

}  // namespace sluice::perf::loadgen
