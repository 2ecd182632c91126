// Streams on the blocking back end: the reader thread (blocking recv into
// a staging buffer, queued for the loop), the writer thread (sends what
// update() handed over), and their delivery on the loop thread (on_input,
// on_sent, on_eof, on_error). See io/blocking.h for the model.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/sys.h"
#include "io/blocking_impl.h"

namespace sluice::io::blocking_internal {
namespace {

// Reader staging area, on the reader's stack (one recv at most this much):
// a connection holds heap memory for input only while it is queued for
// the loop.
constexpr size_t kReadChunk = 16 * 1024;
// The reader pauses while this much input is queued for the loop.
constexpr size_t kMaxQueuedInput = 1024 * 1024;

bool routine_peer_error(int err) {
  return err == ECONNRESET || err == EPIPE || err == ETIMEDOUT ||
         err == EHOSTUNREACH || err == ENETUNREACH || err == ECONNABORTED;
}

// A failed recv / send: routine peer errors at debug level, others warn.
void log_stream_error(int fd, const char* what, int err) {
  spdlog::log(routine_peer_error(err) ? spdlog::level::debug
                                      : spdlog::level::warn,
              "blocking: fd {}: {}: {}", fd, what, std::strerror(err));
}

}  // namespace

// ---------------------------------------------------------------- threads

void BlockingBackend::reader_loop(Conn& c) {
  char stage[kReadChunk];
  await_start(c);
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(c.m);
      c.reader_cv.wait(lk, [&] {
        return c.stopping || c.rd_error != 0 ||
               (c.want_read && c.in.readable() < kMaxQueuedInput);
      });
      if (c.stopping || c.rd_error != 0) break;
    }
    const ssize_t n = sys::recv(c.fd, stage, kReadChunk, 0);
    const int err = n < 0 ? errno : 0;
    if (n > 0) {
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) break;
        try {
          c.in.append(stage, static_cast<size_t>(n));
        } catch (const std::bad_alloc&) {
          c.rd_error = -ENOMEM;
          spdlog::error("blocking: fd {}: no memory for input", c.fd);
        }
      }
      post(c);
      continue;
    }
    if (n == 0) {
      {
        std::lock_guard<std::mutex> lk(c.m);
        if (c.stopping) break;
        c.eof = true;
      }
      post(c);
      break;
    }
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      std::this_thread::sleep_for(kAgainBackoff);
      continue;
    }
    {
      std::lock_guard<std::mutex> lk(c.m);
      if (c.stopping) break;
      c.rd_error = -err;
    }
    log_stream_error(c.fd, "recv", err);
    post(c);
    break;
  }
  reader_exit(c);
}

void BlockingBackend::writer_loop(Conn& c) {
  Buffer sending;
  std::unique_lock<std::mutex> lk(c.m);
  for (;;) {
    c.writer_cv.wait(lk, [&] { return c.stopping || !c.out.empty(); });
    if (c.stopping) break;
    sending.swap(c.out);  // c.out keeps the old (empty) buffer
    lk.unlock();
    int fail = 0;
    while (!sending.empty()) {
      const ssize_t n = sys::send(c.fd, sending.peek(), sending.readable(),
                                  MSG_NOSIGNAL);
      const int err = n < 0 ? errno : 0;
      if (n > 0) {
        sending.retrieve(static_cast<size_t>(n));
        bool stop;
        {
          std::lock_guard<std::mutex> g(c.m);
          stop = c.stopping;
          if (!stop) {
            c.sent += static_cast<size_t>(n);
            if (sending.empty()) c.writer_busy = false;
          }
        }
        if (stop) break;
        post(c);
        continue;
      }
      if (n < 0 && err == EINTR) continue;
      if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
        std::this_thread::sleep_for(kAgainBackoff);
        continue;
      }
      fail = n < 0 ? err : EPIPE;
      break;
    }
    lk.lock();
    if (c.stopping) break;
    if (fail != 0) {
      c.wr_error = -fail;
      lk.unlock();
      log_stream_error(c.fd, "send", fail);
      lk.lock();
      break;
    }
    sending.release();  // an idle connection holds no output storage
  }
  c.writer_done = true;
  lk.unlock();
  post(c);
}

// ------------------------------------------------------------- loop side

// Loop thread. Gives ch.output() to the writer if it is idle.
void BlockingBackend::hand_over_output(Conn& c, Channel& ch) {
  if (ch.output().empty()) return;
  bool handed = false;
  {
    std::lock_guard<std::mutex> lk(c.m);
    if (!c.writer_busy && !c.writer_done && !c.stopping && c.wr_error == 0) {
      // c.out is empty whenever the writer is idle.
      c.out.swap(ch.output());
      ch.output().release();  // whatever came back is empty
      c.writer_busy = true;
      handed = true;
    }
  }
  if (handed) c.writer_cv.notify_one();
}

int BlockingBackend::dispatch_stream(Conn& c) {
  if (c.detaching || c.ch == nullptr) return 0;
  Channel& ch = *c.ch;
  bool took = false;
  size_t sent;
  bool eof;
  int err;
  {
    std::lock_guard<std::mutex> lk(c.m);
    if (ch.want_read() && !c.in.empty() && !c.error_delivered) {
      c.spare.swap(c.in);  // spare is empty: the reader gets an empty buffer
      took = true;
    }
    sent = std::exchange(c.sent, 0);
    eof = c.eof && c.in.empty();
    err = c.rd_error != 0 ? c.rd_error : c.wr_error;
  }
  if (took) c.reader_cv.notify_one();  // the queue has room again
  int events = 0;
  if (took) {
    ch.on_input(c.spare.view());
    c.spare.retrieve_all();
    c.spare.release();  // storage only while input is queued
    ++events;
    if (c.detaching) return events;
  }
  if (sent > 0) {
    ch.on_sent(sent);
    ++events;
    if (c.detaching) return events;
  }
  hand_over_output(c, ch);  // output queued while the writer was busy
  if (eof && !c.eof_delivered && !c.error_delivered) {
    c.eof_delivered = true;
    ch.on_eof();
    ++events;
    if (c.detaching) return events;
  }
  if (err != 0 && !c.error_delivered) {
    c.error_delivered = true;
    ch.on_error(err);
    ++events;
  }
  return events;
}

}  // namespace sluice::io::blocking_internal
