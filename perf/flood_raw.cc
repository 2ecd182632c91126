// perf/flood's packet floods: syn, ack, rst (raw TCP), udp and rudp-initial
// (raw when spoofing, a plain UDP socket otherwise), paced by the token
// bucket and sent in sendmmsg batches so one core reaches the rate.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "perf/flood.h"

namespace sluice::perf::flood {

namespace {

constexpr size_t kBatch = 64;

uint16_t random_port(Rng& r) { return static_cast<uint16_t>(1024 + r.next() % (65536 - 1024)); }

}  // namespace

void Report::error(int e, const char* what) {
  ++errors;
  if (first_error.empty()) first_error = std::string(what) + ": " + std::strerror(e);
}

int run_raw(const Options& o, Report* rep) {
  const bool tcp = o.mode == "syn" || o.mode == "ack" || o.mode == "rst";
  const bool raw = tcp || o.spoof;
  const int fd = raw ? socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW)
                     : socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const int e = errno;
    rep->error(e, raw ? "raw socket (needs CAP_NET_RAW)" : "udp socket");
    return -e;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(o.dst);
  to.sin_port = raw ? 0 : htons(o.port);
  int sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  Rng rng{o.seed};
  std::string payload(o.size, '\0');  // udp: random bytes once; content is not the point
  for (auto& c : payload) c = static_cast<char>(rng.next());
  std::vector<std::string> pkts(kBatch);
  std::vector<iovec> iov(kBatch);
  std::vector<mmsghdr> msgs(kBatch);
  const uint8_t flags = o.mode == "syn" ? kSyn : o.mode == "ack" ? kAck : kRst;

  auto build = [&](std::string& out) {
    const uint64_t r = rng.next();
    const uint32_t src = o.spoof ? pick_source(o.src, rng.next()) : 0;
    if (tcp) {
      TcpSpec s;
      s.src = src;
      s.dst = o.dst;
      s.sport = random_port(rng);
      s.dport = o.port;
      s.seq = static_cast<uint32_t>(r);
      s.ack = static_cast<uint32_t>(r >> 32);
      s.flags = flags;
      s.ip_id = static_cast<uint16_t>(r >> 16);
      build_tcp(s, out);
      return;
    }
    std::string body;
    const std::string* data = &payload;
    if (o.mode == "rudp-initial") {
      build_rudp_initial(static_cast<uint32_t>(r), body);
      data = &body;
    }
    if (!raw) {
      out = *data;
      return;
    }
    UdpSpec s;
    s.src = src;
    s.dst = o.dst;
    s.sport = random_port(rng);
    s.dport = o.port;
    s.ip_id = static_cast<uint16_t>(r >> 16);
    build_udp(s, *data, out);
  };

  const double t0 = now_s();
  const double end = t0 + o.seconds;
  Pacer pacer(o.rate, t0);
  for (;;) {
    const double now = now_s();
    if (now >= end || (o.count && rep->packets >= o.count)) break;
    uint64_t most = kBatch;
    if (o.count) most = std::min<uint64_t>(most, o.count - rep->packets);
    const uint64_t n = pacer.take(now, most);
    if (n == 0) {
      const double w = std::min(pacer.wait(), end - now);
      if (w > 0) std::this_thread::sleep_for(std::chrono::duration<double>(std::min(w, 0.001)));
      continue;
    }
    for (uint64_t i = 0; i < n; ++i) {
      build(pkts[i]);
      iov[i] = {pkts[i].data(), pkts[i].size()};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &to;
      msgs[i].msg_hdr.msg_namelen = sizeof to;
    }
    // A packet the kernel refuses (ENOBUFS, a full queue) counts as sent
    // no more: it is an error, and the batch goes on after it.
    unsigned done = 0;
    while (done < n) {
      const int k = sendmmsg(fd, msgs.data() + done, static_cast<unsigned>(n - done), 0);
      if (k < 0) {
        if (errno == EINTR) continue;
        rep->error(errno, "sendmmsg");
        ++done;
        continue;
      }
      for (int i = 0; i < k; ++i) {
        ++rep->packets;
        rep->bytes += pkts[done + i].size() + (raw ? 0 : 28);
      }
      done += static_cast<unsigned>(k);
    }
  }
  rep->elapsed_s = now_s() - t0;
  close(fd);
  return 0;
}

}  // namespace sluice::perf::flood
