// udt_bulk: the congestion-control bench's UDT peer (perf/ccbench.py), from
// Debian's libudt-dev (UDT4: its own rate-based congestion control, DAIMD).
// SOCK_STREAM sockets carry frames (u32 little-endian length + payload; the
// payload's first byte says what it is: perf/peers/bench_common.h). Bulk:
// the client sends --message-byte 'D' frames for --seconds, then 'E', and
// the server answers with what it received. Latency: a small 'P' frame per
// connection every --interval-ms, echoed and timed, as perf/msg_rtt.
//
//   udt_bulk --server --port 9000 [--seconds 30 --json srv.jsonl]
//   udt_bulk --host 10.201.0.2 --port 9000 --seconds 30 --json out.jsonl
//   udt_bulk --mode latency --host 10.201.0.2 --port 9000 --conns 4 --seconds 20
//
// One thread per connection on each side (UDT's blocking calls, with send
// and receive timeouts so that the loops notice their deadlines). The send
// buffer is set to 4 MiB, like rudp_bulk's window, so that the drain after
// --seconds stays bounded; everything else is UDT's default.
// Retransmissions: perfmon's pktRetransTotal over the first transmissions.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <udt/udt.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "perf/peers/bench_common.h"

namespace {

using namespace peers::bench;

bool timed_out() {
  const int c = UDT::getlasterror_code();
  return c == CUDTException::EASYNCRCV || c == CUDTException::ETIMEOUT ||
         c == CUDTException::EASYNCSND;
}

// Sends all of buf; false on a broken connection or at the deadline.
bool send_all(UDTSOCKET s, const char* buf, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    const int k = UDT::send(s, buf, static_cast<int>(n), 0);
    if (k == UDT::ERROR) {
      if (!timed_out() || Clock::now() >= deadline) return false;
      continue;
    }
    buf += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool send_frame(UDTSOCKET s, const std::string& payload, Clock::time_point deadline) {
  const uint32_t len = static_cast<uint32_t>(payload.size());
  std::string f(4, '\0');
  std::memcpy(f.data(), &len, 4);
  f += payload;
  return send_all(s, f.data(), f.size(), deadline);
}

// Reads frames as they come: poll() returns 1 with a frame, 0 on timeout,
// -1 on a broken connection.
class FrameReader {
 public:
  explicit FrameReader(UDTSOCKET s) : s_(s), buf_(1 << 16) {}
  int poll(std::string& out) {
    for (;;) {
      if (have_ >= 4) {
        uint32_t len;
        std::memcpy(&len, data_.data(), 4);
        if (have_ >= 4 + len) {
          out.assign(data_.data() + 4, len);
          data_.erase(0, 4 + len);
          have_ -= 4 + len;
          return 1;
        }
      }
      const int k = UDT::recv(s_, buf_.data(), static_cast<int>(buf_.size()), 0);
      if (k == UDT::ERROR) return timed_out() ? 0 : -1;
      data_.append(buf_.data(), static_cast<size_t>(k));
      have_ += static_cast<size_t>(k);
    }
  }

 private:
  UDTSOCKET s_;
  std::vector<char> buf_;
  std::string data_;
  size_t have_ = 0;
};

void set_timeouts(UDTSOCKET s, int ms) {
  UDT::setsockopt(s, 0, UDT_SNDTIMEO, &ms, sizeof ms);
  UDT::setsockopt(s, 0, UDT_RCVTIMEO, &ms, sizeof ms);
}

sockaddr_in address(const std::string& host, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) a.sin_addr.s_addr = INADDR_ANY;
  return a;
}

std::mutex g_json_mu;

void serve(UDTSOCKET s, std::string peer, const Options& o) {
  set_timeouts(s, 200);
  FrameReader reader(s);
  Receiver r;
  std::string f;
  for (;;) {
    const int k = reader.poll(f);
    const auto now = Clock::now();
    if (k < 0) break;
    if (r.window_over(now, o)) {
      std::lock_guard<std::mutex> l(g_json_mu);
      r.finish_window(now, o, "udt", peer);
    }
    if (k == 0 || f.empty()) continue;
    if (f[0] == 'D') {
      r.on_data(f.size(), now, o);
    } else if (f[0] == 'E') {
      {
        std::lock_guard<std::mutex> l(g_json_mu);
        r.finish_window(now, o, "udt", peer);
      }
      send_frame(s, r.answer(now, o), now + std::chrono::seconds(10));
    } else if (f[0] == 'P') {
      if (!send_frame(s, f, now + std::chrono::seconds(10))) break;
    }
  }
  {
    std::lock_guard<std::mutex> l(g_json_mu);
    r.finish_window(Clock::now(), o, "udt", peer);
  }
  UDT::close(s);
}

int run_server(const Options& o) {
  UDTSOCKET ls = UDT::socket(AF_INET, SOCK_STREAM, 0);
  const sockaddr_in a = address(o.host, o.port);
  if (UDT::bind(ls, reinterpret_cast<const sockaddr*>(&a), sizeof a) == UDT::ERROR ||
      UDT::listen(ls, 64) == UDT::ERROR) {
    std::fprintf(stderr, "udt_bulk: listen %s:%u: %s\n", o.host.c_str(), o.port, UDT::getlasterror_desc());
    return 1;
  }
  // Accept in a thread; the main thread waits for SIGTERM/SIGINT, then
  // exits at once (every connection's window line is written as it ends).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([ls, &o] {
    for (;;) {
      sockaddr_in pa{};
      int len = sizeof pa;
      UDTSOCKET s = UDT::accept(ls, reinterpret_cast<sockaddr*>(&pa), &len);
      if (s == UDT::INVALID_SOCK) return;
      char ip[32];
      ::inet_ntop(AF_INET, &pa.sin_addr, ip, sizeof ip);
      std::thread(serve, s, std::string(ip) + ":" + std::to_string(ntohs(pa.sin_port)), std::cref(o)).detach();
    }
  }).detach();
  int sig = 0;
  sigwait(&set, &sig);
  std::fflush(nullptr);
  std::_Exit(0);
}

