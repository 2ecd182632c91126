// asio_tls_echo: Boost.Asio's canonical async echo over TLS (asio::ssl,
// OpenSSL 3 underneath), the yardstick for sluice's TLS echo: per
// connection, async_handshake, then async_read_some into its buffer,
// async_write of exactly what was read, and read again. One io_context run
// by one thread with concurrency hint 1, like asio_echo. The context is
// asio's tls_server with OpenSSL's defaults (TLS 1.3 preferred, tickets and
// the server session cache on), so resumption works as with sluice's
// defaults. Exits on SIGTERM/SIGINT.
//
//   asio_tls_echo --port 7443 --cert c.pem --key k.pem
#include <array>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include "perf/peers/peer_util.h"

namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, ssl::context& ctx) : stream_(std::move(s), ctx) {}
  void start() {
    auto self = shared_from_this();
    stream_.async_handshake(ssl::stream_base::server, [this, self](boost::system::error_code ec) {
      if (!ec) read();
    });
  }

 private:
  void read() {
    auto self = shared_from_this();
    stream_.async_read_some(asio::buffer(data_), [this, self](boost::system::error_code ec, size_t n) {
      if (!ec) write(n);
    });
  }
  void write(size_t n) {
    auto self = shared_from_this();
    asio::async_write(stream_, asio::buffer(data_, n), [this, self](boost::system::error_code ec, size_t) {
      if (!ec) read();
    });
  }

  ssl::stream<tcp::socket> stream_;
  std::array<char, 16 * 1024> data_;
};

void accept(tcp::acceptor& acceptor, ssl::context& ctx) {
  acceptor.async_accept([&acceptor, &ctx](boost::system::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(s), ctx)->start();
    }
    accept(acceptor, ctx);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string cert, key;
  peers::Args args =
      peers::parse_args(argc, argv, "asio_tls_echo", {{"--cert", &cert}, {"--key", &key}});
  if (args.proto != "tcp" || cert.empty() || key.empty()) {
    std::fprintf(stderr, "asio_tls_echo: TCP only, and --cert and --key are required\n");
    return 2;
  }
  try {
    ssl::context tls(ssl::context::tls_server);
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    tls.use_certificate_chain_file(cert);
    tls.use_private_key_file(key, ssl::context::pem);
    asio::io_context ctx(1);
    tcp::endpoint ep(asio::ip::make_address(args.host), static_cast<unsigned short>(args.port));
    tcp::acceptor acceptor(ctx);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(4096);
    asio::signal_set signals(ctx, SIGINT, SIGTERM);
    signals.async_wait([&ctx](boost::system::error_code, int) { ctx.stop(); });
    accept(acceptor, tls);
    peers::print_listening(args, acceptor.local_endpoint().port(), "asio-tls");
    ctx.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_tls_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
