// TLS on every IO back end (TEST_P over the registry): the server's TLS
// layer against independent clients (Python's ssl module and `openssl
// s_client`) and against sluice's own Client; mutual TLS, resumption, a
// 16 MiB echo byte for byte, garbage and slow-handshake attacks, and the
// memory an idle TLS connection holds. Certificates are made at run time
// (tests/tls_certs.h).
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include "core/client.h"
#include "core/connector.h"
#include "core/event_loop.h"
#include "core/server.h"
#include "core/tls_context.h"
#include "io/registry.h"
#include "tests/backend_params.h"
#include "tests/subprocess.h"
#include "tests/test_util.h"
#include "tests/tls_certs.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::connect_local;
using testing::random_bytes;
using testing::set_recv_timeout;
using testing::tls_files;
using testing::wait_closed;

// An independent client: Python's ssl module (its own OpenSSL use, its own
// record handling). Echoes `size` random bytes in 64 KiB steps and checks
// them by SHA-256, or holds `hold` connections open until stdin closes.
constexpr const char* kPython = R"PY(
import hashlib, os, socket, ssl, sys
port, ca, size, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cert = sys.argv[5] if len(sys.argv) > 5 else None
key = sys.argv[6] if len(sys.argv) > 6 else None
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert, key)
def echo(s, data):
    got, i = bytearray(), 0
    while i < len(data):
        chunk = data[i:i + 65536]
        s.sendall(chunk)
        i += len(chunk)
        while len(got) < i:
            b = s.recv(1 << 20)
            if not b:
                raise Exception("eof after %d bytes" % len(got))
            got += b
    return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
try:
    if hold:
        conns = []
        for _ in range(hold):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                server_hostname="localhost")
            if not echo(s, b"x" * 64):
                raise Exception("bad echo")
            conns.append(s)
        print("ready", flush=True)
        sys.stdin.read()
    else:
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="localhost") as s:
            ok = echo(s, os.urandom(size))
            print("ok" if ok else "corrupt", s.version(), s.cipher()[0], flush=True)
except Exception as e:
    print("error", type(e).__name__, e, flush=True)
)PY";

std::string tmp_path(const std::string& name) {
  const char* t = std::getenv("TEST_TMPDIR");
  return std::string(t ? t : "/tmp") + "/" + name;
}

const std::string& python_script() {
  static const std::string path = [] {
    std::string p = tmp_path("tls_client.py");
    std::ofstream(p) << kPython;
    return p;
  }();
  return path;
}

// Runs a shell command, returns its stdout (stderr joined).
std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return "popen failed";
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

std::string python(uint16_t port, size_t size, const std::string& cert = "",
                   const std::string& key = "") {
  return run("timeout 60 /usr/bin/python3 " + python_script() + " " + std::to_string(port) +
             " " + tls_files().ca + " " + std::to_string(size) + " 0 " + cert + " " + key);
}

std::string s_client(uint16_t port, const std::string& input, const std::string& extra) {
  // The sleep keeps stdin open until the echo is back (-no_ign_eof: then
  // s_client ends on stdin's EOF).
  return run("(printf '" + input + "'; sleep 0.3) | timeout 20 /usr/bin/openssl s_client -connect 127.0.0.1:" +
             std::to_string(port) + " -CAfile " + tls_files().ca +
             " -servername localhost -verify_return_error -no_ign_eof " + extra);
}

TlsOptions server_tls() {
  TlsOptions t;
  t.cert_file = tls_files().cert;
  t.key_file = tls_files().key;
  return t;
}

class Echo final : public Handler {
 public:
  void on_open(Connection&) override { ++opened; }
  void on_message(Connection& conn, std::string_view data) override { conn.send(data); }
  void on_peer_shutdown(Connection& conn) override {
    if (conn.tls_truncated()) ++truncated;
    conn.close();
  }
  void on_close(Connection&, CloseReason, int) override { ++closed; }
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::atomic<int> truncated{0};
};