UDTSOCKET connect_to(const Options& o) {
  UDTSOCKET s = UDT::socket(AF_INET, SOCK_STREAM, 0);
  const int sndbuf = 4 << 20;
  UDT::setsockopt(s, 0, UDT_SNDBUF, &sndbuf, sizeof sndbuf);
  const sockaddr_in a = address(o.host, o.port);
  if (UDT::connect(s, reinterpret_cast<const sockaddr*>(&a), sizeof a) == UDT::ERROR) {
    std::fprintf(stderr, "udt_bulk: connect %s:%u: %s\n", o.host.c_str(), o.port, UDT::getlasterror_desc());
    return UDT::INVALID_SOCK;
  }
  set_timeouts(s, 100);
  return s;
}

int run_bulk(const Options& o) {
  UDTSOCKET s = connect_to(o);
  if (s == UDT::INVALID_SOCK) return 1;
  std::string frame(o.message, '\0');
  std::mt19937_64 rng(o.seed);
  for (auto& c : frame) c = static_cast<char>(rng());
  frame[0] = 'D';
  uint32_t len = static_cast<uint32_t>(frame.size());
  std::string wire(4, '\0');
  std::memcpy(wire.data(), &len, 4);
  wire += frame;
  BulkResult r;
  const auto start = Clock::now(), stop = start + Receiver::dur(o.seconds);
  while (Clock::now() < stop) {
    // A frame is sent whole (the stream must stay framed), even past stop.
    if (!send_all(s, wire.data(), wire.size(), stop + Receiver::dur(o.drain))) break;
    r.sent += frame.size();
  }
  r.send_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto deadline = Clock::now() + Receiver::dur(o.drain);
  FrameReader reader(s);
  std::string f;
  if (send_frame(s, "E", deadline)) {
    while (Clock::now() < deadline) {
      const int k = reader.poll(f);
      if (k < 0) break;
      if (k == 0) continue;
      unsigned long long bytes = 0, warm = 0;
      double secs = 0, warm_secs = 0;
      if (std::sscanf(f.c_str(), "R %llu %lf %llu %lf", &bytes, &secs, &warm, &warm_secs) == 4) {
        r.recv_bytes = bytes;
        r.recv_seconds = secs;
        r.warm_bytes = warm;
        r.warm_seconds = warm_secs;
        r.verified = bytes == r.sent;
      }
      break;
    }
  }
  if (!r.verified && r.recv_bytes == 0)
    std::fprintf(stderr, "udt_bulk: no answer %.0f s after sending stopped\n", o.drain);
  r.total_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  UDT::TRACEINFO perf;
  if (UDT::perfmon(s, &perf, false) != UDT::ERROR) {
    r.retransmitted = static_cast<uint64_t>(perf.pktRetransTotal);
    const int64_t first = perf.pktSentTotal - perf.pktRetransTotal;
    r.retx_overhead = first > 0 ? static_cast<double>(perf.pktRetransTotal) / first : -1;
    r.srtt_ms = perf.msRTT;
  }
  print_bulk("udt", o, r);
  UDT::close(s);
  return r.verified ? 0 : 1;
}

