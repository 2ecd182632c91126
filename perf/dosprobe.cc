// dosprobe: the DoS lab's good client (scripts/doslab.sh). At a fixed rate
// from one source address it starts an attempt, each with a deadline:
//
//   tcp   a nonblocking connect, then one echo round trip of 16 bytes on
//         the new connection, then a normal close. A SYN the server (or a
//         full queue) dropped is retransmitted after 1 s, so a struggling
//         listener shows up as connect latency >= 1 s long before it shows
//         up as failures.
//   udp   one 16-byte datagram echoed back (the "connect" is the echo).
//   rudp  a handshake (INITIAL, RETRY with a cookie, INITIAL with it,
//         ACCEPT; INITIALs resent after 1 s, 2 s, ... like the real
//         client), then a RESET so the server forgets the session. The
//         latency is the whole handshake's.
//
// Attempts are put in time windows by their start (--phases, e.g.
// before:5,during:10,after:5 for a flood started 5 s in), and one JSON line
// per run gives each window's success rate, connect latency p50/p99/max,
// echo RTT p99 and failures by kind. Its own epoll loop and plain sockets,
// like perf/loadgen, so what it measures is the server and the network.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "perf/histogram.h"
#include "rudp/wire.h"

namespace {

using sluice::perf::Histogram;

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

struct Window {
  std::string name;
  double end_s = 0;  // attempts started before this (and after the previous window)
  uint64_t attempts = 0, ok = 0, refused = 0, timeouts = 0, reset = 0, other = 0;
  uint64_t echo_ok = 0, echo_failed = 0;
  Histogram connect{2}, echo{2};  // nanoseconds
  std::string json() const {
    auto ms = [](uint64_t ns) { return static_cast<double>(ns) / 1e6; };
    return fmt::format(
        "{{\"name\":\"{}\",\"attempts\":{},\"ok\":{},\"success_pct\":{:.2f},\"refused\":{},"
        "\"timeouts\":{},\"reset\":{},\"other\":{},\"connect_p50_ms\":{:.3f},"
        "\"connect_p99_ms\":{:.3f},\"connect_max_ms\":{:.3f},\"echo_ok\":{},\"echo_failed\":{},"
        "\"echo_p50_ms\":{:.3f},\"echo_p99_ms\":{:.3f}}}",
        name, attempts, ok, attempts ? 100.0 * static_cast<double>(ok) / attempts : 0.0, refused,
        timeouts, reset, other, ms(connect.percentile(50)), ms(connect.percentile(99)),
        ms(connect.max()), echo_ok, echo_failed, ms(echo.percentile(50)), ms(echo.percentile(99)));
  }
};

enum class Step { kConnecting, kEchoing, kHandshake };
struct Attempt {
  Window* w = nullptr;
  Step step = Step::kConnecting;
  int64_t started = 0, deadline = 0, echo_sent = 0, resend_at = 0, backoff = 0;
  uint64_t seq = 0;
  uint32_t client_id = 0;
  std::string cookie;
  size_t got = 0;  // echo bytes back
};

struct Probe {
  std::string proto;
  sockaddr_in server{};
  sockaddr_in source{};
  bool bind_source = false;
  int64_t deadline_ns = 0;
  int ep = -1;
  int udp_fd = -1;  // udp: one socket for every attempt
  std::unordered_map<int, Attempt> by_fd;
  std::unordered_map<uint64_t, Attempt> by_seq;  // udp
  std::mt19937_64 rng{std::random_device{}()};
  uint64_t next_seq = 1;
  bool length_prefix = false;  // tcp: frame the echo for a --codec length server

