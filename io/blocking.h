// The `blocking` back end: the classic thread-per-connection model.
//
// Model
//   Every socket is in blocking mode (attach() clears O_NONBLOCK). Helper
//   threads do the blocking syscalls; no readiness API (epoll, poll,
//   select) is used anywhere. Because the core's thread rule is uniform
//   across back ends (every Channel callback runs on the loop thread), the
//   helper threads never call handlers: they record completions in
//   per-channel state under a per-channel mutex and put the channel on the
//   back end's mutex-protected ready queue. wait(timeout) sleeps on a
//   condition variable until the ready queue is non-empty, wakeup() is
//   called, or the timeout passes, then dispatches the queued completions
//   as Channel callbacks on the loop thread.
//
// Complete sweeps (Backend::wait)
//   wait() can only deliver what the helper threads have read, and after a
//   stall (SIGSTOP/SIGCONT, CPU starvation) the loop thread may run before
//   they do. Streams need nothing here: a Connection asks the kernel
//   (TCP_INFO) before it calls a peer idle. For datagrams, a wait() about
//   to return empty-handed first checks each receiver: one whose socket
//   holds datagrams (FIONREAD) while it has handed none over gets up to
//   kCatchUp (20 ms) to do so.
//
// Threads
//   * Listener: one acceptor thread doing blocking accept4(SOCK_CLOEXEC).
//     Each accepted fd is queued and delivered as on_accept(fd). accept
//     errors (EMFILE, ENFILE, ENOBUFS ...) are delivered as
//     on_accept_error(-errno) and the acceptor backs off (50 ms, woken early
//     by detach) so it never spins.
//   * Stream: a reader thread and a writer thread.
//       reader: blocking recv() into 16 KiB on its own stack, then
//         appends the bytes to the channel's pending-input buffer (heap,
//         only while bytes wait); the loop thread takes that buffer, calls
//         on_input(view) and releases the storage. recv 0 is
//         on_eof (after all earlier input), an error is on_error(-errno).
//       writer: sleeps on a per-channel condvar. update() (loop thread)
//         swaps ch.output() into the writer's pending buffer when the writer
//         is idle; the writer send(MSG_NOSIGNAL)s all of it, recording the
//         bytes sent, which the loop reports as on_sent(n) (coalesced). When
//         the writer goes idle the loop hands over whatever output queued
//         up meanwhile. Every byte handed to the writer is reported exactly
//         once by on_sent unless an error (on_error) ends the stream.
//   * Datagram (a UDP socket, SO_TYPE must be SOCK_DGRAM, else attach()
//     returns -EINVAL): a receiver thread and a sender thread.
//       receiver: blocking recvfrom() into its own 64 KiB (kMaxDatagram)
//         staging buffer, one datagram per call; each datagram's source
//         address and a copy of its payload are queued for the loop, which
//         delivers them as on_datagram, one call each, in arrival order.
//         recvfrom errors that an ICMP report of an earlier send produces
//         (ECONNREFUSED, EHOSTUNREACH ...) and transient ones (ENOMEM,
//         ENOBUFS) are logged at debug level and reception goes on (after a
//         burst of them, with a 1 ms pause before each retry); only errors
//         that make the socket itself unusable (EBADF, ENOTSOCK, EINVAL,
//         EFAULT, EOPNOTSUPP) become on_error(-errno). A recvfrom result
//         of 0 without a source address means the read side was shut down
//         (detach does that); if someone else did it, reception ends with a
//         warn line.
//       sender: sleeps on a per-channel condvar. update() (loop thread)
//         swaps ch.datagrams() into the sender's queue when the sender is
//         idle; the sender sendto(MSG_NOSIGNAL)s it one datagram per call,
//         in order, then reports idle so the loop hands over whatever queued
//         up meanwhile. A datagram the kernel refuses (EMSGSIZE,
//         unreachable, EPERM ...) is dropped and counted (debug log), never
//         fatal; EAGAIN/ENOBUFS are retried 1 ms apart for up to ~1 s
//         before the datagram is dropped. There is no on_sent for
//         datagrams.
//     Datagram channels do not count against max_conns.
//   * Helper threads have small stacks (256 KiB; 1 MiB under sanitizers),
//     block all signals, and are joined by the loop thread as soon as they
//     report that they are exiting (the join is immediate: the thread's
//     last act is that report), so on_detached() is only delivered after
//     both of a channel's threads have been joined.
//
// Backpressure
//   * While ch.want_read() is false the reader stops before its next recv
//     (it waits on its condvar; update() wakes it), and input that was
//     already received is held back: no on_input is delivered while
//     want_read() is false.
//   * The reader also stops while more than 1 MiB of its input is queued
//     and not yet taken by the loop, so a slow loop cannot grow memory
//     without bound. Per channel at most ~1 MiB + 64 KiB is buffered here.
//   * Datagrams alike: while want_read() is false the receiver stops before
//     its next recvfrom and no on_datagram is delivered (a handler that
//     turns want_read() off stops delivery at once; the rest of the batch
//     is held, in order, until update() sees want_read() on again). The
//     receiver also stops while 1024 datagrams or 1 MiB of payload are
//     received but not yet delivered (so at most 1024 datagrams and
//     ~1 MiB + 64 KiB per channel). Meanwhile the kernel's receive buffer
//     (SO_RCVBUF) fills and then drops datagrams, which is UDP's semantics.
//
// max_conns
//   BackendOptions::max_conns caps concurrently served connections (and so
//   threads). A stream counts from its on_accept delivery (or attach() for a
//   stream that was not accepted here) until its on_detached. A connection
//   accepted while the cap is reached is closed at once and never reaches
//   on_accept; a warn line is logged (at most one per second per listener,
//   with the number refused since the last line). max_conns == 0 refuses
//   every accepted connection.
//
// detach()
//   Marks the channel stopping, discards every completion not yet delivered
//   (undelivered accepted fds are closed; received and unsent datagrams are
//   dropped), wakes the condvars and calls shutdown(fd, SHUT_RDWR), which
//   wakes a blocked recv/send/accept on Linux. For UDP too: on an
//   unconnected UDP socket shutdown() fails with ENOTCONN yet still marks
//   the socket shut down and wakes a blocked recvfrom, which returns 0 with
//   no source address (checked on Linux 6.18, and the back end's tests fail
//   if it ever does not); a sender blocked in sendto gets EPIPE. So no wake
//   datagram or receive timeout is needed. on_detached() is delivered
//   later from wait(), exactly once, after both helper threads have exited
//   and been joined; no other callback follows detach(). on_detached() may
//   free the channel.
//
// Errors
//   errno is copied at once after each syscall. A stream or datagram
//   channel delivers at most one on_error; read and write errors
//   (ECONNRESET, EPIPE ...) are delivered promptly even while want_read()
//   is false (input or datagrams still held back then are dropped: the
//   core detaches on error). Each failure is logged once (routine peer
//   resets at debug level). Datagram channels get on_error only for the
//   few fatal recvfrom errors listed above.
//
// Destruction
//   Destroying the back end with channels still attached sets every channel
//   stopping, shuts its socket down and joins all helper threads; no
//   callback is made. Channels may outlive the back end.
//
// Thread rules: as io/backend.h (loop thread for everything but wakeup()).
#pragma once

#include <memory>

#include "io/backend.h"

namespace sluice::io {

std::unique_ptr<Backend> make_blocking_backend(const BackendOptions& options);

}  // namespace sluice::io
