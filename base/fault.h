// Fault injection at the syscall seam (base/sys.h), for the faults build
// configuration only (bazel ... --config=faults, which defines
// SLUICE_FAULTS). A normal build compiles fault.cc to nothing and sys.h
// neither includes nor calls anything here.
//
// Legality rule: every injected fault is a result the kernel could really
// have given for that call, or the tests prove nothing (and hang for
// reasons that are not bugs). So faults are made by *shaping the call*
// (a smaller length, fewer iovecs/messages/events, a zero timeout) or by
// returning an error before the call that the kernel may return at that
// point without side effects (EINTR, EAGAIN on a nonblocking socket). Two
// classes:
//   benign  -- the back end must hide them: EINTR, short counts, fewer
//              messages, early (0-event) waits, spurious EAGAIN (and,
//              only when asked, truncated epoll batches: see
//              FaultPlan::truncate);
//   harmful -- a connection may end, but its handler must hear why:
//              ECONNRESET/EPIPE on stream IO, ENOBUFS/ENOMEM on datagram
//              sends (the datagram is dropped and counted), EMFILE/ENFILE/
//              ENOBUFS/ENOMEM/ECONNABORTED on accept.
// A harmful plan injects benign faults too.
//
// Edge-triggered epoll: a spurious EAGAIN (or a short send, which a
// reactor also reads as "socket buffer full") while the socket could take
// more is something the kernel never does, and an edge-triggered reactor
// rightly waits for an edge that never comes. FaultPlan::eagain turns those
// off; the epoll-et runs do that.
//
// Determinism: each thread draws from its own RNGs (see Stream), seeded
// from (seed, the order in which threads first drew under this plan, the
// plan generation). With one loop thread the IO calls' faults replay
// exactly as long as the calls come in the same order; with several
// threads (blocking back end) the interleaving decides who draws first.
//
// Thread rules: set_plan/clear/from_env from any thread, typically the
// test's main thread between runs; the wrappers from any thread; counters
// are atomics.
#pragma once

#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::fault {

enum class Mode : uint8_t { kBenign, kHarmful };

// What was injected; one counter each.
enum class Kind : uint8_t {
  kEintr,        // EINTR before the call
  kShort,        // a smaller length / fewer iovecs or messages
  kEagain,       // EAGAIN on a nonblocking socket
  kEarly,        // a wait with its timeout cut to 0
  kTruncate,     // epoll_wait with fewer event slots
  kReset,        // ECONNRESET on stream IO
  kPipe,         // EPIPE on a stream send
  kNobufs,       // ENOBUFS (datagram send, accept)
  kNomem,        // ENOMEM (datagram send, accept)
  kMfile,        // EMFILE / ENFILE on accept
  kConnAborted,  // accept took a connection, reset it, said ECONNABORTED
  kUringShort,   // io_uring: an SQE's length capped
  kUringCancel,  // io_uring: a real ASYNC_CANCEL of a multishot op
  kUringWithhold,  // io_uring: provided buffers held back from the ring
  kUringEintr,   // io_uring: submit/wait returned -EINTR
  // Observed, not injected: multishot recvs the kernel ended with -ENOBUFS
  // (what withholding aims for).
  kUringNobufsSeen,
  kCount
};
const char* to_string(Kind k);

struct FaultPlan {
  uint64_t seed = 0;
  double rate = 0;  // probability that one call is faulted (0..1)
  Mode mode = Mode::kBenign;
  // Spurious EAGAIN and short sends; off for edge-triggered epoll (see
  // the header comment).
  bool eagain = true;
  // epoll_wait with fewer event slots than asked. Off by default: not
  // strictly legal here. The kernel fills at most maxevents, but the
  // poller reads a batch shorter than its array as "every ready descriptor
  // was reported" (true of the kernel), and Backend::wait's complete-sweep
  // promise, which idle verdicts rely on, rests on that. A lowered cap
  // leaves ready descriptors for the next wait, one loop iteration late.
  bool truncate = false;
};

// Parses "seed=42,rate=0.05,mode=benign|harmful[,eagain=0|1][,truncate=0|1]".
// Returns false and sets *error on bad text.
bool parse_plan(std::string_view text, FaultPlan* plan, std::string* error);
std::string to_string(const FaultPlan& plan);

#if defined(SLUICE_FAULTS)

// Installs a plan (a new generation: every thread reseeds on its next
// draw). rate 0 injects nothing.
void set_plan(const FaultPlan& plan);
// No faults from now on (counters stay).
void clear();
// The plan in force (rate 0 when none).
FaultPlan plan();
// Reads SLUICE_FAULTS once per process and installs it; a bad value is
// fatal (printed, then abort), so a typo never passes as "no faults".
// Called by the first wrapper call; tests may call it early.
void init_from_env();

uint64_t injected(Kind k);
uint64_t injected_total();
void reset_counters();
std::string counters_summary();  // "eintr=3 short=10 ..." (non-zero only)

// Each thread has two RNG streams: one for the IO calls and one for the
// waits (epoll_wait, poll, select, io_uring's submit/wait and its
// once-per-wait faults). How many waits a run makes depends on timing;
// keeping them apart means that does not shift the faults of the IO calls.
enum class Stream : uint8_t { kIo, kWait };

// For io/uring_faults.*: a draw with the plan's rate, and a uniform
// number below n (n > 0).
bool roll(Stream s = Stream::kIo);
uint64_t below(uint64_t n, Stream s = Stream::kIo);
bool harmful();
void count(Kind k);

// The wrappers base/sys.h forwards to (same contract as the calls).
ssize_t recv(int fd, void* buf, size_t len, int flags);
ssize_t send(int fd, const void* buf, size_t len, int flags);
ssize_t readv(int fd, const iovec* iov, int count);
int accept4(int fd, sockaddr* addr, socklen_t* len, int flags);
int recvmmsg(int fd, mmsghdr* msgs, unsigned n, int flags, timespec* timeout);
int sendmmsg(int fd, mmsghdr* msgs, unsigned n, int flags);
ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* from,
                 socklen_t* from_len);
ssize_t recvmsg(int fd, msghdr* msg, int flags);
ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* to,
               socklen_t to_len);
int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms);
int poll(pollfd* fds, nfds_t n, int timeout_ms);
int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* timeout);

#endif  // SLUICE_FAULTS

}  // namespace sluice::fault
