// asio_echo: Boost.Asio's canonical async echo (Debian's libboost-dev,
// header-only): per connection, async_read_some into its buffer, then
// async_write of exactly what was read, then read again. One io_context
// run by one thread with concurrency hint 1. Exits on SIGTERM/SIGINT.
//
//   asio_echo --port 7000
#include <array>
#include <cstdio>
#include <memory>
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>

#include "perf/peers/peer_util.h"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket s) : socket_(std::move(s)) {}
  void start() { read(); }

 private:
  void read() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(data_), [this, self](boost::system::error_code ec, size_t n) {
      if (!ec) write(n);
    });
  }
  void write(size_t n) {
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(data_, n), [this, self](boost::system::error_code ec, size_t) {
      if (!ec) read();
    });
  }

  tcp::socket socket_;
  std::array<char, 16 * 1024> data_;
};

void accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](boost::system::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(s))->start();
    }
    accept(acceptor);
  });
}

}  // namespace

int main(int argc, char** argv) {
  peers::Args args = peers::parse_args(argc, argv, "asio_echo");
  if (args.proto != "tcp") {
    std::fprintf(stderr, "asio_echo: TCP only\n");
    return 2;
  }
  try {
    asio::io_context ctx(1);
    tcp::endpoint ep(asio::ip::make_address(args.host), static_cast<unsigned short>(args.port));
    tcp::acceptor acceptor(ctx);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(4096);
    asio::signal_set signals(ctx, SIGINT, SIGTERM);
    signals.async_wait([&ctx](boost::system::error_code, int) { ctx.stop(); });
    accept(acceptor);
    peers::print_listening(args, acceptor.local_endpoint().port(), "asio");
    ctx.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asio_echo: %s\n", e.what());
    return 1;
  }
  return 0;
}
