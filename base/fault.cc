#include "base/fault.h"

#include <fcntl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "base/sys.h"

namespace sluice::fault {

const char* to_string(Kind k) {
  switch (k) {
    case Kind::kEintr: return "eintr";
    case Kind::kShort: return "short";
    case Kind::kEagain: return "eagain";
    case Kind::kEarly: return "early";
    case Kind::kTruncate: return "truncate";
    case Kind::kReset: return "reset";
    case Kind::kPipe: return "pipe";
    case Kind::kNobufs: return "nobufs";
    case Kind::kNomem: return "nomem";
    case Kind::kMfile: return "mfile";
    case Kind::kConnAborted: return "connaborted";
    case Kind::kUringShort: return "uring_short";
    case Kind::kUringCancel: return "uring_cancel";
    case Kind::kUringWithhold: return "uring_withhold";
    case Kind::kUringEintr: return "uring_eintr";
    case Kind::kUringNobufsSeen: return "uring_enobufs_seen";
    case Kind::kCount: break;
  }
  return "?";
}

bool parse_plan(std::string_view text, FaultPlan* plan, std::string* error) {
  FaultPlan p;
  bool have_seed = false;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      *error = "expected key=value, got '" + std::string(item) + "'";
      return false;
    }
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    const char* end = value.data() + value.size();
    if (key == "seed") {
      auto r = std::from_chars(value.data(), end, p.seed);
      if (r.ec != std::errc() || r.ptr != end) {
        *error = "seed: not an unsigned integer: '" + std::string(value) + "'";
        return false;
      }
      have_seed = true;
    } else if (key == "rate") {
      // from_chars for double is in GCC 11+; strtod needs a terminator.
      const std::string v(value);
      char* stop = nullptr;
      p.rate = std::strtod(v.c_str(), &stop);
      if (v.empty() || *stop != '\0' || !(p.rate >= 0 && p.rate <= 1)) {
        *error = "rate: not a number in [0, 1]: '" + v + "'";
        return false;
      }
    } else if (key == "mode") {
      if (value == "benign") {
        p.mode = Mode::kBenign;
      } else if (value == "harmful") {
        p.mode = Mode::kHarmful;
      } else {
        *error = "mode: benign or harmful, not '" + std::string(value) + "'";
        return false;
      }
    } else if (key == "eagain" || key == "truncate") {
      if (value != "0" && value != "1") {
        *error = std::string(key) + ": 0 or 1, not '" + std::string(value) + "'";
        return false;
      }
      (key == "eagain" ? p.eagain : p.truncate) = value == "1";
    } else {
      *error = "unknown key '" + std::string(key) + "' (seed, rate, mode, eagain, truncate)";
      return false;
    }
  }
  if (!have_seed) {
    *error = "seed= is required";
    return false;
  }
  *plan = p;
  return true;
}

std::string to_string(const FaultPlan& p) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "seed=%llu,rate=%g,mode=%s,eagain=%d,truncate=%d",
                static_cast<unsigned long long>(p.seed), p.rate,
                p.mode == Mode::kHarmful ? "harmful" : "benign", p.eagain ? 1 : 0,
                p.truncate ? 1 : 0);
  return buf;
}

#if defined(SLUICE_FAULTS)

