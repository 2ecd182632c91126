// The heartbeat client's UDP session: a UdpEndpoint per socket, replaced
// when the server goes silent, PINGs on a timer, PONGs counted (see
// heartbeat_pinger.h).
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include <spdlog/spdlog.h>

#include "codec/heartbeat.h"
#include "core/idle_timer.h"
#include "core/net.h"
#include "core/udp_endpoint.h"
#include "servers/heartbeat_pinger_session.h"

namespace sluice::servers::pinger_detail {
namespace {

namespace hb = codec::heartbeat;

bool same_address(const sockaddr* a, socklen_t alen, const sockaddr_storage& b, socklen_t blen) {
  if (a->sa_family != b.ss_family) return false;
  if (a->sa_family == AF_INET && alen >= sizeof(sockaddr_in) && blen >= sizeof(sockaddr_in)) {
    sockaddr_in x, y;
    std::memcpy(&x, a, sizeof x);
    std::memcpy(&y, &b, sizeof y);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  if (a->sa_family == AF_INET6 && alen >= sizeof(sockaddr_in6) && blen >= sizeof(sockaddr_in6)) {
    sockaddr_in6 x, y;
    std::memcpy(&x, a, sizeof x);
    std::memcpy(&y, &b, sizeof y);
    return x.sin6_port == y.sin6_port &&
           std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
  }
  return false;
}

class UdpSession final : public Session, public DatagramHandler, public UdpEndpoint::Owner {
 public:
  UdpSession(Pinger::Impl& p, size_t index)
      : Session(p, index), idle_(*p.loop, [this](IdleKind kind) {
          if (kind == IdleKind::kReader) server_silent();
        }) {}

  void start() override { open(); }

  void go_silent() override {
    silent_ = true;
    cancel_timers();
    idle_.stop();
    spdlog::info("session {}: stops sending pings", index_);
  }

  void finish(Clock::time_point end) override {
    finished_ = true;
    cancel_timers();
    idle_.stop();
    account_end(end);
    close_endpoint();
  }

  bool released() const override { return !ep_ && closing_.empty(); }

  // DatagramHandler (loop thread).
  void on_datagram(UdpEndpoint& ep, const io::Datagram& d) override {
    if (&ep != ep_.get() || !same_address(d.addr, d.addr_len, p_.server, p_.server_len)) return;
    // Only a PONG for one of our PINGs shows the server is serving us:
    // garbage (or a stray PONG) must neither keep the session from giving
    // a broken server up nor reset the backoff.
    hb::Message m;
    if (hb::parse(d.data, &m) != hb::ParseError::kNone || m.type != hb::Type::kPong) return;
    if (!answered(m.seq, Clock::now())) return;
    idle_.on_read();
    if (!up_) {
      if (ever_up_) {
        ++p_.stats.reconnects;
        spdlog::info("session {}: server answers again after {} attempts", index_,
                     backoff_.attempts());
      }
      up_ = ever_up_ = true;
      backoff_.reset();
    }
  }

  // UdpEndpoint::Owner.
  void release(UdpEndpoint& ep) override {
    for (auto it = closing_.begin(); it != closing_.end(); ++it) {
      if (it->get() == &ep) {
        p_.loop->destroy_later(std::move(*it));
        closing_.erase(it);
        return;
      }
    }
  }

 private:
  void open() {
    if (finished_ || silent_) return;
    int fd = bind_udp(p_.local_host, 0, {});
    if (fd < 0) {
      p_.fail(fd, fmt::format("cannot bind a UDP socket on {}: {}", p_.local_host,
                              std::strerror(-fd)));
      return;
    }
    ep_ = std::make_unique<UdpEndpoint>(*p_.loop, fd, *this, *this);
    if (int rc = ep_->start(); rc < 0) {
      ep_.reset();  // start() closed the fd
      p_.fail(rc, fmt::format("the {} back end cannot serve UDP: {}", p_.loop->io_name(),
                              std::strerror(-rc)));
      return;
    }
    up_ = false;
    IdleOptions io;
    io.reader = silence_limit();
    idle_.start(io);
    ping();
    ping_timer_ = p_.loop->run_every(p_.opts.interval, [this] {
      if (ep_ && ep_->is_open() && !silent_) ping();
    });
  }

  void ping() {
    const Clock::time_point now = Clock::now();
    const uint64_t seq = next_seq_++;
    if (ep_->send_to(reinterpret_cast<const sockaddr*>(&p_.server), p_.server_len,
                     hb::view(hb::encode_ping(seq, ns_of(now))))) {
      sent(seq, now);
    }
  }

  void server_silent() {
    if (finished_ || silent_) return;
    give_up();
    cancel_timers();
    idle_.stop();
    close_endpoint();
    spdlog::info("session {}: no PONG for {} ms; retrying with a new socket", index_,
                 std::chrono::duration_cast<std::chrono::milliseconds>(silence_limit()).count());
    retry_timer_ = p_.loop->run_after(next_delay(), [this] {
      retry_timer_ = 0;
      open();
    });
  }

  void close_endpoint() {
    if (!ep_) return;
    UdpEndpoint* ep = ep_.get();
    closing_.push_back(std::move(ep_));  // release() may come synchronously
    ep->close();
  }

  IdleTimer idle_;
  std::unique_ptr<UdpEndpoint> ep_;
  std::vector<std::unique_ptr<UdpEndpoint>> closing_;  // until released
  bool up_ = false;  // a PONG arrived on the current socket
};

}  // namespace

std::unique_ptr<Session> make_udp_session(Pinger::Impl& p, size_t index) {
  return std::make_unique<UdpSession>(p, index);
}

}  // namespace sluice::servers::pinger_detail
