// fanout_client: the client side of the broadcast benchmark
// (perf/fanout_server.cc, scripts/broadcast_bench.sh).
//
//   fanout_client --port P --mode broadcast|echo [--conns 10000] [--server-pid PID] ...
//
// One process, one thread, its own epoll loop (level-triggered, nonblocking
// sockets, nothing of sluice's). It opens --conns connections to
// 127.0.0.1:P (at most --connect-concurrency handshakes in flight) and
// makes sure the server serves every one of them (see establish()):
// broadcast, a "sync" line from the publisher reached all of them; echo,
// one warm-up echo per connection came back. Then one measured phase:
//
//  * broadcast: one extra "publisher" connection sends --lines lines of
//    --size bytes (newline included) at --line-rate lines/s; the server
//    broadcasts each to every connection (publisher included). The phase
//    ends when every line reached every connection, in order.
//  * echo: each connection sends --echo-per-conn lines, one at a time
//    (the next only after the echo of the last came back), the connections
//    taking turns round-robin, --echo-rate lines/s in all.
//
// With --server-pid the client reads the server's CPU time
// (/proc/PID/stat utime+stime, in clock ticks; also the per-thread
// schedstat run time in ns) and context switches (summed over
// /proc/PID/task/*/status) at the instant the measured phase starts (right
// before its first line is sent) and ends (right after its last delivery is
// read): the window excludes connecting and readiness.
//
// --spin: during the measured phase, epoll_wait with a zero timeout (the
// client burns its CPU instead of sleeping). On loopback the sender pays
// for the receiver's TCP processing and for waking it up; a spinning
// client is never asleep, so that wake-up cost leaves the server's figure.
//
// Prints one JSON line on stdout (delivered, expected, wall time, errors,
// the server's CPU over the window ...). Exit status 0 only if every
// message was delivered, in order and intact, with no connection error.
// Everything is bounded: rates, counts, --deadline-s for the measured
// phase, --timeout-s for the whole run (SIGALRM). Traffic goes to
// 127.0.0.1 only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "perf/proc_sample.h"

namespace {

using sluice::perf::busy_ticks;
using sluice::perf::ProcSample;
using sluice::perf::sample_proc;
using Clock = std::chrono::steady_clock;

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct Config {
  int port = 0;
  std::string mode = "broadcast";
  int64_t conns = 10000;
  int64_t size = 64;
  int64_t lines = 40;
  double line_rate = 8;
  int64_t echo_per_conn = 20;
  double echo_rate = 50000;
  int64_t connect_concurrency = 512;
  int64_t server_pid = 0;
  double deadline_s = 30;
  double connect_timeout_s = 60;
  int64_t settle_ms = 200;
  unsigned timeout_s = 180;
  bool spin = false;
};

// -------------------------------------------------------------- the loop --
// A fixed-width decimal field (make_line's); a non-digit makes it UINT64_MAX.
uint64_t digits(std::string_view s) {
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return UINT64_MAX;
    v = v * 10 + static_cast<uint64_t>(ch - '0');
  }
  return v;
}

enum class St : uint8_t { kIdle, kConnecting, kOpen, kDead };

struct Conn {
  int fd = -1;
  uint32_t idx = 0;
  St st = St::kIdle;
  bool want_out = false;  // EPOLLOUT registered
  bool confirmed = false;  // the server has been seen serving it (a sync line or the warm-up echo)
  uint8_t tries = 0;      // failed connect attempts
  Clock::time_point opened_at{};
  uint32_t sync_at_open = 0;  // broadcast: the publisher's latest sync back when this one opened
  bool outstanding = false;  // echo: a line is out, its echo not back yet
  uint32_t sync_seen = 0;    // broadcast: the latest sync line received
  uint64_t next_seq = 0;     // broadcast: measured lines received (in order)
  uint64_t sent = 0;         // echo: lines sent (warm-up included)
  uint64_t got = 0;          // echo: echoes received (warm-up included)
  std::string out;           // bytes not yet taken by the kernel
  std::string partial;       // an incomplete line
};

class Client {
 public:
  explicit Client(const Config& c) : c_(c) {}
  int run();