namespace {

// The plan is read on every wrapped call from many threads and replaced
// rarely (between test runs): a mutex for writers, relaxed atomics for the
// few fields readers need, and a generation number that tells a thread's
// RNG to reseed.
std::mutex g_mu;
FaultPlan g_plan;                           // guarded by g_mu
std::atomic<uint64_t> g_seed{0};
std::atomic<uint64_t> g_rate_bits{0};       // rate as a 2^-32 fraction
std::atomic<int> g_mode{0};
std::atomic<bool> g_eagain{true};
std::atomic<bool> g_truncate{false};
std::atomic<uint64_t> g_generation{1};
std::atomic<uint64_t> g_next_ordinal{0};    // reset per generation
std::atomic<uint64_t> g_counters[static_cast<size_t>(Kind::kCount)];
std::once_flag g_env_once;

uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct ThreadRng {
  uint64_t generation = 0;
  uint64_t state[2] = {0, 0};  // by Stream
};
thread_local ThreadRng t_rng;

uint64_t next(Stream stream = Stream::kIo) {
  const uint64_t gen = g_generation.load(std::memory_order_acquire);
  if (t_rng.generation != gen) {
    t_rng.generation = gen;
    const uint64_t ordinal = g_next_ordinal.fetch_add(1, std::memory_order_relaxed);
    uint64_t x = g_seed.load(std::memory_order_relaxed) ^ (ordinal * 0xd1342543de82ef95ull) ^
                 (gen << 32);
    t_rng.state[0] = splitmix(x);
    t_rng.state[1] = splitmix(x);
  }
  return splitmix(t_rng.state[static_cast<size_t>(stream)]);
}

void install(const FaultPlan& p) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_plan = p;
  g_seed.store(p.seed, std::memory_order_relaxed);
  g_rate_bits.store(static_cast<uint64_t>(std::clamp(p.rate, 0.0, 1.0) * 4294967296.0),
                    std::memory_order_relaxed);
  g_mode.store(static_cast<int>(p.mode), std::memory_order_relaxed);
  g_eagain.store(p.eagain, std::memory_order_relaxed);
  g_truncate.store(p.truncate, std::memory_order_relaxed);
  g_next_ordinal.store(0, std::memory_order_relaxed);
  g_generation.fetch_add(1, std::memory_order_release);
}

bool active() {
  std::call_once(g_env_once, init_from_env);
  return g_rate_bits.load(std::memory_order_relaxed) != 0;
}

void set_errno_and_count(int err, Kind k) {
  count(k);
  errno = err;
}

// EAGAIN is a legal answer only where the call could block: a
// nonblocking socket or MSG_DONTWAIT (a blocking socket never says it).
bool may_eagain(int fd, int flags) {
  if (!g_eagain.load(std::memory_order_relaxed)) return false;
  if (flags & MSG_DONTWAIT) return true;
  const int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK);
}

// A length in [1, len - 1] (len >= 2), biased to small ones: short counts
// of a few bytes exercise the most code.
size_t shorter(size_t len, Stream stream = Stream::kIo) {
  const uint64_t r = next(stream);
  const size_t cap = (r & 1) ? std::min<size_t>(len - 1, 16) : len - 1;
  return 1 + static_cast<size_t>((r >> 1) % cap);
}

enum class Io { kStreamRecv, kStreamSend, kDgramRecv, kDgramSend };

// The error (if any) to return before the call; 0: make the call. Sets
// *shorten when the call should be made with a smaller count instead.
int decide(Io io, int fd, int flags, bool can_shorten, bool* shorten) {
  *shorten = false;
  if (!roll()) return 0;
  const bool bad = harmful();
  // Choices in a fixed order so a seed replays the same sequence.
  switch (below(bad ? 4 : 3)) {
    case 0:
      count(Kind::kEintr);
      return EINTR;
    case 1:
      if (may_eagain(fd, flags)) {
        count(Kind::kEagain);
        return EAGAIN;
      }
      [[fallthrough]];
    case 2:
      // A short send also reads as "buffer full" to a reactor: only where
      // EAGAIN is allowed (see the header).
      if (can_shorten && (io != Io::kStreamSend || g_eagain.load(std::memory_order_relaxed))) {
        *shorten = true;
        count(Kind::kShort);
      }
      return 0;
    default:
      break;
  }
  switch (io) {
    case Io::kStreamRecv:
      count(Kind::kReset);
      return ECONNRESET;
    case Io::kStreamSend:
      if (below(2) == 0) {
        count(Kind::kPipe);
        return EPIPE;
      }
      count(Kind::kReset);
      return ECONNRESET;
    case Io::kDgramSend:
      if (below(2) == 0) {
        count(Kind::kNobufs);
        return ENOBUFS;
      }
      count(Kind::kNomem);
      return ENOMEM;
    case Io::kDgramRecv:
      return 0;  // nothing harmful a receive may legally say here
  }
  return 0;
}

}  // namespace

void set_plan(const FaultPlan& plan) {
  std::call_once(g_env_once, [] {});  // a programmatic plan wins over the env
  install(plan);
}

void clear() {
  FaultPlan none;
  set_plan(none);
}

FaultPlan plan() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_plan;
}