  int open_socket(int type) {
    const int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind_source && bind(fd, reinterpret_cast<const sockaddr*>(&source), sizeof source) < 0) {
      const int e = errno;
      close(fd);
      return -e;
    }
    return fd;
  }
  void watch(int fd, uint32_t events, bool add) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  }
  void finish(int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    by_fd.erase(fd);
    close(fd);
  }
  void fail(Attempt& a, int err) {
    if (err == ECONNREFUSED) ++a.w->refused;
    else if (err == ETIMEDOUT) ++a.w->timeouts;
    else if (err == ECONNRESET) ++a.w->reset;
    else ++a.w->other;
  }
  size_t echo_size() const { return length_prefix ? 20 : 16; }
  void send_echo(int fd, Attempt& a, int64_t now) {
    char msg[20] = {0, 0, 0, 16};  // with length_prefix: 16, big-endian
    char* body = length_prefix ? msg + 4 : msg;
    std::memcpy(body, &a.seq, 8);
    std::memcpy(body + 8, &now, 8);
    a.echo_sent = now;
    a.got = 0;
    if (send(fd, msg, echo_size(), MSG_NOSIGNAL) != static_cast<ssize_t>(echo_size())) {
      ++a.w->echo_failed;
      finish(fd);
    }
  }
  void send_initial(int fd, Attempt& a) {
    std::string d;
    sluice::rudp::begin_datagram(d, sluice::rudp::PacketType::kInitial, 0);
    sluice::rudp::Initial in;
    in.src_id = a.client_id;
    in.cookie = a.cookie;
    sluice::rudp::write_initial(d, in);
    sluice::rudp::seal_datagram(d);
    send(fd, d.data(), d.size(), MSG_NOSIGNAL);
  }

  void start(Window* w, int64_t now) {
    ++w->attempts;
    Attempt a;
    a.w = w;
    a.started = now;
    a.deadline = now + deadline_ns;
    if (proto == "udp") {
      a.seq = next_seq++;
      char msg[16];
      std::memcpy(msg, &a.seq, 8);
      std::memcpy(msg + 8, &now, 8);
      if (send(udp_fd, msg, sizeof msg, MSG_NOSIGNAL) != 16) {
        fail(a, errno);
        return;
      }
      by_seq.emplace(a.seq, a);
      return;
    }
    const int fd = open_socket(proto == "tcp" ? SOCK_STREAM : SOCK_DGRAM);
    if (fd < 0) {
      fail(a, -fd);
      return;
    }
    if (connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) < 0 &&
        errno != EINPROGRESS) {
      fail(a, errno);
      close(fd);
      return;
    }
    if (proto == "tcp") {
      watch(fd, EPOLLOUT, true);
    } else {
      a.step = Step::kHandshake;
      do a.client_id = static_cast<uint32_t>(rng()); while (a.client_id == 0);
      a.backoff = 1000000000;
      a.resend_at = now + a.backoff;
      send_initial(fd, a);
      watch(fd, EPOLLIN, true);
    }
    by_fd.emplace(fd, std::move(a));
  }

  void on_tcp(int fd, Attempt& a, int64_t now) {
    if (a.step == Step::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        fail(a, err);
        finish(fd);
        return;
      }
      ++a.w->ok;
      a.w->connect.record(static_cast<uint64_t>(now - a.started));
      a.step = Step::kEchoing;
      a.deadline = now + deadline_ns;
      watch(fd, EPOLLIN, false);
      send_echo(fd, a, now);
      return;
    }
    char buf[64];
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
      ++a.w->echo_failed;
      finish(fd);
      return;
    }
    a.got += static_cast<size_t>(n);
    if (a.got >= echo_size()) {
      ++a.w->echo_ok;
      a.w->echo.record(static_cast<uint64_t>(now - a.echo_sent));
      finish(fd);
    }
  }

  void on_rudp(int fd, Attempt& a, int64_t now) {
    namespace rw = sluice::rudp;
    char buf[2048];
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      fail(a, errno);  // ICMP port unreachable: ECONNREFUSED
      finish(fd);
      return;
    }
    const std::string_view d(buf, static_cast<size_t>(n));
    rw::Header h;
    if (rw::parse_header(d, &h) != rw::WireError::kNone || h.dst_id != a.client_id) return;
    const std::string_view body = d.substr(rw::kHeaderSize);
    if (h.type == rw::PacketType::kRetry && a.cookie.empty()) {
      if (rw::parse_retry(body, &a.cookie) != rw::WireError::kNone) return;
      send_initial(fd, a);
      return;
    }
    rw::Accept acc;
    if (h.type != rw::PacketType::kAccept || rw::parse_accept(body, &acc) != rw::WireError::kNone)
      return;
    ++a.w->ok;
    a.w->connect.record(static_cast<uint64_t>(now - a.started));
    // Tear the session down at once (a RESET in a DATA packet), so the
    // probe leaves no state behind on the server.
    std::string out;
    rw::begin_datagram(out, rw::PacketType::kData, acc.src_id);
    rw::Writer(out).u64(0);
    rw::write_reset(out, static_cast<uint64_t>(rw::ResetCode::kAborted));
    rw::seal_datagram(out);
    send(fd, out.data(), out.size(), MSG_NOSIGNAL);
    finish(fd);
  }

  void on_udp(int64_t now) {
    char buf[64];
    for (;;) {
      const ssize_t n = recv(udp_fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) return;  // EAGAIN; ICMP errors on a connected socket are not attempts' fault
      if (n < 16) continue;
      uint64_t seq;
      std::memcpy(&seq, buf, 8);
      auto it = by_seq.find(seq);
      if (it == by_seq.end()) continue;  // late (already timed out) or duplicated
      Attempt& a = it->second;
      ++a.w->ok;
      ++a.w->echo_ok;
      a.w->connect.record(static_cast<uint64_t>(now - a.started));
      a.w->echo.record(static_cast<uint64_t>(now - a.started));
      by_seq.erase(it);
    }
  }

  void expire(int64_t now) {
    std::vector<int> gone;
    for (auto& [fd, a] : by_fd) {
      if (now >= a.deadline) {
        if (a.step == Step::kEchoing) ++a.w->echo_failed;
        else ++a.w->timeouts;
        gone.push_back(fd);
      } else if (a.step == Step::kHandshake && now >= a.resend_at) {
        send_initial(fd, a);
        a.backoff *= 2;
        a.resend_at = now + a.backoff;
      }
    }
    for (int fd : gone) finish(fd);
    for (auto it = by_seq.begin(); it != by_seq.end();) {
      if (now >= it->second.deadline) {
        ++it->second.w->timeouts;
        it = by_seq.erase(it);
      } else {
        ++it;
      }
    }
  }
};