 private:
  bool broadcast() const { return c_.mode == "broadcast"; }
  size_t total() const { return conns_.size(); }
  void fail(const char* what, int err = 0);
  int open_one(Conn& k);
  bool establish();
  void reset_conn(Conn& k);
  void on_open(Conn& k);
  void set_out(Conn& k, bool on);
  void queue(Conn& k, std::string_view bytes);
  void flush(Conn& k);
  void kill(Conn& k, const char* why, int err);
  void on_event(Conn& k, uint32_t ev);
  void on_readable(Conn& k);
  void on_line(Conn& k, std::string_view line);
  void poll_once(int timeout_ms);
  std::string make_line(char kind, uint64_t a, uint64_t b) const;
  void measure();
  void print_json();

  const Config& c_;
  int ep_ = -1;
  std::vector<Conn> conns_;
  std::vector<char> rbuf_ = std::vector<char>(64 * 1024);
  bool measuring_ = false;
  uint32_t sync_k_ = 0;
  // Counted in the measured window only.
  uint64_t delivered_ = 0, subscriber_delivered_ = 0, expected_ = 0, sent_ = 0;
  uint64_t complete_ = 0;  // connections that got everything owed
  uint64_t errors_ = 0, out_of_order_ = 0, bad_lines_ = 0, connect_retries_ = 0;
  uint64_t warm_got_ = 0, dead_ = 0, reconnects_ = 0;
  std::string first_error_;
  double establish_s_ = 0, wall_s_ = 0;
  bool timed_out_ = false;
  ProcSample s0_, s1_;
  ProcSample self0_, self1_;  // this process, same window
  int64_t busy0_ = 0, busy1_ = 0;
};

void Client::fail(const char* what, int err) {
  ++errors_;
  if (first_error_.empty()) {
    first_error_ = err ? std::string(what) + ": " + std::strerror(err) : what;
  }
}

std::string Client::make_line(char kind, uint64_t a, uint64_t b) const {
  char head[48];
  int n = std::snprintf(head, sizeof head, "%c%08" PRIu64 ":%010" PRIu64 ":", kind, a, b);
  std::string s(static_cast<size_t>(c_.size), 'x');
  std::memcpy(s.data(), head, std::min<size_t>(static_cast<size_t>(n), s.size() - 1));
  s.back() = '\n';
  return s;
}

int Client::open_one(Conn& k) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(c_.port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 && errno != EINPROGRESS) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLIN;
  ev.data.u32 = k.idx;
  if (::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  k.fd = fd;
  k.st = St::kConnecting;
  k.want_out = true;
  return 0;
}

