// The PROXY protocol on a listener, end to end on loopback over every back
// end (docs/OPERATIONS.md, "PROXY protocol"): raw client sockets play the
// balancer. The handler must see the header's client as peer_addr(),
// never a header byte, and no on_open before the header; bytes after the
// header reach it unchanged; required mode closes a headerless peer, the
// deadline cuts a half header, per-source limits count the header's
// client, and TLS starts after the header.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/server.h"
#include "core/tls_context.h"
#include "io/registry.h"
#include "tests/backend_params.h"
#include "tests/test_util.h"
#include "tests/tls_certs.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using namespace sluice::testing;
using Steady = std::chrono::steady_clock;

// Echoes, and notes each connection's peer (and TLS state) at on_open.
class Recorder final : public Handler {
 public:
  void on_open(Connection& conn) override {
    std::lock_guard lock(mu_);
    peers_.push_back(conn.peer_addr().str());
    tls_.push_back(conn.tls_established());
  }
  void on_message(Connection& conn, std::string_view data) override { conn.send(data); }
  void on_close(Connection&, CloseReason, int) override { ++closed; }
  std::vector<std::string> peers() const {
    std::lock_guard lock(mu_);
    return peers_;
  }
  bool all_tls() const {
    std::lock_guard lock(mu_);
    for (bool t : tls_) {
      if (!t) return false;
    }
    return !tls_.empty();
  }
  std::atomic<int> closed{0};

 private:
  mutable std::mutex mu_;
  std::vector<std::string> peers_;
  std::vector<bool> tls_;
};