// A blocking TLS client on OpenSSL directly (request, then response).
class TlsSocket {
 public:
  TlsSocket(uint16_t port, const TlsContext& ctx) {
    fd_ = connect_local(port);
    if (fd_ < 0) return;
    set_recv_timeout(fd_, 5000);
    std::string err;
    ssl_ = ctx.new_ssl("localhost", &err);
    if (!ssl_) return;
    SSL_set_fd(ssl_, fd_);
    int rc;
    while ((rc = SSL_connect(ssl_)) != 1 && interrupted(rc)) {
    }
    connected_ = rc == 1;
    error_ = connected_ ? "" : "connect: " + std::to_string(SSL_get_error(ssl_, rc)) + " errno " +
                                   std::to_string(errno) + " " + tls_error_string("");
  }
  ~TlsSocket() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  const std::string& error() const { return error_; }
  bool echo(const std::string& data) {
    if (!connected_) return false;
    size_t w = 0;
    int rc;
    while ((rc = SSL_write_ex(ssl_, data.data(), data.size(), &w)) != 1 && interrupted(rc)) {
    }
    if (rc != 1) {
      error_ = "write: " + std::to_string(SSL_get_error(ssl_, rc)) + " " + tls_error_string("");
      return false;
    }
    std::string got(data.size(), '\0');
    size_t have = 0;
    while (have < got.size()) {
      size_t r = 0;
      while ((rc = SSL_read_ex(ssl_, got.data() + have, got.size() - have, &r)) != 1 &&
             interrupted(rc)) {
      }
      if (rc != 1) {
        error_ = "read: " + std::to_string(SSL_get_error(ssl_, rc)) + " errno " +
                 std::to_string(errno) + " " + tls_error_string("");
        return false;
      }
      have += r;
    }
    return got == data;
  }

 private:
  // A blocking call cut short by a signal (EINTR seen here now and then
  // while other tests' child processes exit): try again.
  bool interrupted(int rc) const {
    return SSL_get_error(ssl_, rc) == SSL_ERROR_WANT_READ && errno == EINTR;
  }

  int fd_ = -1;
  SSL* ssl_ = nullptr;
  bool connected_ = false;
  std::string error_ = "not connected";
};

std::shared_ptr<TlsContext> client_ctx(const std::string& cert = "", const std::string& key = "") {
  TlsOptions o;
  o.ca_file = tls_files().ca;
  o.cert_file = cert;
  o.key_file = key;
  std::string err;
  std::shared_ptr<TlsContext> c = TlsContext::make_client(o, &err);
  EXPECT_TRUE(c) << err;
  return c;
}

class Tls : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
  }

  void start(TlsOptions t = server_tls(), ServerOptions so = {}) {
    so.io = GetParam();
    so.stop_deadline = 500ms;
    so.tls = t;
    server_ = std::make_unique<Server>(so, handler_);
    std::string err;
    ASSERT_EQ(server_->start(&err), 0) << err;
  }

  bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit = 5s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!cond()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(2ms);
    }
    return true;
  }

  Echo handler_;
  std::unique_ptr<Server> server_;
};

TEST_P(Tls, PythonClientEchoes16MiBByteExact) {
  start();
  const std::string out = python(server_->port(), 16 << 20);
  EXPECT_EQ(out.rfind("ok TLSv1.3", 0), 0u) << out;
  EXPECT_TRUE(wait_for([&] { return handler_.closed == 1; }));
  EXPECT_EQ(server_->tls_stats().handshakes, 1u);
  EXPECT_EQ(server_->tls_stats().failed, 0u);
}

TEST_P(Tls, OpenSslClientEchoesAndResumes) {
  start();
  const std::string sess = tmp_path("sess_" + std::to_string(server_->port()));
  const std::string first = s_client(server_->port(), "hello tls\\n", "-sess_out " + sess);
  EXPECT_NE(first.find("hello tls"), std::string::npos) << first;
  EXPECT_NE(first.find("Verification: OK"), std::string::npos) << first;
  const std::string second = s_client(server_->port(), "again\\n", "-sess_in " + sess);
  EXPECT_NE(second.find("again"), std::string::npos) << second;
  EXPECT_NE(second.find("Reused, TLSv1.3"), std::string::npos) << second;
  EXPECT_TRUE(wait_for([&] { return server_->tls_stats().handshakes == 2; }));
  EXPECT_EQ(server_->tls_stats().resumed, 1u);
}

