// loadgen: a closed-loop echo load generator, the measuring instrument of
// the perf harness (perf/compare.py). Deliberately independent of sluice's
// own code paths: plain sockets and its own epoll loop per thread, so a bug
// in sluice's IO layer cannot hide itself in the measurement.
//
//   loadgen --port 7000 --conns 64 --size 64 --pipeline 1 --duration-s 5
//
// Model: each connection keeps `pipeline` messages in flight; every echoed
// message is checked byte for byte and immediately replaced by a new one.
// Each message (on the wire: [4-byte big-endian length if --codec length]
// then `size` bytes) starts with its 8-byte sequence number and its 8-byte
// send timestamp, followed by a pattern that depends on the sequence
// number, so a reordered, duplicated, truncated or corrupted echo is a
// verify error. TCP is verified as a byte stream per connection (the echo
// may split or coalesce messages); UDP per datagram (one message each).
//
// Timeline: connect everything, then `warmup_s` of load that is not
// counted, then `duration_s` measured (completions whose receive time falls
// in the window are counted and their round-trip time recorded), then
// sending stops and in-flight messages drain (TCP: must all come back;
// UDP: those not back within --udp-timeout-ms are `lost`). The phases are
// announced on stderr ("loadgen: phase measure" / "loadgen: phase done")
// so a harness can sample the server exactly over the measured window.
//
// Output: one JSON line on stdout. Exit status 1 if errors > 0, 2 on bad
// options.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <CLI/CLI.hpp>

#include "perf/histogram.h"

namespace {

using sluice::perf::Histogram;

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string proto = "tcp";
  size_t conns = 1;
  size_t idle_conns = 0;  // connected, never used: the cost of idle fds
  size_t size = 64;
  size_t pipeline = 1;
  double duration_s = 5;
  double warmup_s = 1;
  size_t threads = 1;
  std::string codec = "raw";
  double connect_timeout_s = 10;
  double drain_s = 3;
  double udp_timeout_ms = 1000;
  bool quiet = false;
};

// Everything a message's bytes are derived from, shared read-only.
struct Wire {
  size_t prefix = 0;     // 4 with --codec length
  size_t size = 0;       // message bytes (after the prefix)
  size_t hdr_len = 0;    // prefix + min(16, size): bytes kept per slot
  size_t wire_len = 0;   // prefix + size
  std::vector<char> pattern;  // size + 256 bytes; payload = pattern[seq & 255 ...]

  void init(size_t prefix_bytes, size_t msg_size) {
    prefix = prefix_bytes;
    size = msg_size;
    hdr_len = prefix + std::min<size_t>(16, size);
    wire_len = prefix + size;
    pattern.resize(size + 256);
    for (size_t i = 0; i < pattern.size(); ++i) {
      pattern[i] = static_cast<char>((i * 131 + (i >> 8) * 7 + 13) & 0xff);
    }
  }
  const char* payload(uint64_t seq) const { return pattern.data() + (seq & 0xff); }
};

struct Slot {
  uint64_t seq = 0;
  uint64_t ts = 0;  // send time, ns
  bool used = false;
  char hdr[20];
};

struct Conn {
  int fd = -1;
  uint32_t id = 0;
  bool alive = false;
  bool connecting = false;
  bool want_out = false;  // EPOLLOUT registered
  uint64_t next_seq = 0;
  std::vector<Slot> slots;  // TCP: FIFO ring; UDP: unordered set of K
  size_t head = 0;          // TCP ring head
  size_t inflight = 0;
  size_t rx_off = 0;        // TCP: bytes of slots[head] received so far
  std::string out;
  size_t out_off = 0;
  uint64_t last_progress = 0;
  std::unordered_set<uint64_t> timed_out;  // UDP: seqs declared lost
};

struct Totals {
  uint64_t msgs = 0;          // completions inside the window
  uint64_t errors = 0;
  uint64_t connect_errors = 0;
  uint64_t verify_errors = 0;
  uint64_t reset_errors = 0;  // EOF, reset, other socket errors
  uint64_t stalled = 0;       // TCP messages not echoed by the end of the drain
  uint64_t lost = 0;          // UDP
  uint64_t late = 0;          // UDP: arrived after being declared lost
};