int run_latency(const Options& o) {
  sluice::perf::Histogram all{3};
  std::mutex mu;
  std::atomic<uint64_t> wrong{0}, unanswered{0}, lost{0};
  std::vector<std::thread> threads;
  const auto interval = Receiver::dur(o.interval_ms / 1000);
  const auto start = Clock::now() + std::chrono::milliseconds(200);
  const auto measure = start + Receiver::dur(o.warmup), stop = measure + Receiver::dur(o.seconds),
             quit = stop + std::chrono::seconds(5);
  for (size_t i = 0; i < o.conns; ++i) {
    threads.emplace_back([&, i] {
      UDTSOCKET s = connect_to(o);
      if (s == UDT::INVALID_SOCK) {
        ++wrong;
        return;
      }
      set_timeouts(s, 1);
      std::mt19937_64 rng(o.seed + i);
      std::uniform_int_distribution<size_t> size(o.min_size, o.max_size);
      sluice::perf::Histogram h{3};
      std::map<uint32_t, Clock::time_point> sent;
      uint32_t seq = 0;
      auto next = start + interval * i / o.conns;
      FrameReader reader(s);
      std::string f;
      for (;;) {
        const auto now = Clock::now();
        if (now >= quit || (now >= stop && sent.empty())) break;
        if (now < stop && now >= next) {
          next += interval;
          std::string m(size(rng), '\0');
          m[0] = 'P';
          const uint32_t sq = seq++;
          std::memcpy(m.data() + 1, &sq, 4);
          for (size_t k = 5; k < m.size(); ++k) m[k] = static_cast<char>(rng());
          if (now >= measure) sent[sq] = now;
          if (!send_frame(s, m, now + std::chrono::seconds(5))) break;
        }
        const int k = reader.poll(f);
        if (k < 0) break;
        if (k == 0) continue;
        uint32_t sq = 0;
        if (f.size() < 5 || f[0] != 'P') {
          ++wrong;
          continue;
        }
        std::memcpy(&sq, f.data() + 1, 4);
        auto it = sent.find(sq);
        if (it != sent.end()) {
          h.record(static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - it->second).count()));
          sent.erase(it);
        }
      }
      UDT::TRACEINFO perf;
      if (UDT::perfmon(s, &perf, false) != UDT::ERROR) lost += static_cast<uint64_t>(perf.pktRetransTotal);
      unanswered += sent.size();
      std::lock_guard<std::mutex> l(mu);
      all.merge(h);
      UDT::close(s);
    });
  }
  for (auto& t : threads) t.join();
  print_latency("udt", o, all, wrong, unanswered, lost);
  return wrong == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"udt_bulk: UDT bulk transfer / small-message RTT for the congestion-control bench"};
  Options o;
  add_options(app, o);
  CLI11_PARSE(app, argc, argv);
  UDT::startup();
  const int rc = o.server ? run_server(o) : o.mode == "bulk" ? run_bulk(o) : run_latency(o);
  std::fflush(nullptr);
  std::_Exit(rc);  // UDT::cleanup() can wait on its threads; nothing is left to flush
}