TEST_P(Tls, MutualTlsAcceptsGoodAndRefusesBadClientCertificates) {
  TlsOptions t = server_tls();
  t.ca_file = tls_files().ca;
  start(t);
  const std::string good = python(server_->port(), 1000, tls_files().client_cert,
                                  tls_files().client_key);
  EXPECT_EQ(good.rfind("ok", 0), 0u) << good;
  const std::string none = python(server_->port(), 1000);
  EXPECT_EQ(none.rfind("error", 0), 0u) << none;
  {
    auto rogue = client_ctx(tls_files().rogue_cert, tls_files().rogue_key);
    TlsSocket s(server_->port(), *rogue);
    EXPECT_FALSE(s.echo("nope"));
  }
  auto ok = client_ctx(tls_files().client_cert, tls_files().client_key);
  TlsSocket s(server_->port(), *ok);
  EXPECT_TRUE(s.echo("yes"));
  EXPECT_TRUE(wait_for([&] { return server_->tls_stats().failed == 2; }));
  EXPECT_EQ(server_->tls_stats().handshakes, 2u);
  EXPECT_EQ(handler_.opened, 2);  // the refused ones never reached the handler
}

// Plaintext or garbage: one failure, a clean close, nobody else disturbed.
TEST_P(Tls, GarbageClientIsClosedAndOthersAreUntouched) {
  start();
  auto ctx = client_ctx();
  TlsSocket good(server_->port(), *ctx);
  ASSERT_TRUE(good.echo("before")) << good.error();
  for (const std::string& junk : {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                                 random_bytes(3000, 5), std::string("\x16\x03\x01\x00\x05hello", 10)}) {
    int fd = connect_local(server_->port());
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
    EXPECT_TRUE(wait_closed(fd, 3000));
    ::close(fd);
  }
  EXPECT_TRUE(wait_for([&] { return server_->tls_stats().failed == 3; }))
      << server_->tls_stats().failed;
  EXPECT_TRUE(good.echo("after")) << good.error();
  EXPECT_EQ(handler_.opened, 1);
  EXPECT_EQ(handler_.closed, 0);
}

// TLS slowloris: a handshake that never finishes is cut off at the deadline.
TEST_P(Tls, SlowHandshakeIsCutOffAtTheDeadline) {
  TlsOptions t = server_tls();
  t.handshake_timeout = 300ms;
  start(t);
  auto ctx = client_ctx();
  TlsSocket good(server_->port(), *ctx);
  ASSERT_TRUE(good.echo("before")) << good.error();
  const auto began = std::chrono::steady_clock::now();
  int silent = connect_local(server_->port());
  int trickle = connect_local(server_->port());
  ASSERT_EQ(::send(trickle, "\x16\x03\x01", 3, MSG_NOSIGNAL), 3);  // a record header, then nothing
  EXPECT_TRUE(wait_closed(silent, 3000));
  EXPECT_TRUE(wait_closed(trickle, 3000));
  EXPECT_GE(std::chrono::steady_clock::now() - began, 250ms);
  ::close(silent);
  ::close(trickle);
  EXPECT_TRUE(wait_for([&] { return server_->tls_stats().timed_out == 2; }));
  EXPECT_TRUE(good.echo("after")) << good.error();  // done handshakes are not cut
  EXPECT_EQ(handler_.opened, 1);
}