std::string be16(uint16_t v) {
  return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

// A v2 PROXY TCP6 header for [2001:db8::7]:50000 -> [2001:db8::1]:443,
// with an AUTHORITY TLV.
std::string v2_tcp6() {
  std::string addrs(32, '\0');
  const unsigned char src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};
  const unsigned char dst[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  addrs.replace(0, 16, reinterpret_cast<const char*>(src), 16);
  addrs.replace(16, 16, reinterpret_cast<const char*>(dst), 16);
  const std::string tlv = std::string("\x02", 1) + be16(11) + "example.com";
  const std::string body = addrs + be16(50000) + be16(443) + tlv;
  return std::string("\r\n\r\n\0\r\nQUIT\n", 12) + "\x21\x21" +
         be16(static_cast<uint16_t>(body.size())) + body;
}

std::string v1(const std::string& src_ip, uint16_t src_port) {
  return "PROXY TCP4 " + src_ip + " 192.0.2.1 " + std::to_string(src_port) + " 443\r\n";
}

template <class F>
auto retry_eintr(F f) {
  for (;;) {
    auto r = f();
    if (r >= 0 || errno != EINTR) return r;
  }
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = retry_eintr([&] { return ::send(fd, data.data(), data.size(), MSG_NOSIGNAL); });
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

int client(uint16_t port) {
  const int fd = connect_local(port);
  if (fd < 0) return fd;
  set_recv_timeout(fd, 3000);
  return fd;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit = 5s) {
  const auto end = Steady::now() + limit;
  while (!cond()) {
    if (Steady::now() > end) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

class ProxyE2E : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable: " << info.reason;
  }
  void start(ProxyProtocol mode, ServerOptions o = {}) {
    o.io = GetParam();
    o.stop_deadline = 200ms;
    o.proxy_protocol = mode;
    server_ = std::make_unique<Server>(o, handler_);
    std::string err;
    ASSERT_EQ(server_->start(&err), 0) << err;
  }
  // A balancer's connection: header, then `data` in the same write.
  bool relayed_echo(const std::string& header, const std::string& data) {
    const int fd = client(server_->port());
    if (fd < 0) return false;
    const bool ok = send_all(fd, header + data) && read_n(fd, data.size()) == data;
    ::close(fd);
    return ok;
  }

  Recorder handler_;
  std::unique_ptr<Server> server_;
};

TEST_P(ProxyE2E, V1HeaderAndDataInOneWrite) {
  start(ProxyProtocol::kRequired);
  const std::string data = random_bytes(100000, 7);  // more than one read
  ASSERT_TRUE(relayed_echo(v1("203.0.113.7", 4242), data));
  EXPECT_EQ(handler_.peers(), std::vector<std::string>{"203.0.113.7:4242"});
  EXPECT_TRUE(wait_for([&] { return server_->connection_count() == 0; }));
}

TEST_P(ProxyE2E, V2HeaderSplitAcrossWrites) {
  start(ProxyProtocol::kRequired);
  const int fd = client(server_->port());
  ASSERT_GE(fd, 0);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string h = v2_tcp6();
  // Pieces inside the signature, the fixed part, the addresses and the TLV.
  size_t at = 0;
  for (const size_t cut : {size_t{5}, size_t{14}, size_t{30}, h.size() - 4}) {
    ASSERT_TRUE(send_all(fd, h.substr(at, cut - at)));
    at = cut;
    std::this_thread::sleep_for(30ms);
    EXPECT_TRUE(handler_.peers().empty()) << "on_open before the header was complete";
  }
  ASSERT_TRUE(send_all(fd, h.substr(at) + "after the header"));
  EXPECT_EQ(read_n(fd, 16), "after the header");
  EXPECT_EQ(handler_.peers(), std::vector<std::string>{"[2001:db8::7]:50000"});
  ::close(fd);
}

TEST_P(ProxyE2E, RequiredModeClosesAHeaderlessPeerAndServesOthers) {
  start(ProxyProtocol::kRequired);
  const int bad = client(server_->port());
  ASSERT_GE(bad, 0);
  ASSERT_TRUE(send_all(bad, "GET / HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(wait_closed(bad, 3000));
  ::close(bad);
  // A bad header too.
  const int worse = client(server_->port());
  ASSERT_GE(worse, 0);
  ASSERT_TRUE(send_all(worse, "PROXY TCP4 300.0.0.1 192.0.2.1 1 2\r\nhello"));
  EXPECT_TRUE(wait_closed(worse, 3000));
  ::close(worse);
  ASSERT_TRUE(relayed_echo(v1("198.51.100.2", 1000), "still serving"));
  EXPECT_EQ(handler_.peers(), std::vector<std::string>{"198.51.100.2:1000"});
  EXPECT_TRUE(wait_for([&] { return server_->connection_count() == 0; }));
  EXPECT_EQ(handler_.closed, 1);  // the refused peers never reached the handler
}

TEST_P(ProxyE2E, OptionalModeTakesAHeaderOrPlainData) {
  start(ProxyProtocol::kOptional);
  ASSERT_TRUE(relayed_echo("", "plain client"));
  // LOCAL (a balancer's health check) keeps the socket's address too.
  const std::string local =
      std::string("\r\n\r\n\0\r\nQUIT\n", 12) + std::string("\x20\x00", 2) + be16(0);
  ASSERT_TRUE(relayed_echo(local, "local"));
  ASSERT_TRUE(relayed_echo(v1("203.0.113.9", 9), "proxied"));
  const std::vector<std::string> peers = handler_.peers();
  ASSERT_EQ(peers.size(), 3u);
  EXPECT_EQ(peers[0].rfind("127.0.0.1:", 0), 0u) << peers[0];
  EXPECT_EQ(peers[1].rfind("127.0.0.1:", 0), 0u) << peers[1];
  EXPECT_EQ(peers[2], "203.0.113.9:9");
}

TEST_P(ProxyE2E, DeadlineCutsOffAHalfHeader) {
  ServerOptions o;
  o.proxy_header_timeout = 300ms;
  start(ProxyProtocol::kRequired, o);
  const int fd = client(server_->port());
  ASSERT_GE(fd, 0);
  const auto began = Steady::now();
  ASSERT_TRUE(send_all(fd, "PROXY TCP4 203.0"));
  ASSERT_TRUE(wait_for([&] { return server_->connection_count() == 1; }));
  EXPECT_TRUE(wait_closed(fd, 3000));
  const auto took = Steady::now() - began;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2500ms);
  ::close(fd);
  EXPECT_TRUE(wait_for([&] { return server_->connection_count() == 0; }));
  EXPECT_TRUE(handler_.peers().empty());
  EXPECT_EQ(handler_.closed, 0);
}

// Every socket comes from 127.0.0.1 (the "balancer"); the cap counts the
// clients the headers name. Admitted at accept, the fourth would be
// refused as 127.0.0.1's third.
TEST_P(ProxyE2E, PerSourceLimitsUseTheHeaderAddress) {
  ServerOptions o;
  o.per_source.max_conns = 2;
  start(ProxyProtocol::kRequired, o);
  std::vector<int> fds;
  // One after the other, each echoed before the next: with a thread per
  // connection (blocking) headers sent together are parsed in any order.
  char c = 0;
  for (int i = 0; i < 3; ++i) {
    const int fd = client(server_->port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, v1("203.0.113.7", static_cast<uint16_t>(1000 + i)) + "x"));
    fds.push_back(fd);
    if (i < 2) {
      EXPECT_EQ(retry_eintr([&] { return ::recv(fd, &c, 1, 0); }), 1) << i;
    }
  }
  EXPECT_TRUE(wait_closed(fds[2], 3000));  // 203.0.113.7's third: reset
  ASSERT_TRUE(relayed_echo(v1("198.51.100.9", 5), "another client"));
  EXPECT_EQ(server_->source_stats().over_cap, 1u);
  EXPECT_EQ(server_->source_stats().admitted, 3u);
  // The cap frees up as 203.0.113.7's connections close.
  for (int fd : fds) ::close(fd);
  ASSERT_TRUE(wait_for([&] { return server_->connection_count() == 0; }));
  ASSERT_TRUE(relayed_echo(v1("203.0.113.7", 4242), "again"));
  const std::vector<std::string> peers = handler_.peers();
  EXPECT_EQ(peers.size(), 4u);
  for (const std::string& p : peers) {
    EXPECT_EQ(p.rfind("127.", 0), std::string::npos) << p;
  }
}

// HAProxy sends the header before the ClientHello: it is read first, and
// the handshake and the handler see the rest.
TEST_P(ProxyE2E, HeaderComesBeforeTls) {
  ServerOptions o;
  TlsOptions t;
  t.cert_file = tls_files().cert;
  t.key_file = tls_files().key;
  o.tls = t;
  start(ProxyProtocol::kRequired, o);
  TlsOptions c;
  c.ca_file = tls_files().ca;
  std::string err;
  auto ctx = TlsContext::make_client(c, &err);
  ASSERT_TRUE(ctx) << err;
  const int fd = client(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, v1("203.0.113.7", 4242)));
  SSL* ssl = ctx->new_ssl("localhost", &err);
  ASSERT_TRUE(ssl) << err;
  SSL_set_fd(ssl, fd);
  int rc;
  while ((rc = SSL_connect(ssl)) != 1 && SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ &&
         errno == EINTR) {
  }
  ASSERT_EQ(rc, 1) << SSL_get_error(ssl, rc);
  size_t n = 0;
  ASSERT_EQ(SSL_write_ex(ssl, "secret", 6, &n), 1);
  char buf[6];
  size_t got = 0;
  while (got < sizeof buf) {
    if (SSL_read_ex(ssl, buf + got, sizeof buf - got, &n) != 1) break;
    got += n;
  }
  EXPECT_EQ(std::string(buf, got), "secret");
  EXPECT_EQ(handler_.peers(), std::vector<std::string>{"203.0.113.7:4242"});
  EXPECT_TRUE(handler_.all_tls());
  SSL_free(ssl);
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, ProxyE2E, ::testing::ValuesIn(all_backends()),
                         BackendName());

}  // namespace
}  // namespace sluice
