// Hot-path socket calls that enter the kernel through syscall(2) rather
// than glibc's wrappers.
//
// Why: in a process with more than one thread, glibc brackets every call
// that is a thread-cancellation point (recv, send, readv, epoll_wait ...)
// with __pthread_enable_asynccancel / __pthread_disable_asynccancel. sluice
// never cancels threads (pthread_cancel would leak a loop's resources
// anyway), so that bookkeeping is pure overhead. It measured 1.8% of the
// epoll server's CPU at 1000 connections (perf record). A single-threaded
// program such as perf/peers/min_epoll_echo never pays it.
//
// Same contract as the glibc calls: the result, or -1 with errno set.
// Any thread; no state. Sanitizer builds (SLUICE_SANITIZED) use the glibc
// calls, so ASan checks the buffers and TSan sees the socket hand-offs.
//
// This is the one door for the IO path's socket calls (recv, send, readv,
// accept4, recvmmsg, sendmmsg, recvfrom, recvmsg, sendto, epoll_wait, poll,
// select): io/ and core/ never call them directly, so a fault-injection
// build (--config=faults, SLUICE_FAULTS) can put base/fault.h in front of
// all of them. There the functions below live in sys::raw and the
// sys:: names forward to fault::; a normal build compiles exactly these
// definitions in sys:: and never includes fault.h. Setup calls (socket,
// bind, listen, setsockopt, close) need no door: they are not where a
// back end's error handling lives.
#pragma once

#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>

namespace sluice::sys {
#if defined(SLUICE_FAULTS)
namespace raw {
#endif

#if defined(SLUICE_SANITIZED)

inline ssize_t recv(int fd, void* buf, size_t len, int flags) {
  return ::recv(fd, buf, len, flags);
}
inline ssize_t send(int fd, const void* buf, size_t len, int flags) {
  return ::send(fd, buf, len, flags);
}
inline ssize_t readv(int fd, const iovec* iov, int count) { return ::readv(fd, iov, count); }
inline int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms) {
  return ::epoll_wait(epfd, events, max, timeout_ms);
}

#else

inline ssize_t recv(int fd, void* buf, size_t len, int flags) {
  return ::syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr);
}

inline ssize_t send(int fd, const void* buf, size_t len, int flags) {
  return ::syscall(SYS_sendto, fd, buf, len, flags, nullptr, 0);
}

inline ssize_t readv(int fd, const iovec* iov, int count) {
  return ::syscall(SYS_readv, fd, iov, count);
}

// epoll_pwait with no signal mask is epoll_wait, and exists on every
// architecture (aarch64 has no epoll_wait syscall).
inline int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms) {
  return static_cast<int>(
      ::syscall(SYS_epoll_pwait, epfd, events, max, timeout_ms, nullptr, _NSIG / 8));
}

#endif

// Not hot enough for the syscall(2) shortcut (accept, datagram batches,
// the pollers' waits, the blocking back end's calls): glibc in every build.
inline int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  return ::accept4(fd, addr, len, flags);
}
inline int recvmmsg(int fd, mmsghdr* msgs, unsigned n, int flags, timespec* timeout) {
  return ::recvmmsg(fd, msgs, n, flags, timeout);
}
inline int sendmmsg(int fd, mmsghdr* msgs, unsigned n, int flags) {
  return ::sendmmsg(fd, msgs, n, flags);
}
inline ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* from,
                        socklen_t* from_len) {
  return ::recvfrom(fd, buf, len, flags, from, from_len);
}
inline ssize_t recvmsg(int fd, msghdr* msg, int flags) { return ::recvmsg(fd, msg, flags); }
inline ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* to,
                      socklen_t to_len) {
  return ::sendto(fd, buf, len, flags, to, to_len);
}
inline int poll(pollfd* fds, nfds_t n, int timeout_ms) { return ::poll(fds, n, timeout_ms); }
inline int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* timeout) {
  return ::select(nfds, rd, wr, ex, timeout);
}

#if defined(SLUICE_FAULTS)
}  // namespace raw
#endif
}  // namespace sluice::sys

#if defined(SLUICE_FAULTS)
// Fault-injection build: every call above goes through the plan first.
#include "base/fault.h"

namespace sluice::sys {
using fault::accept4;
using fault::epoll_wait;
using fault::poll;
using fault::readv;
using fault::recv;
using fault::recvfrom;
using fault::recvmsg;
using fault::recvmmsg;
using fault::select;
using fault::send;
using fault::sendmmsg;
using fault::sendto;
}  // namespace sluice::sys
#endif