// RFC 6066 section 3: SNI naming a host the server does not serve is
// refused with unrecognized_name (not answered with the wrong
// certificate); the right name, a wildcard match and no SNI at all (a
// client that connects by address) are served.
TEST_P(Tls, WrongServerNameIsRefusedWithUnrecognizedName) {
  TlsOptions t = server_tls();
  t.server_names = {"localhost", "*.sluice.test"};
  start(t);
  const std::string port = std::to_string(server_->port());
  const std::string base = "(printf 'hi\\n'; sleep 1) | timeout 20 /usr/bin/openssl s_client "
                           "-connect 127.0.0.1:" + port + " -no_ign_eof ";
  const std::string wrong = run(base + "-servername wrong.example");
  EXPECT_NE(wrong.find("unrecognized name"), std::string::npos) << wrong;
  EXPECT_EQ(wrong.find("\nhi"), std::string::npos) << wrong;
  const std::string wild = run(base + "-servername api.sluice.test");
  EXPECT_NE(wild.find("\nhi"), std::string::npos) << wild;
  const std::string deep = run(base + "-servername a.b.sluice.test");
  EXPECT_NE(deep.find("unrecognized name"), std::string::npos) << deep;
  const std::string none = run(base + "-noservername");
  EXPECT_NE(none.find("\nhi"), std::string::npos) << none;
  // Python's ssl module as the other independent client.
  const std::string py = run(
      "timeout 20 /usr/bin/python3 -c \"import socket, ssl\n"
      "c = ssl.create_default_context(cafile='" + tls_files().ca + "')\n"
      "c.check_hostname = False\n"
      "try:\n"
      "  c.wrap_socket(socket.create_connection(('127.0.0.1', " + port + ")), "
      "server_hostname='wrong.example')\n"
      "  print('connected')\n"
      "except ssl.SSLError as e:\n"
      "  print('refused', e)\n\"");
  EXPECT_NE(py.find("UNRECOGNIZED_NAME"), std::string::npos) << py;
  EXPECT_TRUE(wait_for([&] { return server_->tls_stats().failed == 3; }))
      << server_->tls_stats().failed;
  EXPECT_EQ(server_->tls_stats().handshakes, 2u);
  EXPECT_EQ(handler_.opened, 2);  // the refused ones never reached the handler
}

// A TCP FIN without close_notify (a truncation: a forged FIN could cut a
// read-to-EOF stream short) is reported; an orderly TLS close is not.
TEST_P(Tls, EofWithoutCloseNotifyIsReportedAsTruncation) {
  start();
  const std::string port = std::to_string(server_->port());
  // SSLSocket.shutdown() drops the TLS layer and sends a bare FIN;
  // unwrap() sends close_notify and waits for the server's.
  const std::string py = run(
      "timeout 20 /usr/bin/python3 -c \"import socket, ssl\n"
      "c = ssl.create_default_context(cafile='" + tls_files().ca + "')\n"
      "def one(orderly):\n"
      "  s = c.wrap_socket(socket.create_connection(('127.0.0.1', " + port + ")), "
      "server_hostname='localhost')\n"
      "  s.sendall(b'ping')\n"
      "  assert s.recv(4) == b'ping'\n"
      "  if orderly:\n"
      "    s.unwrap().close()\n"
      "  else:\n"
      "    s.shutdown(socket.SHUT_WR)\n"
      "    s.settimeout(5)\n"
      "    while s.recv(4096): pass\n"
      "    s.close()\n"
      "one(True); one(False)\n"
      "print('done')\n\"");
  EXPECT_NE(py.find("done"), std::string::npos) << py;
  EXPECT_TRUE(wait_for([&] { return handler_.closed == 2; }));
  EXPECT_EQ(handler_.truncated, 1);
  EXPECT_EQ(server_->tls_stats().truncated, 1u);
  EXPECT_EQ(server_->tls_stats().handshakes, 2u);
}

// sluice's own Client over TLS on the same back end: echo, resumption on
// the second connection, and a wrong name refused (done gets -EPROTO).
class Greeter final : public Handler {
 public:
  void on_open(Connection& conn) override {
    ++opened;
    conn.send("hello through tls");
  }
  void on_message(Connection& conn, std::string_view data) override {
    got.append(data);
    if (got.size() >= 17) conn.close();
  }
  void on_close(Connection&, CloseReason, int) override { ++closed; }
  std::string got;
  int opened = 0;
  int closed = 0;
};