void Client::set_out(Conn& k, bool on) {
  if (k.want_out == on || k.fd < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
  ev.data.u32 = k.idx;
  if (::epoll_ctl(ep_, EPOLL_CTL_MOD, k.fd, &ev) == 0) k.want_out = on;
}

void Client::kill(Conn& k, const char* why, int err) {
  if (k.st == St::kDead) return;
  fail(why, err);
  if (k.fd >= 0) ::close(k.fd);
  k.fd = -1;
  k.st = St::kDead;
  ++dead_;
}

void Client::queue(Conn& k, std::string_view bytes) {
  if (k.st != St::kOpen) return;
  k.out.append(bytes);
  flush(k);
}

void Client::flush(Conn& k) {
  while (!k.out.empty()) {
    ssize_t n = ::send(k.fd, k.out.data(), k.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      k.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return kill(k, "send", n < 0 ? errno : EPIPE);
  }
  set_out(k, !k.out.empty());
}

void Client::on_line(Conn& k, std::string_view line) {
  if (line.size() + 1 != static_cast<size_t>(c_.size) || line.size() < 21) {
    ++bad_lines_;
    return;
  }
  const uint64_t a = digits(line.substr(1, 8));
  const uint64_t b = digits(line.substr(10, 10));
  switch (line[0]) {
    case 'S':  // broadcast readiness
      k.sync_seen = std::max<uint32_t>(k.sync_seen, static_cast<uint32_t>(a));
      k.confirmed = true;
      return;
    case 'M': {  // broadcast, measured: b is the sequence number
      if (!measuring_) {
        ++bad_lines_;
        return;
      }
      if (b != k.next_seq) ++out_of_order_;
      k.next_seq = b + 1;
      ++delivered_;
      if (k.idx != total() - 1) ++subscriber_delivered_;
      if (k.next_seq == static_cast<uint64_t>(c_.lines)) ++complete_;
      return;
    }
    case 'W':
    case 'E': {  // echo: must be exactly what this connection sent next
      std::string want = make_line(line[0], k.idx, k.got);
      if (!k.outstanding || a != k.idx || std::string_view(want).substr(0, want.size() - 1) != line) {
        ++bad_lines_;
        return;
      }
      k.outstanding = false;
      ++k.got;
      if (line[0] == 'W') {
        ++warm_got_;
        k.confirmed = true;
      } else if (measuring_) {
        ++delivered_;
        ++subscriber_delivered_;
        if (k.got == static_cast<uint64_t>(c_.echo_per_conn) + 1) ++complete_;
      }
      return;
    }
    default:
      ++bad_lines_;
  }
}

void Client::on_readable(Conn& k) {
  for (;;) {
    ssize_t n = ::recv(k.fd, rbuf_.data(), rbuf_.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0 && !measuring_ && !k.confirmed) return reset_conn(k);  // never served: try again
    if (n < 0) return kill(k, "recv", errno);
    if (n == 0) return kill(k, "server closed a connection", 0);
    std::string_view in(rbuf_.data(), static_cast<size_t>(n));
    while (!in.empty()) {
      const size_t nl = in.find('\n');
      if (nl == std::string_view::npos) {
        if (k.partial.size() + in.size() > static_cast<size_t>(c_.size) * 4) {
          return kill(k, "line too long", 0);
        }
        k.partial.append(in);
        break;
      }
      if (!k.partial.empty()) {
        k.partial.append(in.substr(0, nl));
        std::string line;
        line.swap(k.partial);
        on_line(k, line);
      } else {
        on_line(k, in.substr(0, nl));
      }
      in.remove_prefix(nl + 1);
    }
    if (static_cast<size_t>(n) < rbuf_.size()) return;  // level-triggered: the rest comes next round
  }
}

void Client::on_event(Conn& k, uint32_t ev) {
  if (k.st == St::kConnecting) {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(k.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      ::close(k.fd);
      k.fd = -1;
      k.st = St::kIdle;
      if (++k.tries >= 3) {
        k.st = St::kDead;
        ++dead_;
        fail("connect", err);
      } else {
        ++connect_retries_;
      }
      return;
    }
    on_open(k);
    return;
  }
  if (k.st != St::kOpen) return;
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(k);
  if (k.st == St::kOpen && (ev & EPOLLOUT)) flush(k);
}

void Client::poll_once(int timeout_ms) {
  epoll_event evs[512];
  int n = ::epoll_wait(ep_, evs, 512, timeout_ms);
  for (int i = 0; i < n; ++i) on_event(conns_[evs[i].data.u32], evs[i].events);
}

void Client::on_open(Conn& k) {
  k.st = St::kOpen;
  k.opened_at = Clock::now();
  k.sync_at_open = conns_.back().sync_seen;
  set_out(k, false);
  if (!broadcast()) {  // echo: the warm-up line confirms it
    k.outstanding = true;
    ++k.sent;
    queue(k, make_line('W', k.idx, 0));
  }
}

// Back to square one (a reset, no TIME_WAIT): the server never served it.
void Client::reset_conn(Conn& k) {
  if (k.fd >= 0) {
    linger l{1, 0};
    ::setsockopt(k.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(k.fd);  // also leaves the epoll set
  }
  k.fd = -1;
  k.st = St::kIdle;
  k.want_out = k.outstanding = k.confirmed = false;
  k.sync_seen = 0;
  k.sent = k.got = 0;
  k.out.clear();
  k.partial.clear();
  ++reconnects_;
}

// Connects everything and makes sure the server serves every connection:
// broadcast, a sync line from the publisher reached all of them; echo,
// every warm-up echo came back.
//
// Why not just connect: the kernel completes a handshake before the
// server accepts it. A client that opens connections faster than a busy
// server accepts them overflows the listen queue; Linux then drops the
// handshake's last ACK (tcp_abort_on_overflow=0) and may in the end give
// the connection up while the client's end stays ESTABLISHED: a
// subscriber that will never hear anything. So at most kMaxUnconfirmed
// connections are open and unconfirmed at once (well under fanout_server's
// backlog of 4096), and one that stays unconfirmed for long (see below),
// or is reset before it was confirmed, is opened again (a backstop: with
// the bound in place it did not happen in testing).
//
// Sync lines never run ahead of the server: the next one goes out only
// once the publisher got the last one back (the server has broadcast it),
// at most every 100 ms, and only while some connection is unconfirmed.
// Sending them on a timer instead let a CPU-starved server fall behind by
// more and more broadcasts to 10,000 connections, so the latest sync never
// reached everyone.
bool Client::establish() {
  constexpr size_t kMaxUnconfirmed = 2048;
  constexpr auto kSyncEvery = std::chrono::milliseconds(100);
  constexpr auto kResyncAfter = std::chrono::seconds(2);  // the last sync seems lost
  constexpr auto kConfirmWithin = std::chrono::seconds(5);
  constexpr uint32_t kSyncsMissed = 10;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(c_.connect_timeout_s));
  Conn& pub = conns_.back();
  auto last_sync = Clock::time_point{}, last_reap = start;
  size_t next = 0;
  for (;;) {
    const auto now = Clock::now();
    size_t connecting = 0, idle = 0, unconfirmed = 0, latest = 0, dead = 0;
    for (const Conn& k : conns_) {
      connecting += k.st == St::kConnecting;
      idle += k.st == St::kIdle;
      unconfirmed += k.st == St::kOpen && !k.confirmed;
      latest += k.st == St::kOpen && k.confirmed && (!broadcast() || k.sync_seen == sync_k_);
      dead += k.st == St::kDead;
    }
    if (dead > 0) return false;
    if (latest == total()) break;
    if (now > end) {
      fail("connecting: not every connection was served in time (--connect-timeout-s)");
      return false;
    }
    // The publisher first and whatever the bounds: the syncs that confirm
    // everyone else go through it.
    if (broadcast() && pub.st == St::kIdle) {
      if (int rc = open_one(pub); rc < 0) {
        pub.st = St::kDead;
        ++dead_;
        fail("socket/connect", -rc);
        return false;
      }
      ++connecting;
      --idle;
    }
    // More handshakes, bounded twice (see above).
    for (size_t scanned = 0; connecting < static_cast<size_t>(c_.connect_concurrency) &&
                             connecting + unconfirmed < kMaxUnconfirmed && scanned < total();
         ++scanned, next = (next + 1) % total()) {
      Conn& k = conns_[next];
      if (k.st != St::kIdle) continue;
      if (int rc = open_one(k); rc < 0) {
        k.st = St::kDead;
        ++dead_;
        fail("socket/connect", -rc);
        return false;
      }
      ++connecting;
      --idle;
    }
    if (broadcast() && pub.st == St::kOpen && now - last_sync >= kSyncEvery) {
      const bool caught_up = pub.sync_seen == sync_k_;
      const bool needed = unconfirmed + connecting + idle > 0 || !pub.confirmed;
      if ((caught_up && needed) || now - last_sync >= kResyncAfter) {
        queue(pub, make_line('S', ++sync_k_, 0));
        last_sync = now;
      }
    }
    if (now - last_reap >= std::chrono::milliseconds(250)) {
      last_reap = now;
      for (Conn& k : conns_) {
        if (k.st != St::kOpen || k.confirmed || now - k.opened_at < kConfirmWithin) continue;
        // Broadcast: only once the server has broadcast many syncs since
        // it opened (a slow server is not a lost connection).
        if (broadcast() && &k != &pub && pub.sync_seen < k.sync_at_open + kSyncsMissed) continue;
        reset_conn(k);
      }
    }
    poll_once(5);
  }
  establish_s_ = secs(Clock::now() - start);
  return true;
}

void Client::measure() {
  const bool bc = broadcast();
  const uint64_t n = total();
  const uint64_t to_send = bc ? static_cast<uint64_t>(c_.lines) : n * static_cast<uint64_t>(c_.echo_per_conn);
  const double rate = bc ? c_.line_rate : c_.echo_rate;
  expected_ = bc ? to_send * n : to_send;
  Conn& pub = conns_.back();
  size_t cursor = 0;

  s0_ = sample_proc(c_.server_pid);
  self0_ = sample_proc(::getpid());
  busy0_ = busy_ticks();
  measuring_ = true;
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(c_.deadline_s));
  for (;;) {
    const auto now = Clock::now();
    // Everything owed to every live connection arrived: done.
    if (complete_ + dead_ >= n) break;
    if (now > end) {
      timed_out_ = true;
      break;
    }
    // Pacing: what the rate allows by now (the first message at t0).
    const uint64_t allowed = std::min<uint64_t>(to_send, static_cast<uint64_t>(secs(now - t0) * rate) + 1);
    while (sent_ < allowed) {
      if (bc) {
        if (pub.st != St::kOpen) break;
        pub.out.append(make_line('M', 0, sent_));
        ++sent_;
        continue;
      }
      // Echo: strict round-robin; a connection whose echo is not back yet
      // holds the turn (at 50k/s over 10k connections it had 200 ms).
      Conn& k = conns_[cursor];
      if (k.st != St::kOpen) {  // dead: its share is lost (reported)
        cursor = (cursor + 1) % n;
        ++sent_;
        continue;
      }
      if (k.outstanding) break;
      k.outstanding = true;
      queue(k, make_line('E', k.idx, k.sent));
      ++k.sent;
      ++sent_;
      cursor = (cursor + 1) % n;
    }
    if (bc && pub.st == St::kOpen) flush(pub);
    poll_once(c_.spin ? 0 : sent_ < to_send ? 1 : 20);
  }
  const auto t1 = Clock::now();
  s1_ = sample_proc(c_.server_pid);
  self1_ = sample_proc(::getpid());
  busy1_ = busy_ticks();
  measuring_ = false;
  wall_s_ = secs(t1 - t0);
}

void Client::print_json() {
  const double tck = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const bool have = s0_.ok && s1_.ok;
  const double server_s = have ? static_cast<double>(s1_.ticks - s0_.ticks) / tck : 0;
  const double client_s = static_cast<double>(self1_.ticks - self0_.ticks) / tck;
  const double busy_s = static_cast<double>(busy1_ - busy0_) / tck;
  const bool ok = errors_ == 0 && !timed_out_ && delivered_ == expected_ && out_of_order_ == 0 && bad_lines_ == 0;
  std::string err;
  for (char ch : first_error_) {
    if (ch == '"' || ch == '\\') err += '\\';
    err += ch;
  }
  std::printf(
      "{\"mode\":\"%s\",\"conns\":%" PRId64 ",\"connections\":%zu,\"size\":%" PRId64 ",\"sent\":%" PRIu64
      ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"subscriber_delivered\":%" PRIu64
      ",\"shortfall\":%" PRIu64 ",\"rate\":%g,\"wall_s\":%.4f,\"establish_s\":%.3f,\"reconnects\":%" PRIu64 ","
      "\"errors\":%" PRIu64 ",\"dead\":%" PRIu64 ",\"out_of_order\":%" PRIu64 ",\"bad_lines\":%" PRIu64
      ",\"connect_retries\":%" PRIu64 ",\"timed_out\":%s,\"server_pid\":%" PRId64
      ",\"server_ticks\":%" PRId64 ",\"server_cpu_s\":%.4f,\"server_run_ns\":%" PRId64
      ",\"server_ctxsw_vol\":%" PRId64 ",\"server_ctxsw_invol\":%" PRId64 ",\"server_threads\":%" PRId64
      ",\"client_cpu_s\":%.4f,\"client_ctxsw_vol\":%" PRId64 ",\"bg_cpu_s\":%.4f,\"clk_tck\":%.0f,\"spin\":%s,\"ok\":%s,\"error\":\"%s\"}\n",
      c_.mode.c_str(), c_.conns, conns_.size(), c_.size, sent_, expected_, delivered_, subscriber_delivered_,
      expected_ > delivered_ ? expected_ - delivered_ : 0, broadcast() ? c_.line_rate : c_.echo_rate, wall_s_,
      establish_s_, reconnects_, errors_, dead_, out_of_order_, bad_lines_, connect_retries_,
      timed_out_ ? "true" : "false", c_.server_pid, have ? s1_.ticks - s0_.ticks : 0, server_s,
      have ? s1_.run_ns - s0_.run_ns : 0, have ? s1_.vol - s0_.vol : 0, have ? s1_.invol - s0_.invol : 0,
      s1_.threads, client_s, self1_.vol - self0_.vol, std::max(0.0, busy_s - server_s - client_s), tck, c_.spin ? "true" : "false",
      ok ? "true" : "false",
      err.c_str());
  std::fflush(stdout);
}

int Client::run() {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) {
    std::perror("epoll_create1");
    return 2;
  }
  const size_t n = static_cast<size_t>(c_.conns) + (broadcast() ? 1 : 0);  // + the publisher
  conns_.resize(n);
  for (size_t i = 0; i < n; ++i) conns_[i].idx = static_cast<uint32_t>(i);
  if (establish()) {
    if (c_.settle_ms > 0) {
      // Let the server finish what connecting left (accept bursts, buffer
      // release) before the window opens; keep reading meanwhile.
      const auto until = Clock::now() + std::chrono::milliseconds(c_.settle_ms);
      while (Clock::now() < until) poll_once(10);
    }
    measure();
  }
  print_json();
  const bool ok = errors_ == 0 && !timed_out_ && delivered_ == expected_ && expected_ > 0 &&
                  out_of_order_ == 0 && bad_lines_ == 0;
  if (!ok) {
    std::fprintf(stderr, "fanout_client: %s: delivered %" PRIu64 " of %" PRIu64 " (%s)\n", c_.mode.c_str(),
                 delivered_, expected_, first_error_.empty() ? "see the JSON line" : first_error_.c_str());
  }
  // Reset, not FIN: leaves no TIME_WAIT behind for the next run.
  for (Conn& k : conns_) {
    if (k.fd < 0) continue;
    linger l{1, 0};
    ::setsockopt(k.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(k.fd);
  }
  ::close(ep_);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  CLI::App app{"sluice fanout_client: N connections; broadcast fan-out or echo, one measured phase"};
  app.add_option("--port", c.port, "Server port on 127.0.0.1")->required()->check(CLI::Range(1, 65535));
  app.add_option("--mode", c.mode, "broadcast|echo")->check(CLI::IsMember({"broadcast", "echo"}))->capture_default_str();
  app.add_option("--conns", c.conns, "Connections (broadcast: subscribers; a publisher is added)")
      ->check(CLI::Range(1, 19000))->capture_default_str();
  app.add_option("--size", c.size, "Line bytes on the wire, newline included")
      ->check(CLI::Range(24, 4096))->capture_default_str();
  app.add_option("--lines", c.lines, "broadcast: lines the publisher sends")->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--line-rate", c.line_rate, "broadcast: lines per second")->check(CLI::Range(0.1, 1e6))->capture_default_str();
  app.add_option("--echo-per-conn", c.echo_per_conn, "echo: lines per connection")
      ->check(CLI::Range(1, 1000000))->capture_default_str();
  app.add_option("--echo-rate", c.echo_rate, "echo: lines per second, all connections together")
      ->check(CLI::Range(1.0, 1e7))->capture_default_str();
  app.add_option("--connect-concurrency", c.connect_concurrency, "Handshakes in flight at most")
      ->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--server-pid", c.server_pid, "Sample this process's CPU and context switches over the window");
  app.add_option("--deadline-s", c.deadline_s, "Give up the measured phase after this long")
      ->check(CLI::Range(0.1, 600.0))->capture_default_str();
  app.add_option("--connect-timeout-s", c.connect_timeout_s,
                 "Give up connecting (every connection served by the server) after this long")
      ->check(CLI::Range(0.1, 600.0))->capture_default_str();
  app.add_option("--settle-ms", c.settle_ms, "Pause between readiness and the window")
      ->check(CLI::Range(0, 10000))->capture_default_str();
  app.add_option("--timeout-s", c.timeout_s, "Hard limit on the whole run (SIGALRM)")->capture_default_str();
  app.add_flag("--spin", c.spin,
               "Measured phase: poll without sleeping (a full CPU), so the server's sends never have to "
               "wake this process (on loopback that wake-up is charged to the sender)");
  CLI11_PARSE(app, argc, argv);

  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;  // soft up to hard, never past it
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  const uint64_t need = static_cast<uint64_t>(c.conns) + 16;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
    std::fprintf(stderr, "fanout_client: %lld connections need ~%llu descriptors; RLIMIT_NOFILE is %llu\n",
                 static_cast<long long>(c.conns), static_cast<unsigned long long>(need),
                 static_cast<unsigned long long>(rl.rlim_cur));
    return 2;
  }
  ::alarm(c.timeout_s);  // every run is bounded
  Client client(c);
  return client.run();
}