void init_from_env() {
  const char* text = std::getenv("SLUICE_FAULTS");
  if (text == nullptr || *text == '\0') return;
  FaultPlan p;
  std::string error;
  if (!parse_plan(text, &p, &error)) {
    std::fprintf(stderr, "SLUICE_FAULTS='%s': %s\n", text, error.c_str());
    std::abort();
  }
  std::fprintf(stderr, "sluice: fault injection on: %s\n", to_string(p).c_str());
  install(p);
  // How many were injected, so a passing run shows it was not vacuous.
  std::atexit([] {
    std::fprintf(stderr, "sluice: faults injected: %s\n", counters_summary().c_str());
  });
}

uint64_t injected(Kind k) {
  return g_counters[static_cast<size_t>(k)].load(std::memory_order_relaxed);
}

uint64_t injected_total() {
  uint64_t total = 0;
  for (auto& c : g_counters) total += c.load(std::memory_order_relaxed);
  return total;
}

void reset_counters() {
  for (auto& c : g_counters) c.store(0, std::memory_order_relaxed);
}

std::string counters_summary() {
  std::string s;
  for (size_t i = 0; i < static_cast<size_t>(Kind::kCount); ++i) {
    const uint64_t n = g_counters[i].load(std::memory_order_relaxed);
    if (n == 0) continue;
    if (!s.empty()) s += ' ';
    s += to_string(static_cast<Kind>(i));
    s += '=';
    s += std::to_string(n);
  }
  return s.empty() ? "none" : s;
}

bool roll(Stream s) {
  if (!active()) return false;
  return (next(s) & 0xffffffffu) < g_rate_bits.load(std::memory_order_relaxed);
}

uint64_t below(uint64_t n, Stream s) { return next(s) % n; }

bool harmful() {
  return g_mode.load(std::memory_order_relaxed) == static_cast<int>(Mode::kHarmful);
}

void count(Kind k) { g_counters[static_cast<size_t>(k)].fetch_add(1, std::memory_order_relaxed); }

// ------------------------------------------------------------- wrappers --

ssize_t recv(int fd, void* buf, size_t len, int flags) {
  bool shorten;
  if (int err = decide(Io::kStreamRecv, fd, flags, len >= 2, &shorten)) {
    errno = err;
    return -1;
  }
  return sys::raw::recv(fd, buf, shorten ? shorter(len) : len, flags);
}

ssize_t send(int fd, const void* buf, size_t len, int flags) {
  bool shorten;
  if (int err = decide(Io::kStreamSend, fd, flags, len >= 2, &shorten)) {
    errno = err;
    return -1;
  }
  return sys::raw::send(fd, buf, shorten ? shorter(len) : len, flags);
}

ssize_t readv(int fd, const iovec* iov, int count) {
  bool shorten;
  if (int err = decide(Io::kStreamRecv, fd, 0, count >= 1 && iov[0].iov_len >= 2, &shorten)) {
    errno = err;
    return -1;
  }
  if (!shorten) return sys::raw::readv(fd, iov, count);
  // Fewer iovecs: the first one, shortened.
  iovec one = iov[0];
  one.iov_len = shorter(one.iov_len);
  return sys::raw::readv(fd, &one, 1);
}

int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (!roll()) return sys::raw::accept4(fd, addr, len, flags);
  const uint64_t pick = below(harmful() ? 4 : 2);
  if (pick == 0) {
    set_errno_and_count(EINTR, Kind::kEintr);
    return -1;
  }
  if (pick == 1) {
    if (may_eagain(fd, 0)) {
      set_errno_and_count(EAGAIN, Kind::kEagain);
      return -1;
    }
    return sys::raw::accept4(fd, addr, len, flags);
  }
  if (pick == 2) {
    // Resource errors: the pending connection stays in the backlog.
    static constexpr int kErrs[] = {EMFILE, ENFILE, ENOBUFS, ENOMEM};
    const int err = kErrs[below(4)];
    set_errno_and_count(err, err == ENOBUFS  ? Kind::kNobufs
                             : err == ENOMEM ? Kind::kNomem
                                             : Kind::kMfile);
    return -1;
  }
  // ECONNABORTED means a pending connection died before accept took it;
  // make that true: take one, reset it (SO_LINGER 0 + close), and say so.
  const int c = sys::raw::accept4(fd, addr, len, flags | SOCK_CLOEXEC);
  if (c < 0) return c;  // nothing pending: the kernel's own answer
  linger lg{1, 0};
  ::setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(c);
  set_errno_and_count(ECONNABORTED, Kind::kConnAborted);
  return -1;
}

