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
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>

namespace sluice::sys {

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

}  // namespace sluice::sys
