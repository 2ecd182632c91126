// loadgen's UDP client path: one message per datagram, `pipeline` slots
// per socket; datagrams not echoed within --udp-timeout-ms are lost.
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "perf/loadgen_internal.h"

namespace sluice::perf::loadgen {

// UDP: send one message on c in a free slot.
void Worker::send_udp(Conn& c, uint64_t ts) {
  Slot* s = nullptr;
  for (Slot& x : c.slots) {
    if (!x.used) {
      s = &x;
      break;
    }
  }
  if (!s) return;
  uint64_t seq = c.next_seq++;
  fill_slot(*s, seq, ts);
  ++c.inflight;
  char* buf = tx_.data();
  std::memcpy(buf, s->hdr, w_.hdr_len);
  std::memcpy(buf + w_.hdr_len, w_.payload(seq), body_len());
  ssize_t r = ::send(c.fd, buf, w_.wire_len, MSG_NOSIGNAL);
  if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
    error(c, t_.reset_errors);  // e.g. ECONNREFUSED: nobody listening
  }
  // EAGAIN/ENOBUFS: the datagram never left; it will time out as lost.
}

void Worker::on_udp_readable(Conn& c) {
  for (int rounds = 0; rounds < 64 && c.alive; ++rounds) {
    ssize_t n = 0;
    const Recv r = recv_rx(c, &n);
    if (r == Recv::kRetry) continue;
    if (r == Recv::kDrained) break;
    if (r == Recv::kFailed) return;
    const uint64_t now = now_ns();
    if (static_cast<size_t>(n) != w_.wire_len) {
      ++t_.verify_errors;
      ++t_.errors;
      continue;
    }
    uint64_t seq;
    std::memcpy(&seq, rx_.data() + w_.prefix, 8);
    Slot* s = nullptr;
    for (Slot& x : c.slots) {
      if (x.used && x.seq == seq) {
        s = &x;
        break;
      }
    }
    if (!s) {
      auto it = c.timed_out.find(seq);
      if (it != c.timed_out.end()) {  // echoed after all, just late
        c.timed_out.erase(it);
        --t_.lost;
        ++t_.late;
      } else {
        ++t_.verify_errors;  // duplicate or never sent
        ++t_.errors;
      }
      continue;
    }
    if (!verify(*s, 0, rx_.data(), w_.wire_len)) {
      ++t_.verify_errors;
      ++t_.errors;
    } else {
      complete(s->ts, now);
    }
    s->used = false;
    --c.inflight;
    if (sending(now)) send_udp(c, now);
  }
}

void Worker::expire_udp(uint64_t now, bool refill) {
  const uint64_t limit = static_cast<uint64_t>(o_.udp_timeout_ms * 1e6);
  for (Conn& c : conns_) {
    if (!c.alive) continue;
    size_t expired = 0;
    for (Slot& s : c.slots) {
      if (s.used && now - s.ts > limit) {
        s.used = false;
        --c.inflight;
        ++t_.lost;
        if (c.timed_out.size() < 100000) c.timed_out.insert(s.seq);
        ++expired;
      }
    }
    if (refill) {
      for (size_t i = 0; i < expired; ++i) send_udp(c, now);
    }
  }
}

}  // namespace sluice::perf::loadgen