int recvmmsg(int fd, mmsghdr* msgs, unsigned n, int flags, timespec* timeout) {
  bool shorten;
  if (int err = decide(Io::kDgramRecv, fd, flags, n >= 2, &shorten)) {
    errno = err;
    return -1;
  }
  return sys::raw::recvmmsg(fd, msgs, shorten ? static_cast<unsigned>(shorter(n)) : n, flags,
                            timeout);
}

int sendmmsg(int fd, mmsghdr* msgs, unsigned n, int flags) {
  bool shorten;
  if (int err = decide(Io::kDgramSend, fd, flags, n >= 2, &shorten)) {
    errno = err;
    return -1;
  }
  return sys::raw::sendmmsg(fd, msgs, shorten ? static_cast<unsigned>(shorter(n)) : n, flags);
}

ssize_t recvfrom(int fd, void* buf, size_t len, int flags, sockaddr* from,
                 socklen_t* from_len) {
  bool shorten;  // never: a shorter buffer would truncate the datagram
  if (int err = decide(Io::kDgramRecv, fd, flags, false, &shorten)) {
    errno = err;
    return -1;
  }
  return sys::raw::recvfrom(fd, buf, len, flags, from, from_len);
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  bool shorten;  // never: a shorter buffer would truncate the datagram
  if (int err = decide(Io::kDgramRecv, fd, flags, false, &shorten)) {
    errno = err;
    return -1;
  }
  return sys::raw::recvmsg(fd, msg, flags);
}

ssize_t sendto(int fd, const void* buf, size_t len, int flags, const sockaddr* to,
               socklen_t to_len) {
  bool shorten;  // never: a datagram goes whole or not at all
  if (int err = decide(Io::kDgramSend, fd, flags, false, &shorten)) {
    errno = err;
    return -1;
  }
  return sys::raw::sendto(fd, buf, len, flags, to, to_len);
}

// Waits: EINTR (a signal), an early return (the same call with a zero
// timeout: whatever is ready now, maybe nothing), and for epoll, only
// with FaultPlan::truncate, fewer event slots (see there why not always).
int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms) {
  if (!roll(Stream::kWait)) return sys::raw::epoll_wait(epfd, events, max, timeout_ms);
  const bool truncate = g_truncate.load(std::memory_order_relaxed);
  switch (below(truncate ? 3 : 2, Stream::kWait)) {
    case 0:
      set_errno_and_count(EINTR, Kind::kEintr);
      return -1;
    case 1:
      count(Kind::kEarly);
      return sys::raw::epoll_wait(epfd, events, max, 0);
    default:
      if (max < 2) return sys::raw::epoll_wait(epfd, events, max, timeout_ms);
      count(Kind::kTruncate);
      return sys::raw::epoll_wait(epfd, events,
                                  static_cast<int>(shorter(max, Stream::kWait)), timeout_ms);
  }
}

// poll and select report every ready descriptor of the set: a truncated
// set is no kernel result, so only EINTR and early returns.
int poll(pollfd* fds, nfds_t n, int timeout_ms) {
  if (!roll(Stream::kWait)) return sys::raw::poll(fds, n, timeout_ms);
  if (below(2, Stream::kWait) == 0) {
    set_errno_and_count(EINTR, Kind::kEintr);
    return -1;
  }
  count(Kind::kEarly);
  return sys::raw::poll(fds, n, 0);
}

int select(int nfds, fd_set* rd, fd_set* wr, fd_set* ex, timeval* timeout) {
  if (!roll(Stream::kWait)) return sys::raw::select(nfds, rd, wr, ex, timeout);
  if (below(2, Stream::kWait) == 0) {
    set_errno_and_count(EINTR, Kind::kEintr);
    return -1;
  }
  count(Kind::kEarly);
  timeval zero{};
  return sys::raw::select(nfds, rd, wr, ex, &zero);
}

#endif  // SLUICE_FAULTS

}  // namespace sluice::fault
