// Internal to the loadgen binary (perf/loadgen*.cc): the options, the wire
// format, per-connection state and the per-thread Worker, whose TCP and UDP
// client paths live in loadgen_tcp.cc and loadgen_udp.cc.
#ifndef SLUICE_PERF_LOADGEN_INTERNAL_H_
#define SLUICE_PERF_LOADGEN_INTERNAL_H_

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "perf/histogram.h"
#include "perf/loadgen_tls.h"

namespace sluice::perf::loadgen {

using sluice::perf::Histogram;

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct Options {
  std::string host = "127.0.0.1";  // numeric or a name (main resolves it)
  std::string target;  // host's address as main chose it, numeric (rudp takes no names)
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
  // --tls: the run's client context (made by main from TlsFlags), and the
  // name the server's certificate must carry.
  SSL_CTX* tls = nullptr;
  std::string tls_name;
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
  SSL* ssl = nullptr;  // --tls: over fd (connecting: set once TCP is up)
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
extern std::atomic<int> g_ready;
extern std::atomic<bool> g_go;
extern std::atomic<uint64_t> g_t0, g_warm_end, g_end;

class Worker {
 public:
  Worker(const Options& o, const Wire& w, const sockaddr_storage& addr, socklen_t addrlen,
         std::vector<uint32_t> ids);

  void run();

  const Histogram& hist() const { return hist_; }
  const Totals& totals() const { return t_; }
  // --tls: why the first failed handshake failed ("" if none did).
  const std::string& tls_failure() const { return tls_failure_; }

 private:
  void error(Conn& c, uint64_t& kind) {
    ++kind;
    ++t_.errors;
    close_conn(c);
  }

  void close_conn(Conn& c) {
    if (c.ssl) {
      tls_free(c.ssl);
      c.ssl = nullptr;
    }
    if (c.fd >= 0) {
      ::close(c.fd);  // also drops it from the epoll set
      c.fd = -1;
    }
    c.alive = false;
  }

  void connect_all();
  // --tls: one handshake step on a connected c; true while it is still
  // connecting (events set for what OpenSSL waits for).
  bool tls_step(Conn& c);

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

  // TCP (loadgen_tcp.cc).
  void queue_tcp(Conn& c, uint64_t ts);
  void flush(Conn& c);
  void set_out(Conn& c, bool on);
  void on_tcp_readable(Conn& c);

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

  // One recv() into rx_ on c (the receive step shared by TCP and UDP).
  enum class Recv { kData, kRetry, kDrained, kFailed };
  // kData: *n bytes are in rx_ (0 = EOF on TCP). kRetry: EINTR. kDrained:
  // EAGAIN. kFailed: a socket error, already counted and c closed.
  Recv recv_rx(Conn& c, ssize_t* n) {
    *n = c.ssl ? tls_read(c.ssl, rx_.data(), rx_.size()) : ::recv(c.fd, rx_.data(), rx_.size(), 0);
    if (*n >= 0) return Recv::kData;
    if (errno == EINTR) return Recv::kRetry;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Recv::kDrained;
    error(c, t_.reset_errors);
    return Recv::kFailed;
  }

  // UDP (loadgen_udp.cc).
  void send_udp(Conn& c, uint64_t ts);
  void on_udp_readable(Conn& c);
  void expire_udp(uint64_t now, bool refill);

  size_t total_inflight() const;
  void loop();

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
  std::string tls_failure_;
};

}  // namespace sluice::perf::loadgen

#endif  // SLUICE_PERF_LOADGEN_INTERNAL_H_
