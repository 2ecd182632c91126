// Runs the greeter on a free port and checks replies over a real TCP
// connection: what a project depending on @sluice would test.
#include "greeter.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "core/net.h"

namespace {

// Reads until `want` bytes arrived, EOF, an error or 5 s without data.
std::string read_n(int fd, size_t want) {
  std::string got;
  char buf[512];
  while (got.size() < want) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

TEST(Greeter, GreetsEachLine) {
  greeter::Greeter handler;
  sluice::ServerOptions opts;
  opts.port = 0;  // any free port
  auto server = greeter::make_server(opts, handler);
  std::string error;
  ASSERT_EQ(server->start(&error), 0) << error;
  ASSERT_NE(server->port(), 0);

  const int fd = sluice::connect_tcp("127.0.0.1", server->port());
  ASSERT_GE(fd, 0) << "connect: " << -fd;
  const std::string ask = "Ada\n\nGrace\r\n";  // two lines in one write, one empty
  ASSERT_EQ(::send(fd, ask.data(), ask.size(), MSG_NOSIGNAL), static_cast<ssize_t>(ask.size()));
  const std::string want = "hello, Ada\nhello, stranger\nhello, Grace\n";
  EXPECT_EQ(read_n(fd, want.size()), want);

  // Over the 256-byte frame limit: the server closes the connection.
  const std::string huge(1000, 'x');
  ::send(fd, huge.data(), huge.size(), MSG_NOSIGNAL);
  EXPECT_EQ(read_n(fd, 1), "");
  ::close(fd);
  server->stop();
}

}  // namespace
