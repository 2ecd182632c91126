// rudp as a Server transport: one Endpoint per server loop, each on its own
// SO_REUSEPORT socket bound to the server's port (the kernel keeps a peer's
// datagrams on one socket, so a connection never changes loops).
#include <spdlog/spdlog.h>

#include <cstring>

#include "codec/length_field.h"
#include "core/event_loop.h"
#include "rudp/cc/registry.h"
#include "rudp/endpoint.h"
#include "rudp/link.h"
#include "rudp/rudp.h"

namespace sluice::rudp {

namespace {

class ServerTransport final : public Transport {
 public:
  ServerTransport(EventLoop& loop, int fd, const Options& opts)
      : ep_(loop, fd, opts, Endpoint::Role::kServer) {}

  void start(TransportHost& host) override {
    host_ = &host;
    ep_.set_accept([this](Session& s) {
      return host_->adopt(PeerAddr::from(s.peer_addr(), s.peer_len())) != nullptr;
    });
    if (int rc = ep_.start(); rc < 0) {
      spdlog::error("rudp: the {} back end cannot serve the UDP socket: {}",
                    ep_.loop().io_name(), std::strerror(-rc));
    }
  }

  void stop(std::chrono::milliseconds deadline) override {
    // The handshake's figures, once per socket: what a flood of INITIALs
    // cost (retries_sent) and what it got (accepted stays flat when the
    // sources were spoofed: docs/ROBUSTNESS.md, "DoS lab").
    const EndpointStats& s = ep_.stats();
    spdlog::info("rudp endpoint :{}: datagrams={} bad_header={} unknown_id={} initials={} "
                 "retries_sent={} bad_cookies={} limited={} accepted={} refused={}",
                 ep_.local_port(), s.datagrams, s.bad_header, s.unknown_id, s.initials,
                 s.retries_sent, s.bad_cookies, s.limited, s.accepted, s.refused);
    ep_.stop(deadline, [this] {
      if (host_) host_->released();
    });
  }

  io::ChannelOps& ops() override { return ep_; }
  uint16_t port() const { return ep_.local_port(); }

 private:
  Endpoint ep_;
  TransportHost* host_ = nullptr;
};

class Factory final : public TransportFactory {
 public:
  explicit Factory(Options opts) : opts_(std::move(opts)) {}
  std::string_view name() const override { return "rudp"; }
  std::unique_ptr<codec::Codec> codec() const override { return message_codec(opts_); }

  std::unique_ptr<Transport> make(EventLoop& loop, size_t, size_t loops, const std::string& host,
                                  uint16_t* port, std::string* error) override {
    // Bad options fail start(), not every handshake later.
    std::string why;
    if (!cc::create(opts_.cc, opts_.cc_config, &why)) {
      if (error) *error = "rudp: " + why;
      return nullptr;
    }
    if (why = opts_.handshake_limit.validate(); !why.empty()) {
      if (error) *error = "rudp: handshake limit: " + why;
      return nullptr;
    }
    UdpSocketOptions so;
    so.reuse_port = loops > 1 || opts_.reuse_port;
    // A burst of many connections' packets must not overflow the socket.
    so.rcvbuf = 4 << 20;
    so.sndbuf = 4 << 20;
    const int fd = bind_udp(host, *port, so);
    if (fd < 0) {
      if (error) {
        *error = "rudp: cannot bind " + host + ":" + std::to_string(*port) + ": " +
                 std::strerror(-fd);
      }
      return nullptr;
    }
    auto t = std::make_unique<ServerTransport>(loop, fd, opts_);
    if (*port == 0) *port = static_cast<ServerTransport*>(t.get())->port();
    return t;
  }

 private:
  Options opts_;
};

}  // namespace

std::shared_ptr<TransportFactory> transport(Options options) {
  return std::make_shared<Factory>(std::move(options));
}

std::unique_ptr<codec::Codec> message_codec(const Options& options) {
  return std::make_unique<codec::LengthFieldCodec>(
      codec::length_prefix_options(4, options.max_message + 4));
}

std::optional<Stats> stats(const Connection& conn) {
  const auto* l = dynamic_cast<const Link*>(conn.io.get());
  if (!l) return std::nullopt;
  return l->session ? l->session->stats() : l->last;
}

}  // namespace sluice::rudp