// Shared timeline, published by main once every thread has connected.
std::atomic<int> g_ready{0};
std::atomic<bool> g_go{false};
std::atomic<uint64_t> g_t0{0}, g_warm_end{0}, g_end{0};

class Worker {
 public:
  Worker(const Options& o, const Wire& w, const sockaddr_storage& addr, socklen_t addrlen,
         std::vector<uint32_t> ids)
      : o_(o), w_(w), addr_(addr), addrlen_(addrlen), udp_(o.proto == "udp"), hist_(2) {
    conns_.resize(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      conns_[i].id = ids[i];
      conns_[i].slots.resize(o.pipeline);
    }
    rx_.resize(std::max<size_t>(256 * 1024, w.wire_len + 64));
  }

  void run() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) {
      t_.errors += conns_.size();
      t_.connect_errors += conns_.size();
    } else {
      connect_all();
    }
    g_ready.fetch_add(1);
    while (!g_go.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::microseconds(200));
    warm_end_ = g_warm_end.load();
    end_ = g_end.load();
    if (ep_ >= 0) loop();
    for (Conn& c : conns_) close_conn(c);
    if (ep_ >= 0) ::close(ep_);
  }

  const Histogram& hist() const { return hist_; }
  const Totals& totals() const { return t_; }

 private:
  void error(Conn& c, uint64_t& kind) {
    ++kind;
    ++t_.errors;
    close_conn(c);
  }

  void close_conn(Conn& c) {
    if (c.fd >= 0) {
      ::close(c.fd);  // also drops it from the epoll set
      c.fd = -1;
    }
    c.alive = false;
  }

  void connect_all() {
    const uint64_t deadline = now_ns() + static_cast<uint64_t>(o_.connect_timeout_s * 1e9);
    size_t pending = 0;
    for (Conn& c : conns_) {
      int type = (udp_ ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
      c.fd = ::socket(addr_.ss_family, type, 0);
      if (c.fd < 0) {
        ++t_.errors;
        ++t_.connect_errors;
        continue;
      }
      if (!udp_) {
        int one = 1;
        ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      int r = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), addrlen_);
      if (r < 0 && errno != EINPROGRESS) {
        ++t_.errors;
        ++t_.connect_errors;
        close_conn(c);
        continue;
      }
      epoll_event ev{};
      ev.data.ptr = &c;
      ev.events = (r == 0) ? EPOLLIN : EPOLLOUT;
      if (::epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev) < 0) {
        ++t_.errors;
        ++t_.connect_errors;
        close_conn(c);
        continue;
      }
      if (r == 0) {
        c.alive = true;
      } else {
        c.connecting = true;
        ++pending;
      }
    }
    std::vector<epoll_event> evs(256);
    while (pending > 0) {
      uint64_t now = now_ns();
      if (now >= deadline) break;
      int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()),
                           static_cast<int>(std::min<uint64_t>((deadline - now) / 1000000 + 1, 100)));
      for (int i = 0; i < n; ++i) {
        Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
        if (!c.connecting) continue;
        c.connecting = false;
        --pending;
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          ++t_.errors;
          ++t_.connect_errors;
          close_conn(c);
          continue;
        }
        epoll_event ev{};
        ev.data.ptr = &c;
        ev.events = EPOLLIN;
        ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        c.alive = true;
      }
    }
    for (Conn& c : conns_) {
      if (c.connecting) {  // timed out
        c.connecting = false;
        ++t_.errors;
        ++t_.connect_errors;
        close_conn(c);
      }
    }
  }

  // Fills slot s for message `seq` sent at `ts` and appends/sends its bytes.
  void fill_slot(Slot& s, uint64_t seq, uint64_t ts) {
    s.seq = seq;
    s.ts = ts;
    s.used = true;
    char full[20];
    size_t p = 0;
    if (w_.prefix) {
      uint32_t be = htonl(static_cast<uint32_t>(w_.size));
      std::memcpy(full, &be, 4);
      p = 4;
    }
    std::memcpy(full + p, &seq, 8);
    std::memcpy(full + p + 8, &ts, 8);
    std::memcpy(s.hdr, full, w_.hdr_len);
  }

  size_t body_len() const { return w_.wire_len - w_.hdr_len; }

  // TCP: queue one more message on c.
  void queue_tcp(Conn& c, uint64_t ts) {
    size_t idx = (c.head + c.inflight) % c.slots.size();
    Slot& s = c.slots[idx];
    uint64_t seq = c.next_seq++;
    fill_slot(s, seq, ts);
    c.out.append(s.hdr, w_.hdr_len);
    c.out.append(w_.payload(seq), body_len());
    ++c.inflight;
  }

  void flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!c.want_out) set_out(c, true);
        return;
      }
      error(c, t_.reset_errors);
      return;
    }
    c.out.clear();
    c.out_off = 0;
    if (c.want_out) set_out(c, false);
  }

  void set_out(Conn& c, bool on) {
    epoll_event ev{};
    ev.data.ptr = &c;
    ev.events = on ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
    ::epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = on;
  }

  bool sending(uint64_t now) const { return now < end_; }

  void complete(uint64_t sent_ts, uint64_t now) {
    if (now >= warm_end_ && now < end_) {
      ++t_.msgs;
      hist_.record(now - sent_ts);
    }
  }

  // Compares n received bytes at offset `off` of the message in slot s.
  bool verify(const Slot& s, size_t off, const char* data, size_t n) const {
    if (off < w_.hdr_len) {
      size_t h = std::min(n, w_.hdr_len - off);
      if (std::memcmp(data, s.hdr + off, h) != 0) return false;
      off += h;
      data += h;
      n -= h;
    }
    if (n == 0) return true;
    return std::memcmp(data, w_.payload(s.seq) + (off - w_.hdr_len), n) == 0;
  }

  void on_tcp_readable(Conn& c) {
    for (int rounds = 0; rounds < 16 && c.alive; ++rounds) {
      ssize_t n = ::recv(c.fd, rx_.data(), rx_.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        error(c, t_.reset_errors);
        return;
      }
      if (n == 0) {  // the server closed on us
        error(c, t_.reset_errors);
        return;
      }
      const uint64_t now = now_ns();
      c.last_progress = now;
      const char* p = rx_.data();
      size_t left = static_cast<size_t>(n);
      size_t done = 0;
      while (left > 0) {
        if (c.inflight == 0) {  // bytes nobody asked for
          error(c, t_.verify_errors);
          return;
        }
        Slot& s = c.slots[c.head];
        size_t take = std::min(left, w_.wire_len - c.rx_off);
        if (!verify(s, c.rx_off, p, take)) {
          error(c, t_.verify_errors);
          return;
        }
        c.rx_off += take;
        p += take;
        left -= take;
        if (c.rx_off == w_.wire_len) {
          complete(s.ts, now);
          s.used = false;
          c.rx_off = 0;
          c.head = (c.head + 1) % c.slots.size();
          --c.inflight;
          ++done;
        }
      }
      if (done && sending(now)) {
        for (size_t i = 0; i < done; ++i) queue_tcp(c, now);
        flush(c);
      }
      if (static_cast<size_t>(n) < rx_.size()) break;  // drained the socket
    }
  }

  // UDP: send one message on c in a free slot.
  void send_udp(Conn& c, uint64_t ts) {
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

  void on_udp_readable(Conn& c) {
    for (int rounds = 0; rounds < 64 && c.alive; ++rounds) {
      ssize_t n = ::recv(c.fd, rx_.data(), rx_.size(), 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        error(c, t_.reset_errors);
        return;
      }
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

  void expire_udp(uint64_t now, bool refill) {
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

  size_t total_inflight() const {
    size_t n = 0;
    for (const Conn& c : conns_) {
      if (c.alive) n += c.inflight;
    }
    return n;
  }

  void loop() {
    tx_.resize(w_.wire_len + 64);
    uint64_t now = now_ns();
    for (Conn& c : conns_) {
      if (!c.alive || c.id >= o_.conns) continue;  // idle connections never send
      c.last_progress = now;
      if (udp_) {
        for (size_t i = 0; i < o_.pipeline && c.alive; ++i) send_udp(c, now);
      } else {
        for (size_t i = 0; i < o_.pipeline; ++i) queue_tcp(c, now);
        flush(c);
      }
    }
    std::vector<epoll_event> evs(1024);
    const uint64_t drain_deadline =
        end_ + static_cast<uint64_t>((udp_ ? std::max(o_.drain_s, o_.udp_timeout_ms / 1000 + 0.1) : o_.drain_s) * 1e9);
    uint64_t next_expire = now + 5000000;
    for (;;) {
      now = now_ns();
      if (now >= end_) {
        if (total_inflight() == 0 || now >= drain_deadline) break;
      }
      uint64_t until = now < end_ ? end_ - now : drain_deadline - now;
      int timeout_ms = static_cast<int>(std::min<uint64_t>(until / 1000000 + 1, udp_ ? 5 : 50));
      int n = ::epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), timeout_ms);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n; ++i) {
        Conn& c = *static_cast<Conn*>(evs[i].data.ptr);
        if (!c.alive) continue;
        uint32_t e = evs[i].events;
        if (udp_) {
          if (e & (EPOLLIN | EPOLLERR)) on_udp_readable(c);
          continue;
        }
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_tcp_readable(c);
        if (c.alive && (e & EPOLLOUT)) flush(c);
      }
      if (udp_) {
        now = now_ns();
        if (now >= next_expire) {
          expire_udp(now, sending(now));
          next_expire = now + 5000000;
        }
      }
    }
    // Whatever is still outstanding did not come back in time.
    for (Conn& c : conns_) {
      if (!c.alive || c.inflight == 0) continue;
      if (udp_) {
        t_.lost += c.inflight;
      } else {
        t_.stalled += c.inflight;
        ++t_.errors;  // one per stalled connection
      }
    }
  }

  const Options& o_;
  const Wire& w_;
  sockaddr_storage addr_;
  socklen_t addrlen_;
  bool udp_;
  int ep_ = -1;
  uint64_t warm_end_ = 0, end_ = 0;
  std::vector<Conn> conns_;
  std::vector<char> rx_, tx_;
  Histogram hist_;
  Totals t_;
};