bool parse_phases(const std::string& text, double total, std::vector<Window>* out) {
  if (text.empty()) {
    out->emplace_back();
    out->back().name = "all";
    out->back().end_s = total;
    return true;
  }
  double at = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    const size_t colon = item.find(':');
    if (colon == std::string::npos || colon == 0) return false;
    try {
      at += std::stod(item.substr(colon + 1));
    } catch (...) {
      return false;
    }
    out->emplace_back();
    out->back().name = item.substr(0, colon);
    out->back().end_s = at;
    pos = comma + 1;
  }
  return !out->empty();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dosprobe: the DoS lab's good client: paced connect (or handshake, or UDP echo) "
               "attempts with a deadline, success rate and latency per time window, one JSON line"};
  Probe p;
  std::string host = "127.0.0.1", bind_addr, phases;
  uint16_t port = 0;
  double rate = 50, seconds = 5, deadline_ms = 3000;
  app.add_option("--proto", p.proto, "tcp|udp|rudp")
      ->check(CLI::IsMember({"tcp", "udp", "rudp"}))
      ->required();
  app.add_option("--host", host, "Server address")->capture_default_str();
  app.add_option("--port", port, "Server port")->required();
  app.add_option("--bind", bind_addr, "Source address (default: the kernel's choice)");
  app.add_option("--rate", rate, "Attempts per second")->check(CLI::Range(0.1, 10000.0))->capture_default_str();
  app.add_option("--seconds", seconds, "Start attempts for this long (then wait out the last deadlines)")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--deadline-ms", deadline_ms, "An attempt (and, tcp, its echo) fails after this long")
      ->check(CLI::Range(1.0, 60000.0))
      ->capture_default_str();
  app.add_option("--phases", phases,
                 "Windows by attempt start: NAME:SECONDS[,...] (default: one window, 'all'); "
                 "attempts after the last window's end go into it");
  app.add_flag("--length-prefix", p.length_prefix,
               "tcp: send the echo as one frame with a 4-byte big-endian length (a --codec length server)");
  CLI11_PARSE(app, argc, argv);

  p.server.sin_family = AF_INET;
  p.server.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &p.server.sin_addr) != 1) {
    std::fprintf(stderr, "dosprobe: bad --host %s\n", host.c_str());
    return 2;
  }
  if (!bind_addr.empty()) {
    p.bind_source = true;
    p.source.sin_family = AF_INET;
    if (inet_pton(AF_INET, bind_addr.c_str(), &p.source.sin_addr) != 1) {
      std::fprintf(stderr, "dosprobe: bad --bind %s\n", bind_addr.c_str());
      return 2;
    }
  }
  std::vector<Window> windows;
  if (!parse_phases(phases, seconds, &windows)) {
    std::fprintf(stderr, "dosprobe: bad --phases '%s' (want NAME:SECONDS,...)\n", phases.c_str());
    return 2;
  }
  p.deadline_ns = static_cast<int64_t>(deadline_ms * 1e6);
  p.ep = epoll_create1(EPOLL_CLOEXEC);
  if (p.proto == "udp") {
    p.udp_fd = p.open_socket(SOCK_DGRAM);
    if (p.udp_fd < 0 ||
        connect(p.udp_fd, reinterpret_cast<const sockaddr*>(&p.server), sizeof p.server) < 0) {
      std::fprintf(stderr, "dosprobe: udp socket: %s\n",
                   std::strerror(p.udp_fd < 0 ? -p.udp_fd : errno));
      return 1;
    }
    p.watch(p.udp_fd, EPOLLIN, true);
  }

  const int64_t t0 = now_ns();
  const auto interval = static_cast<int64_t>(1e9 / rate);
  const int64_t stop_starting = t0 + static_cast<int64_t>(seconds * 1e9);
  int64_t next = t0;
  size_t wi = 0;
  std::vector<epoll_event> evs(256);
  for (;;) {
    int64_t now = now_ns();
    while (next <= now && next < stop_starting) {
      const double at = static_cast<double>(next - t0) / 1e9;
      while (wi + 1 < windows.size() && at >= windows[wi].end_s) ++wi;
      p.start(&windows[wi], now);
      next += interval;
    }
    p.expire(now);
    if (now >= stop_starting && p.by_fd.empty() && p.by_seq.empty()) break;
    int64_t wait = next < stop_starting ? next - now : 10000000;
    wait = std::clamp<int64_t>(wait, 0, 10000000);
    const int k = epoll_wait(p.ep, evs.data(), static_cast<int>(evs.size()),
                             static_cast<int>((wait + 999999) / 1000000));
    now = now_ns();
    for (int i = 0; i < k; ++i) {
      const int fd = evs[i].data.fd;
      if (fd == p.udp_fd) {
        p.on_udp(now);
        continue;
      }
      auto it = p.by_fd.find(fd);
      if (it == p.by_fd.end()) continue;
      if (p.proto == "tcp") p.on_tcp(fd, it->second, now);
      else p.on_rudp(fd, it->second, now);
    }
  }
  std::string out = fmt::format("{{\"proto\":\"{}\",\"host\":\"{}\",\"port\":{},\"rate\":{},\"windows\":[",
                                p.proto, host, port, rate);
  for (size_t i = 0; i < windows.size(); ++i) out += (i ? "," : "") + windows[i].json();
  std::printf("%s]}\n", out.c_str());
  return 0;
}
