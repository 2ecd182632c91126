// Datagram channels on the io_uring back end: receiving with multishot
// IORING_OP_RECVMSG into the datagram buffer ring (or single-shot recvmsg
// slots), sending batches with IORING_OP_SENDMSG (retried after a timer
// on EAGAIN/ENOBUFS), and datagrams held back while want_read() is off.
// See io/uring.h for the model and io/uring_impl.h for DgramState.
#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string_view>
#include <utility>

#include <spdlog/spdlog.h>

#include "io/uring_impl.h"

namespace sluice::io::uring_internal {
namespace {

// Consecutive non-fatal receive errors before re-arming waits for a timer.
constexpr unsigned kDgramErrorsBeforeBackoff = 16;

bool is_fatal_dgram_recv_error(int err) {
  // Errors that make the socket itself unusable. Everything else (ICMP
  // reports of earlier sends: ECONNREFUSED, EHOSTUNREACH ...; ENOMEM ...)
  // concerns one datagram or peer.
  return err == -EBADF || err == -ENOTSOCK || err == -EFAULT ||
         err == -EOPNOTSUPP || err == -EINVAL;
}

}  // namespace

bool UringBackendImpl::arm_recvmsg(ChanRec* r, DgramRecvSlot& s) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  s.msg = msghdr{};
  if (ms_recvmsg_) {
    // The kernel lays out [recvmsg_out][name: msg_namelen][payload] in
    // each provided buffer; msg_name itself is not used.
    s.msg.msg_namelen = sizeof(sockaddr_storage);
    s.msg.msg_controllen = kEcnControlSize;  // [control] after the name
    io_uring_prep_recvmsg_multishot(sqe, r->fd, &s.msg, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kDgramGroup;
  } else {
    if (!s.buf) s.buf = std::make_unique<char[]>(dgram_cap_);
    s.iov = {s.buf.get(), dgram_cap_};
    s.msg.msg_name = &s.addr;
    s.msg.msg_namelen = sizeof s.addr;
    s.msg.msg_iov = &s.iov;
    s.msg.msg_iovlen = 1;
    s.msg.msg_control = s.control;
    s.msg.msg_controllen = sizeof s.control;
    io_uring_prep_recvmsg(sqe, r->fd, &s.msg, 0);
  }
  s.op.multishot = ms_recvmsg_;
  track(&s.op, sqe);
  ++stats_.dgram_recv_arms;
  return true;
}

bool UringBackendImpl::arm_sendmsg(ChanRec* r, DgramSendSlot& s, size_t item) {
  io_uring_sqe* sqe = get_sqe();
  if (!sqe) return false;
  DgramState& d = *r->dg;
  const DatagramQueue::Item& it = d.tx.item(item);
  std::string_view p = d.tx.payload(it);
  s.iov = {const_cast<char*>(p.data()), p.size()};
  s.msg = msghdr{};
  if (it.addr_len > 0) {  // none: the connected peer
    s.msg.msg_name = const_cast<sockaddr_storage*>(&it.addr);
    s.msg.msg_namelen = it.addr_len;
  }
  s.msg.msg_iov = &s.iov;
  s.msg.msg_iovlen = 1;
  unsigned flags = MSG_NOSIGNAL;
  if (tuning_.dgram_send_dontwait) flags |= MSG_DONTWAIT;
  io_uring_prep_sendmsg(sqe, r->fd, &s.msg, flags);
  s.item = item;
  s.op.len = p.size();
  track(&s.op, sqe);
  ++d.tx_inflight;
  ++stats_.dgram_sends;
  return true;
}

// The datagram part of sync(): receives armed (or cancelled) as
// want_read() says, queued datagrams handed to sendmsg. False if the SQ
// could not take everything (the caller queues r for a retry).
bool UringBackendImpl::sync_dgram(ChanRec* r) {
  DgramState& d = *r->dg;
  Channel& ch = *r->ch;
  bool ok = true;
  if (ch.want_read() && !r->eof && !r->errored) {
    if (!d.rx_backoff) {
      // Multishot: slot 0 alone. Single-shot: every slot kept in flight.
      size_t n = ms_recvmsg_ ? 1 : d.rx.size();
      for (size_t i = 0; ok && i < n; ++i) {
        DgramRecvSlot& s = *d.rx[i];
        // As for streams: a cancel still aimed at the slot's previous
        // arming could hit a new one with the same user_data.
        if (!s.op.inflight && s.op.cancels == 0 && !s.lent) {
          ok = arm_recvmsg(r, s);
        }
      }
    }
  } else {
    for (auto& s : d.rx) {
      if (ok && s->op.inflight && !s->op.cancel_sent) ok = send_cancel(&s->op);
    }
  }
  if (ok && !r->errored && !d.tx_wait) ok = pump_sends(r);
  if (ok && (d.tx_wait || d.rx_backoff) && !r->timer().inflight &&
      r->timer().cancels == 0) {
    ok = arm_timer(r, kDgramRetryMs);
  }
  return ok;
}

// Submits sendmsg for datagrams of the current batch (retries first),
// up to dgram_send_depth_ in flight; starts the next batch (takes the
// channel's queue) when the current one is done.
bool UringBackendImpl::pump_sends(ChanRec* r) {
  DgramState& d = *r->dg;
  Channel& ch = *r->ch;
  if (d.tx_batch_done()) {
    if (!d.tx.empty()) d.tx.pop(d.tx.size());
    d.tx_next = 0;
    if (!ch.datagrams().empty()) std::swap(d.tx, ch.datagrams());
  }
  // While retrying after EAGAIN/ENOBUFS, one datagram probes the socket;
  // the full pipeline resumes once one leaves (retry_rounds back to 0).
  size_t limit = d.retry_rounds > 0 ? 1 : d.txs.size();
  size_t free_hint = 0;
  while (d.tx_inflight < limit &&
         (!d.tx_retry.empty() || d.tx_next < d.tx.size())) {
    DgramSendSlot* slot = nullptr;
    for (; free_hint < d.txs.size(); ++free_hint) {
      DgramSendSlot& s = *d.txs[free_hint];
      if (!s.op.inflight && s.op.cancels == 0) {
        slot = &s;
        break;
      }
    }
    if (!slot) break;
    bool retry = !d.tx_retry.empty();
    size_t item = retry ? d.tx_retry.front() : d.tx_next;
    if (!arm_sendmsg(r, *slot, item)) return false;
    if (retry) {
      d.tx_retry.pop_front();
    } else {
      ++d.tx_next;
    }
  }
  return true;
}

int UringBackendImpl::on_dgram_recv_cqe(Op* op, const Cqe& c) {
  ChanRec* r = op->rec;
  DgramState& d = *r->dg;
  DgramRecvSlot& s = *d.rx[op->slot];
  bool was_multishot = op->multishot;
  finish_if_final(op, c);
  int bid = buffer_id(c);
  if (r->detached || r->errored || r->eof) {
    recycle_dgram(bid);
    after(r);
    return 0;
  }
  Channel& ch = *r->ch;
  int n = 0;
  if (c.res >= 0) {
    const sockaddr* addr = nullptr;
    socklen_t addr_len = 0;
    std::string_view data;
    uint8_t ecn = 0;
    bool truncated = false;
    bool valid = true;
    if (was_multishot) {
      msghdr mh{};
      mh.msg_namelen = sizeof(sockaddr_storage);
      mh.msg_controllen = kEcnControlSize;
      io_uring_recvmsg_out* o =
          bid < 0 ? nullptr
                  : io_uring_recvmsg_validate(dgram_ring_.buf(bid), c.res, &mh);
      if (!o) {
        valid = false;
      } else {
        addr = static_cast<const sockaddr*>(io_uring_recvmsg_name(o));
        addr_len = std::min<socklen_t>(o->namelen, mh.msg_namelen);
        size_t len = io_uring_recvmsg_payload_length(o, c.res, &mh);
        data = {static_cast<const char*>(io_uring_recvmsg_payload(o, &mh)),
                len};
        truncated = (o->flags & MSG_TRUNC) != 0 || o->payloadlen > len;
        if (!(o->flags & MSG_CTRUNC)) {
          for (cmsghdr* cm = io_uring_recvmsg_cmsg_firsthdr(o, &mh); cm && !ecn;
               cm = io_uring_recvmsg_cmsg_nexthdr(o, &mh, cm)) {
            ecn = ecn_from_cmsg(cm);
          }
        }
      }
    } else {
      addr = reinterpret_cast<const sockaddr*>(&s.addr);
      addr_len = std::min<socklen_t>(s.msg.msg_namelen, sizeof s.addr);
      data = {s.buf.get(), static_cast<size_t>(c.res)};
      truncated = (s.msg.msg_flags & MSG_TRUNC) != 0;
      ecn = ecn_from_msghdr(s.msg);
    }
    if (!valid) {
      recycle_dgram(bid);
      fail(r, -EIO, "recvmsg (no or short buffer in CQE)");
      after(r);
      return 1;
    }
    if (data.empty() && addr_len == 0) {
      // 0 bytes from nobody: the read side was shut down. Stop receiving
      // (re-arming would complete at once, forever).
      r->eof = true;
      spdlog::warn("uring: udp fd {}: read side shut down, receiving stops",
                   r->fd);
    } else if (truncated) {
      ++stats_.dgram_truncated;
      spdlog::debug("uring: udp fd {}: dropping a truncated datagram (more "
                    "than {} bytes)",
                    r->fd, data.size());
    } else {
      d.received_any = true;
      d.rx_errors = 0;
      ++stats_.dgram_received;
      if (ch.want_read() && d.held.empty()) {
        s.lent = !was_multishot;  // keep sync() from re-arming into it
        ch.on_datagram({addr, addr_len, data, ecn});
        s.lent = false;
        ++n;
      } else {
        d.held.push(addr, addr_len, data, ecn);  // in order, for later
      }
    }
    recycle_dgram(bid);
  } else {
    recycle_dgram(bid);
    int err = c.res;
    if (err == -ENOBUFS && was_multishot) {
      // The datagram ring ran dry (the datagram stays in the socket):
      // every buffer goes back as its CQE is handled, so by the time the
      // re-armed recvmsg (queued by after()) is submitted it is refilled.
      ++stats_.dgram_enobufs;
#if defined(SLUICE_FAULTS)
      fault::count(fault::Kind::kUringNobufsSeen);
      if (withholding_) ran_dry_ = true;
#endif
    } else if (is_cancel_or_retry(err)) {
      // our own cancel (want_read off), or interrupted: re-arm if wanted
    } else if (err == -EINVAL && was_multishot && !d.received_any &&
               ms_recvmsg_) {
      ms_recvmsg_ = false;
      info_.multishot_recvmsg = false;
      spdlog::info("uring: multishot recvmsg unsupported (EINVAL), using "
                   "{} single-shot recvmsg per channel",
                   dgram_recv_depth_);
    } else if (is_fatal_dgram_recv_error(err)) {
      fail(r, err, "recvmsg");
      ++n;
    } else {
      ++stats_.dgram_recv_errors;
      spdlog::debug("uring: udp fd {}: recvmsg: {} (not fatal)", r->fd,
                    errno_name(-err));
      if (++d.rx_errors >= kDgramErrorsBeforeBackoff) {
        d.rx_errors = 0;
        d.rx_backoff = true;  // sync() arms the timer; no hot loop
      }
    }
  }
  after(r);
  return n;
}

int UringBackendImpl::on_dgram_send_cqe(Op* op, const Cqe& c) {
  ChanRec* r = op->rec;
  DgramState& d = *r->dg;
  DgramSendSlot& s = *d.txs[op->slot];
  finish(op);
  --d.tx_inflight;
  if (r->detached || r->errored) {
    after(r);
    return 0;
  }
  int err = c.res;
  if (err >= 0) {
    ++stats_.dgram_sent;
    d.retry_rounds = 0;
    r->ch->on_datagrams_sent(1);
  } else if (err == -EAGAIN || err == -EWOULDBLOCK || err == -ENOBUFS ||
             err == -ENOMEM || err == -EINTR) {
    // Socket buffer full / transient: send it again after a short pause
    // (sync() arms the timer; the other sends in flight go on). Not
    // finished, so not reported.
    ++stats_.dgram_send_retries;
    d.tx_retry.push_back(s.item);
    d.tx_wait = true;
  } else {
    // Refused (EMSGSIZE, unreachable, EPERM, ECONNREFUSED from an earlier
    // ICMP report ...): drop this one, never fatal.
    ++stats_.dgram_dropped;
    spdlog::debug("uring: udp fd {}: dropping a {}-byte datagram: {}", r->fd,
                  op->len, errno_name(-err));
    r->ch->on_datagrams_sent(1);
  }
  after(r);  // more of the batch, or the next batch
  return 0;
}

// Datagrams held back while want_read() was off, oldest first, until
// want_read() turns off again (or the channel is detached / failed).
int UringBackendImpl::deliver_held_dgrams(ChanRec* r) {
  DgramState& d = *r->dg;
  int n = 0;
  while (!d.held.empty() && !r->detached && !r->errored &&
         r->ch->want_read()) {
    // Only CQE handling pushes to held, never a callback: the views stay
    // valid through the call.
    const DatagramQueue::Item& it = d.held.item(0);
    r->ch->on_datagram(d.held.datagram(it));
    d.held.pop(1);
    ++n;
  }
  return n;
}

}  // namespace sluice::io::uring_internal
