// Datagram channels on the blocking back end: the receiver thread (one
// blocking recvmsg per datagram, queued for the loop with bounds), the
// sender thread (sendto of each datagram update() handed over, refused ones
// dropped), and delivery on the loop thread (on_datagram, on_error). See
// io/blocking.h for the model.
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string_view>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/sys.h"
#include "io/blocking_impl.h"

namespace sluice::io::blocking_internal {
namespace {

// Datagram receiver: it pauses while this many datagrams, or this many
// payload bytes, are received but not yet delivered by the loop.
constexpr size_t kMaxQueuedDatagrams = 1024;
constexpr size_t kMaxQueuedDatagramBytes = 1024 * 1024;
// Datagram receiver: after this many recvmsg errors in a row (ICMP
// reports, ENOMEM ...) it backs off kAgainBackoff before each further try.
constexpr int kDatagramErrorBurst = 16;
// Datagram sender: EAGAIN/ENOBUFS retries (kAgainBackoff apart) for one
// datagram before it is dropped.
constexpr int kMaxSendRetries = 1000;

// recvmsg errors that say the socket itself is unusable. Everything else
// on a datagram socket (ECONNREFUSED, EHOSTUNREACH ... from ICMP reports of
// earlier sends, ENOMEM/ENOBUFS) concerns one peer or one moment.
bool fatal_datagram_error(int err) {
  return err == EBADF || err == ENOTSOCK || err == EINVAL || err == EFAULT ||
         err == EOPNOTSUPP;
}

}  // namespace

// ---------------------------------------------------------------- threads

// Datagram receiver: one blocking recvmsg per datagram into a 64 KiB
// staging buffer, each datagram (source address + payload copy) queued in
// c.rx for the loop. Pauses while want_read is false or the undelivered
// datagrams reach kMaxQueuedDatagrams / kMaxQueuedDatagramBytes; meanwhile
// the kernel queues (and, once SO_RCVBUF is full, drops) as UDP does.
void BlockingBackend::datagram_reader_loop(Conn& c) {
  std::unique_ptr<char[]> stage =
      start_reader(c, kMaxDatagram, "datagram buffer");
  int errors_in_row = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(c.m);
      c.reader_cv.wait(lk, [&] {
        return c.stopping || c.rd_error != 0 ||
               (c.want_read &&
                c.rx.size() + c.held_count < kMaxQueuedDatagrams &&
                c.rx_bytes + c.held_bytes < kMaxQueuedDatagramBytes);
      });
      if (c.stopping || c.rd_error != 0) break;
    }
    sockaddr_storage from;
    alignas(cmsghdr) char control[kEcnControlSize];
    iovec iov{stage.get(), kMaxDatagram};
    msghdr mh{};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    const ssize_t n = sys::recvmsg(c.fd, &mh, 0);
    const int err = n < 0 ? errno : 0;
    const socklen_t from_len = n < 0 ? 0 : mh.msg_namelen;
    if (n == 0 && from_len == 0) {
      // Not a datagram (a UDP datagram always has a source address): the
      // read side was shut down. detach() does that to wake us; anyone
      // else doing it ends reception (recvmsg would return 0 forever).
      bool stop;
      {
        std::lock_guard<std::mutex> lk(c.m);
        stop = c.stopping;
      }
      if (!stop) {
        spdlog::warn(
            "blocking: fd {}: read side shut down, no more datagrams", c.fd);
      }
      break;
    }
    if (n >= 0) {
      errors_in_row = 0;
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) break;
        try {
          c.rx.push(reinterpret_cast<const sockaddr*>(&from), from_len,
                    {stage.get(), static_cast<size_t>(n)}, ecn_from_msghdr(mh));
          c.rx_bytes += static_cast<size_t>(n);
        } catch (const std::bad_alloc&) {
          c.rd_error = -ENOMEM;
          spdlog::error("blocking: fd {}: no memory for datagrams", c.fd);
        }
      }
      post(c);
      continue;
    }
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      std::this_thread::sleep_for(kAgainBackoff);
      continue;
    }
    if (fatal_datagram_error(err)) {
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) break;
        c.rd_error = -err;
      }
      spdlog::warn("blocking: fd {}: recvmsg: {}", c.fd, std::strerror(err));
      post(c);
      break;
    }
    // ICMP-induced (ECONNREFUSED, EHOSTUNREACH ...) or transient: a report
    // about one earlier send, not about this socket. Keep receiving.
    spdlog::debug("blocking: udp fd {}: recvmsg: {}", c.fd,
                  std::strerror(err));
    if (++errors_in_row > kDatagramErrorBurst) {
      std::this_thread::sleep_for(kAgainBackoff);
    }
  }
  reader_exit(c);
}