TEST_P(Tls, ClientEchoesResumesAndRefusesAWrongName) {
  start();
  std::string err;
  auto loop = EventLoop::create(GetParam(), {}, &err);
  ASSERT_TRUE(loop) << err;
  Connector connector;
  std::shared_ptr<const TlsContext> ctx = client_ctx();
  Greeter greeter;
  ClientOptions co;
  co.port = server_->port();
  co.tls = ctx;
  Client client(*loop, connector, greeter, nullptr, co);
  TlsOptions wrong;
  wrong.ca_file = tls_files().ca;
  wrong.server_name = "wrong.example";
  ClientOptions wo = co;
  wo.tls = TlsContext::make_client(wrong, &err);
  ASSERT_TRUE(wo.tls) << err;
  Client wrong_client(*loop, connector, greeter, nullptr, wo);
  // One loop run (a loop runs once): connect, reconnect (resumed), then
  // the wrong name, each once the one before is released.
  int result[3] = {1, 1, 1};
  std::string got[2];
  int stage = 0;
  client.connect([&](int rc) { result[0] = rc; });
  const auto end = std::chrono::steady_clock::now() + 5s;
  TimerId t = loop->run_every(1ms, [&] {
    if (stage < 2 && result[stage] != 1 && client.live() == 0) {
      got[stage] = greeter.got;
      greeter.got.clear();
      ++stage;
      if (stage == 1) {
        client.connect([&](int rc) { result[1] = rc; });
      } else {
        wrong_client.connect([&](int rc) { result[2] = rc; });
      }
    } else if (stage == 2 && result[2] != 1 && wrong_client.live() == 0) {
      stage = 3;
      loop->quit();
    }
    if (std::chrono::steady_clock::now() > end) loop->quit();
  });
  loop->run();
  loop->cancel(t);
  ASSERT_EQ(stage, 3) << result[0] << " " << result[1] << " " << result[2];
  EXPECT_EQ(result[0], 0);
  EXPECT_EQ(result[1], 0);
  EXPECT_EQ(got[0], "hello through tls");
  EXPECT_EQ(got[1], "hello through tls");
  EXPECT_EQ(result[2], -EPROTO);
  EXPECT_EQ(greeter.opened, 2);  // the handler heard nothing of the refused one
  EXPECT_EQ(greeter.closed, 2);
  EXPECT_TRUE(wait_for([&] { return server_->tls_stats().handshakes == 2; }));
  EXPECT_EQ(server_->tls_stats().resumed, 1u);
  EXPECT_TRUE(wait_for([&] { return server_->tls_stats().failed == 1; }));
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Tls, ::testing::ValuesIn(testing::all_backends()),
                         testing::BackendName());

// Memory an idle TLS connection holds on the server (mallinfo2, in this
// process; the clients are a Python process): the figure docs/TLS.md
// quotes. SSL_MODE_RELEASE_BUFFERS frees the record buffers once idle.
TEST(TlsMemory, IdleConnectionCost) {
  Echo handler;
  ServerOptions so;
  so.io = "epoll";
  so.tls = server_tls();
  Server server(so, handler);
  std::string err;
  ASSERT_EQ(server.start(&err), 0) << err;
  constexpr int kConns = 200;
  const std::string ready = tmp_path("tls_hold_ready");
  std::remove(ready.c_str());
  // Warm up: OpenSSL's first handshake allocates process-wide tables.
  ASSERT_EQ(python(server.port(), 100).rfind("ok", 0), 0u);
  ASSERT_TRUE([&] {
    const auto end = std::chrono::steady_clock::now() + 5s;
    while (handler.closed != 1 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(5ms);
    return handler.closed == 1;
  }());
  malloc_trim(0);
  const size_t before = mallinfo2().uordblks;
  FILE* p = ::popen(("timeout 60 /usr/bin/python3 " + python_script() + " " +
                     std::to_string(server.port()) + " " + tls_files().ca + " 0 " +
                     std::to_string(kConns) + " > " + ready)
                        .c_str(),
                    "w");
  ASSERT_TRUE(p);
  const auto end = std::chrono::steady_clock::now() + 30s;
  while (testing::slurp(ready).find("ready") == std::string::npos &&
         std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_NE(testing::slurp(ready).find("ready"), std::string::npos) << testing::slurp(ready);
  std::this_thread::sleep_for(100ms);
  const size_t after = mallinfo2().uordblks;
  ::pclose(p);
  const double per = (static_cast<double>(after) - static_cast<double>(before)) / kConns;
  std::printf("heap per idle TLS connection (server side, TLS 1.3, EC P-256): %.0f bytes\n", per);
  EXPECT_EQ(handler.opened, kConns + 1);
  if (!testing::kSanitized) {
    EXPECT_LE(per, 16 * 1024);
  }
}

}  // namespace
}  // namespace sluice