bool resolve(const Options& o, sockaddr_storage* out, socklen_t* len, std::string* err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = o.proto == "udp" ? SOCK_DGRAM : SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(o.port);
  int r = ::getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res);
  if (r != 0 || !res) {
    *err = std::string("bad --host (numeric loopback address expected): ") + gai_strerror(r);
    return false;
  }
  std::memcpy(out, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  ::freeaddrinfo(res);
  return true;
}

bool is_loopback(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (a.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  }
  return false;
}

void raise_fd_limit(size_t need) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need + 64) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, need + 64);
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void sleep_until(uint64_t t) {
  for (;;) {
    uint64_t now = now_ns();
    if (now >= t) return;
    uint64_t d = t - now;
    timespec ts{static_cast<time_t>(d / 1000000000ull), static_cast<long>(d % 1000000000ull)};
    ::nanosleep(&ts, nullptr);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"sluice perf load generator: closed-loop echo client (TCP or UDP), verifies every byte"};
  app.add_option("--host", o.host, "Server address (loopback only: 127.0.0.0/8 or ::1)")->capture_default_str();
  app.add_option("--port", o.port, "Server port")->required();
  app.add_option("--proto", o.proto, "tcp|udp")->check(CLI::IsMember({"tcp", "udp"}))->capture_default_str();
  app.add_option("--conns", o.conns, "Connections (UDP: sockets)")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("--idle-conns", o.idle_conns,
                 "Extra connections that are opened and then never send (idle descriptors on the server)")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--size", o.size, "Message bytes (excluding a --codec length prefix)")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  app.add_option("--pipeline", o.pipeline, "Messages in flight per connection (1 = ping-pong)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--duration-s", o.duration_s, "Measured seconds")->check(CLI::Range(0.01, 3600.0))->capture_default_str();
  app.add_option("--warmup-s", o.warmup_s, "Unmeasured seconds before")->check(CLI::Range(0.0, 3600.0))->capture_default_str();
  app.add_option("--threads", o.threads, "Client threads (each its own epoll loop over a share of the conns)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--codec", o.codec, "raw|length (length: 4-byte big-endian length prefix, then the message)")
      ->check(CLI::IsMember({"raw", "length"}))
      ->capture_default_str();
  app.add_option("--connect-timeout-s", o.connect_timeout_s, "Give up on a connect after this long")
      ->capture_default_str();
  app.add_option("--drain-s", o.drain_s, "TCP: after the window, how long in-flight messages may take to come back")
      ->capture_default_str();
  app.add_option("--udp-timeout-ms", o.udp_timeout_ms, "UDP: a datagram not echoed within this is lost")
      ->capture_default_str();
  app.add_flag("--quiet", o.quiet, "Do not print phase lines on stderr");
  CLI11_PARSE(app, argc, argv);

  if (o.proto == "udp" && o.size < 8) {
    std::fprintf(stderr, "loadgen: --proto udp needs --size >= 8 (the sequence number)\n");
    return 2;
  }
  if (o.proto == "udp" && o.size + (o.codec == "length" ? 4 : 0) > 65507) {
    std::fprintf(stderr, "loadgen: UDP message too large\n");
    return 2;
  }
  sockaddr_storage addr{};
  socklen_t addrlen = 0;
  std::string err;
  if (!resolve(o, &addr, &addrlen, &err)) {
    std::fprintf(stderr, "loadgen: %s\n", err.c_str());
    return 2;
  }
  if (!is_loopback(addr)) {
    std::fprintf(stderr, "loadgen: refusing non-loopback target %s (loopback only)\n", o.host.c_str());
    return 2;
  }
  o.threads = std::min(o.threads, o.conns);
  raise_fd_limit(o.conns + o.idle_conns + 16);

  Wire wire;
  wire.init(o.codec == "length" ? 4 : 0, o.size);

  std::vector<std::unique_ptr<Worker>> workers;
  for (size_t t = 0; t < o.threads; ++t) {
    std::vector<uint32_t> ids;
    for (size_t i = t; i < o.conns + o.idle_conns; i += o.threads) ids.push_back(static_cast<uint32_t>(i));
    workers.push_back(std::make_unique<Worker>(o, wire, addr, addrlen, std::move(ids)));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  // Everyone connected (or failed): publish the timeline and go.
  while (g_ready.load() < static_cast<int>(o.threads)) std::this_thread::sleep_for(std::chrono::microseconds(200));
  const uint64_t t0 = now_ns();
  const uint64_t warm_end = t0 + static_cast<uint64_t>(o.warmup_s * 1e9);
  const uint64_t end = warm_end + static_cast<uint64_t>(o.duration_s * 1e9);
  g_t0 = t0;
  g_warm_end = warm_end;
  g_end = end;
  g_go.store(true, std::memory_order_release);
  if (!o.quiet) std::fprintf(stderr, "loadgen: phase warmup\n");
  sleep_until(warm_end);
  if (!o.quiet) std::fprintf(stderr, "loadgen: phase measure\n");
  sleep_until(end);
  if (!o.quiet) std::fprintf(stderr, "loadgen: phase done\n");
  for (auto& th : threads) th.join();

  Histogram h(2);
  Totals t;
  for (auto& w : workers) {
    h.merge(w->hist());
    const Totals& x = w->totals();
    t.msgs += x.msgs;
    t.errors += x.errors;
    t.connect_errors += x.connect_errors;
    t.verify_errors += x.verify_errors;
    t.reset_errors += x.reset_errors;
    t.stalled += x.stalled;
    t.lost += x.lost;
    t.late += x.late;
  }
  const double secs = static_cast<double>(end - warm_end) / 1e9;
  const double mps = t.msgs / secs;
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  std::printf(
      "{\"proto\":\"%s\",\"conns\":%zu,\"size\":%zu,\"pipeline\":%zu,\"duration_s\":%.3f,"
      "\"msgs\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,"
      "\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,"
      "\"errors\":%" PRIu64 ",\"lost\":%" PRIu64 ","
      "\"codec\":\"%s\",\"threads\":%zu,\"idle_conns\":%zu,\"mean_us\":%.2f,"
      "\"connect_errors\":%" PRIu64 ",\"verify_errors\":%" PRIu64 ",\"reset_errors\":%" PRIu64
      ",\"stalled\":%" PRIu64 ",\"late\":%" PRIu64 "}\n",
      o.proto.c_str(), o.conns, o.size, o.pipeline, secs, t.msgs, mps,
      mps * static_cast<double>(o.size) / 1e6, us(h.percentile(50)), us(h.percentile(99)),
      us(h.percentile(99.9)), us(h.max()), t.errors, t.lost, o.codec.c_str(), o.threads, o.idle_conns, h.mean() / 1000.0,
      t.connect_errors, t.verify_errors, t.reset_errors, t.stalled, t.late);
  std::fflush(stdout);
  return t.errors > 0 ? 1 : 0;
}