// Datagram sender: takes the whole queue update() handed over (c.tx) and
// sendto(MSG_NOSIGNAL)s it, one datagram per call, in order. A datagram the
// kernel refuses is dropped and counted; nothing here is fatal. The batch's
// datagrams are counted in c.sent when it is done, for on_datagrams_sent
// (a close waits for that, not for the hand-over).
void BlockingBackend::datagram_writer_loop(Conn& c) {
  DatagramQueue sending;
  uint64_t dropped = 0;
  std::unique_lock<std::mutex> lk(c.m);
  for (;;) {
    c.writer_cv.wait(lk, [&] { return c.stopping || !c.tx.empty(); });
    if (c.stopping) break;
    std::swap(sending, c.tx);  // c.tx gets the old (empty) queue
    lk.unlock();
    size_t batch_bytes = 0;
    size_t finished = 0;
    bool stop = false;
    while (!sending.empty() && !stop) {
      {
        std::lock_guard<std::mutex> g(c.m);
        stop = c.stopping;  // detach: send nothing more
      }
      if (stop) break;
      const DatagramQueue::Item& it = sending.item(0);
      const std::string_view p = sending.payload(it);
      batch_bytes += p.size();
      int retries = 0;
      for (;;) {
        const ssize_t n =
            sys::sendto(c.fd, p.data(), p.size(), MSG_NOSIGNAL,
                        reinterpret_cast<const sockaddr*>(&it.addr), it.addr_len);
        const int err = n < 0 ? errno : 0;
        if (n >= 0) break;
        if (err == EINTR) continue;
        {
          std::lock_guard<std::mutex> g(c.m);
          stop = c.stopping;  // e.g. EPIPE after detach's shutdown
        }
        if (stop) break;
        if ((err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) &&
            retries++ < kMaxSendRetries) {
          std::this_thread::sleep_for(kAgainBackoff);
          continue;
        }
        ++dropped;
        spdlog::debug(
            "blocking: udp fd {}: dropping a {}-byte datagram: {} ({} dropped "
            "so far)",
            c.fd, p.size(), std::strerror(err), dropped);
        break;
      }
      sending.pop(1);
      ++finished;
    }
    lk.lock();
    if (stop || c.stopping) break;
    c.sent += finished;
    c.writer_busy = false;
    lk.unlock();
    post(c);  // the loop hands over what queued up meanwhile
    // Do not pin a burst's worth of memory while idle.
    if (batch_bytes > kMaxQueuedDatagramBytes) sending = DatagramQueue{};
    lk.lock();
  }
  c.writer_done = true;
  lk.unlock();
  if (dropped > 0) {
    spdlog::debug("blocking: udp fd {}: {} datagram(s) dropped in all", c.fd,
                  dropped);
  }
  post(c);
}

// ------------------------------------------------------------- loop side

// Loop thread. Gives ch.datagrams() to the sender if it is idle (the queue
// swap leaves ch.datagrams() empty, with the sender's drained storage).
void BlockingBackend::hand_over_datagrams(Conn& c, Channel& ch) {
  if (ch.datagrams().empty()) return;
  bool handed = false;
  {
    std::lock_guard<std::mutex> lk(c.m);
    if (!c.writer_busy && !c.writer_done && !c.stopping) {
      // c.tx is empty whenever the sender is idle.
      std::swap(c.tx, ch.datagrams());
      c.writer_busy = true;
      handed = true;
    }
  }
  if (handed) c.writer_cv.notify_one();
}

// Delivers received datagrams in order: first those the loop already holds
// (left over when a handler turned want_read off mid-batch), then the
// receiver's queue, taken whole. Handlers may call update() or detach().
int BlockingBackend::dispatch_datagram(Conn& c) {
  if (c.detaching || c.ch == nullptr) return 0;
  Channel& ch = *c.ch;
  int err = 0;
  int events = 0;
  size_t n = 0, bytes = 0;
  // Two rounds: leftovers, then the queue. Datagrams the receiver queues
  // while we deliver re-post the channel (post() after each one).
  for (int round = 0; round < 2; ++round) {
    {
      std::lock_guard<std::mutex> lk(c.m);
      if (c.held.empty() && ch.want_read() && !c.rx.empty() &&
          !c.error_delivered) {
        std::swap(c.held, c.rx);  // c.rx gets the drained (empty) queue
        c.held_count += c.held.size();
        c.held_bytes += std::exchange(c.rx_bytes, 0);
      }
      err = c.rd_error;
    }
    if (c.held.empty()) break;
    while (!c.held.empty() && ch.want_read() && !c.error_delivered) {
      const DatagramQueue::Item& it = c.held.item(0);
      ++n;
      bytes += it.size;
      ch.on_datagram(c.held.datagram(it));
      ++events;
      if (c.detaching) {
        clear(c.held);  // stop() already discarded the rest
        return events;
      }
      c.held.pop(1);
    }
    if (!c.held.empty()) break;  // paused mid-batch: keep the rest
  }
  if (n > 0) {
    {
      std::lock_guard<std::mutex> lk(c.m);
      c.held_count -= n;
      c.held_bytes -= bytes;
    }
    c.reader_cv.notify_one();  // the queue has room again
  }
  size_t sent;
  {
    std::lock_guard<std::mutex> lk(c.m);
    sent = std::exchange(c.sent, 0);
  }
  if (sent > 0) ch.on_datagrams_sent(sent);
  hand_over_datagrams(c, ch);  // datagrams queued while the sender was busy
  if (err != 0 && !c.error_delivered) {
    // Fatal for the socket (EBADF, ENOMEM ...): undelivered datagrams are
    // dropped, as for stream input (the core detaches on error).
    c.error_delivered = true;
    clear(c.held);
    ch.on_error(err);
    ++events;
  }
  return events;
}

}  // namespace sluice::io::blocking_internal
