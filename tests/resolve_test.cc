// Host names: resolve_numeric/resolve_host (core/resolve.h), the Resolver's
// helper thread (core/resolver.h), the Connector trying several addresses
// in turn, and Client with names, numeric IPv4 and IPv6 hosts. Loopback
// only; a name that cannot exist ("*.invalid", RFC 2606) must fail fast
// and never hang the loop. Runs on the default back end: resolution sits
// in front of the connect, which client_test covers on every back end.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/client.h"
#include "core/connector.h"
#include "core/event_loop.h"
#include "core/net.h"
#include "core/resolve.h"
#include "core/resolver.h"
#include "core/server.h"
#include "tests/test_util.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

constexpr const char* kBadName = "no-such-host.invalid";

uint16_t port_of(const SocketAddress& a) {
  return ntohs(a.addr.ss_family == AF_INET
                   ? reinterpret_cast<const sockaddr_in*>(&a.addr)->sin_port
                   : reinterpret_cast<const sockaddr_in6*>(&a.addr)->sin6_port);
}

// A bound loopback port that nobody listens on: connects are refused.
uint16_t refused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  const uint16_t port = local_port(fd);
  ::close(fd);
  return port;
}

bool ipv6_loopback_works() {
  const int fd = listen_tcp("::1", 0, {});
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

TEST(Resolve, NumericHostsNeedNoLookup) {
  std::vector<SocketAddress> out;
  ASSERT_EQ(resolve_numeric("127.0.0.1", 7, SOCK_STREAM, &out), 0);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].addr.ss_family, AF_INET);
  EXPECT_EQ(out[0].len, sizeof(sockaddr_in));
  EXPECT_EQ(port_of(out[0]), 7);
  for (const char* v6 : {"::1", "[::1]"}) {
    ASSERT_EQ(resolve_numeric(v6, 9, SOCK_DGRAM, &out), 0) << v6;
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].addr.ss_family, AF_INET6);
    EXPECT_TRUE(is_loopback(out[0]));
    EXPECT_EQ(port_of(out[0]), 9);
  }
  EXPECT_EQ(numeric_host(out[0]), "::1");  // no brackets, no port
  ASSERT_EQ(resolve_numeric("127.0.0.1", 7, SOCK_STREAM, &out), 0);
  EXPECT_EQ(numeric_host(out[0]), "127.0.0.1");
  EXPECT_TRUE(is_loopback(out[0]));
  ASSERT_EQ(resolve_numeric("192.0.2.1", 7, SOCK_STREAM, &out), 0);
  EXPECT_FALSE(is_loopback(out[0]));
  // Names are not numeric, whether they exist or not.
  EXPECT_EQ(resolve_numeric("localhost", 7, SOCK_STREAM, &out), -EINVAL);
  EXPECT_EQ(resolve_numeric(kBadName, 7, SOCK_STREAM, &out), -EINVAL);
  EXPECT_EQ(resolve_numeric("", 7, SOCK_STREAM, &out), -EINVAL);
}

TEST(Resolve, LocalhostResolvesToLoopbackOnly) {
  std::vector<SocketAddress> out;
  std::string error;
  ASSERT_EQ(resolve_host("localhost", 80, SOCK_STREAM, &out, &error), 0) << error;
  ASSERT_FALSE(out.empty());
  for (const SocketAddress& a : out) {
    EXPECT_TRUE(is_loopback(a)) << address_name(a.sa(), a.len);
    EXPECT_EQ(port_of(a), 80);
  }
  // No duplicates (getaddrinfo repeats addresses without a socktype).
  for (size_t i = 0; i < out.size(); ++i) {
    for (size_t j = i + 1; j < out.size(); ++j) {
      EXPECT_NE(address_name(out[i].sa(), out[i].len), address_name(out[j].sa(), out[j].len));
    }
  }
}

TEST(Resolve, UnknownNameFailsFastWithAReason) {
  std::vector<SocketAddress> out;
  std::string error;
  const auto t0 = Clock::now();
  const int rc = resolve_host(kBadName, 80, SOCK_STREAM, &out, &error);
  // -EHOSTUNREACH ("Name or service not known"); -EAGAIN where a name
  // server is configured but unreachable.
  EXPECT_TRUE(rc == -EHOSTUNREACH || rc == -EAGAIN) << rc;
  EXPECT_FALSE(error.empty());
  EXPECT_LT(Clock::now() - t0, 20s);
}

TEST(Resolve, GaiErrorsMapToErrno) {
  EXPECT_EQ(gai_error(0, 0), 0);
  EXPECT_EQ(gai_error(EAI_NONAME, 0), -EHOSTUNREACH);
  EXPECT_EQ(gai_error(EAI_AGAIN, 0), -EAGAIN);
  EXPECT_EQ(gai_error(EAI_MEMORY, 0), -ENOMEM);
  EXPECT_EQ(gai_error(EAI_SYSTEM, EMFILE), -EMFILE);
  EXPECT_EQ(gai_error(EAI_SERVICE, 0), -EINVAL);
}

class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override { new_loop(); }

  // A loop runs once (event_loop.h): each run_until after the first needs
  // a new one, made before anything is queued for it.
  void new_loop() {
    loop_.reset();
    std::string err;
    loop_ = EventLoop::create("", {}, &err);
    ASSERT_TRUE(loop_) << err;
  }

  // Runs the loop on this thread until done() or the limit; counts ticks
  // of a 5 ms timer, so a test can see the loop never stalled.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    bool ok = false;
    const auto end = Clock::now() + limit;
    TimerId t = loop_->run_every(5ms, [&] {
      ++ticks_;
      if (done()) {
        ok = true;
        loop_->quit();
      } else if (Clock::now() > end) {
        loop_->quit();
      }
    });
    loop_->run();
    loop_->cancel(t);
    return ok;
  }

  Connector connector_;
  std::unique_ptr<EventLoop> loop_;
  int ticks_ = 0;
};

// Server side of the Client tests: echoes.
class Echo final : public Handler {
 public:
  void on_message(Connection& conn, std::string_view data) override { conn.send(data); }
};

// Client side: sends a word on open, closes once it came back.
class Hello final : public Handler {
 public:
  void on_open(Connection& conn) override { conn.send("hello"); }
  void on_message(Connection& conn, std::string_view data) override {
    got.append(data);
    if (got.size() >= 5) conn.close();
  }
  void on_close(Connection&, CloseReason, int) override { closed = true; }
  std::string got;
  bool closed = false;
};

TEST_F(LoopTest, ResolverPostsResultsToTheLoopThread) {
  Resolver& resolver = connector_.resolver();
  EXPECT_FALSE(resolver.started());  // nothing looked up yet: no thread
  Resolver::Result good, bad;
  bool good_on_loop = false;
  int delivered = 0;
  resolver.resolve(*loop_, "localhost", 80, SOCK_STREAM, [&](Resolver::Result r) {
    good_on_loop = loop_->in_loop_thread();
    good = std::move(r);
    ++delivered;
  });
  resolver.resolve(*loop_, kBadName, 80, SOCK_STREAM, [&](Resolver::Result r) {
    bad = std::move(r);
    ++delivered;
  });
  EXPECT_TRUE(resolver.started());
  ASSERT_TRUE(run_until([&] { return delivered == 2; }, 20s));
  EXPECT_TRUE(good_on_loop);
  EXPECT_EQ(good.err, 0) << good.error;
  ASSERT_FALSE(good.addresses.empty());
  EXPECT_TRUE(is_loopback(good.addresses[0]));
  EXPECT_LT(bad.err, 0);
  EXPECT_FALSE(bad.error.empty());
  EXPECT_EQ(resolver.pending(), 0u);
}

TEST_F(LoopTest, CancelledLookupNeverCallsBack) {
  bool called = false;
  const uint64_t id =
      connector_.resolver().resolve(*loop_, "localhost", 80, SOCK_STREAM, [&](Resolver::Result) {
        called = true;
      });
  EXPECT_TRUE(connector_.resolver().cancel(id));
  EXPECT_FALSE(connector_.resolver().cancel(id));
  run_until([] { return false; }, 200ms);
  EXPECT_FALSE(called);
  EXPECT_EQ(connector_.resolver().pending(), 0u);
}

// The first address refuses: the Connector goes on to the next.
TEST_F(LoopTest, ConnectorTriesEachAddressInTurn) {
  const int lfd = listen_tcp("127.0.0.1", 0, {});
  ASSERT_GE(lfd, 0);
  std::vector<SocketAddress> addrs, good;
  ASSERT_EQ(resolve_numeric("127.0.0.1", refused_port(), SOCK_STREAM, &addrs), 0);
  ASSERT_EQ(resolve_numeric("127.0.0.1", local_port(lfd), SOCK_STREAM, &good), 0);
  addrs.push_back(good[0]);
  int result = 1;
  connector_.connect(*loop_, addrs, 2s, {}, [&](int fd) { result = fd; });
  ASSERT_TRUE(run_until([&] { return result != 1; }));
  ASSERT_GE(result, 0) << "connect: " << std::strerror(-result);
  EXPECT_EQ(peer_name(result), address_name(good[0].sa(), good[0].len));
  ::close(result);

  // Every address refuses: the last one's error.
  addrs.pop_back();
  addrs.push_back(addrs[0]);
  new_loop();
  result = 1;
  connector_.connect(*loop_, addrs, 2s, {}, [&](int fd) { result = fd; });
  ASSERT_TRUE(run_until([&] { return result != 1; }));
  EXPECT_EQ(result, -ECONNREFUSED);
  // None at all.
  new_loop();
  result = 1;
  connector_.connect(*loop_, std::vector<SocketAddress>{}, 2s, {}, [&](int fd) { result = fd; });
  ASSERT_TRUE(run_until([&] { return result != 1; }));
  EXPECT_EQ(result, -EHOSTUNREACH);
  ::close(lfd);
}

// The first address never answers (a listener whose accept queue is full
// drops SYNs): it gets half the timeout, then the second one connects.
TEST_F(LoopTest, ASilentAddressDoesNotStarveTheNext) {
  const int full = listen_tcp("127.0.0.1", 0, {.backlog = 0});
  ASSERT_GE(full, 0);
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    int f = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    std::vector<SocketAddress> to;
    resolve_numeric("127.0.0.1", local_port(full), SOCK_STREAM, &to);
    ::connect(f, to[0].sa(), to[0].len);
    fillers.push_back(f);
  }
  std::this_thread::sleep_for(50ms);
  const int lfd = listen_tcp("127.0.0.1", 0, {});
  ASSERT_GE(lfd, 0);
  std::vector<SocketAddress> addrs, good;
  ASSERT_EQ(resolve_numeric("127.0.0.1", local_port(full), SOCK_STREAM, &addrs), 0);
  ASSERT_EQ(resolve_numeric("127.0.0.1", local_port(lfd), SOCK_STREAM, &good), 0);
  addrs.push_back(good[0]);
  int result = 1;
  const auto t0 = Clock::now();
  Clock::duration took{};
  connector_.connect(*loop_, addrs, 600ms, {}, [&](int fd) {
    result = fd;
    took = Clock::now() - t0;
  });
  ASSERT_TRUE(run_until([&] { return result != 1; }));
  ASSERT_GE(result, 0) << "connect: " << std::strerror(-result);
  EXPECT_EQ(peer_name(result), address_name(good[0].sa(), good[0].len));
  EXPECT_GE(took, 250ms);  // the silent one had its share (300 ms)
  ::close(result);
  for (int f : fillers) ::close(f);
  ::close(full);
  ::close(lfd);
}

class ClientNames : public LoopTest {
 protected:
  // Connects a Client to host:port and runs one echo; the connect result.
  int echo_via(const std::string& host, uint16_t port, Hello* hello) {
    new_loop();
    ClientOptions co;
    co.host = host;
    co.port = port;
    Client client(*loop_, connector_, *hello, nullptr, co);
    int result = 1;
    EXPECT_TRUE(client.connect([&](int rc) { result = rc; }));
    EXPECT_TRUE(client.connecting());
    EXPECT_FALSE(client.connect([](int) {}));  // one attempt at a time, lookup included
    run_until([&] { return result < 0 || (hello->closed && client.live() == 0); });
    failure_ = client.resolve_failure();
    return result;
  }
  std::string failure_;
};

TEST_F(ClientNames, LocalhostConnectsWithoutBlockingTheLoop) {
  Echo echo;
  ServerOptions so;  // 127.0.0.1: if "localhost" also means ::1 (tried
  Server server(so, echo);  // first on some systems), that one is refused
  std::string err;
  ASSERT_EQ(server.start(&err), 0) << err;
  Hello hello;
  EXPECT_EQ(echo_via("localhost", server.port(), &hello), 0);
  EXPECT_EQ(hello.got, "hello");
  EXPECT_TRUE(failure_.empty());
  EXPECT_TRUE(connector_.resolver().started());
}

TEST_F(ClientNames, NumericHostsStartNoResolverThread) {
  Echo echo;
  ServerOptions so;
  Server server(so, echo);
  std::string err;
  ASSERT_EQ(server.start(&err), 0) << err;
  Hello hello;
  EXPECT_EQ(echo_via("127.0.0.1", server.port(), &hello), 0);
  EXPECT_EQ(hello.got, "hello");
  EXPECT_FALSE(connector_.resolver().started());
}

TEST_F(ClientNames, NumericIpv6) {
  if (!ipv6_loopback_works()) GTEST_SKIP() << "no IPv6 loopback here";
  Echo echo;
  ServerOptions so;
  so.host = "::1";
  Server server(so, echo);
  std::string err;
  ASSERT_EQ(server.start(&err), 0) << err;
  for (const char* host : {"::1", "[::1]"}) {
    Hello hello;
    EXPECT_EQ(echo_via(host, server.port(), &hello), 0) << host;
    EXPECT_EQ(hello.got, "hello") << host;
  }
  EXPECT_FALSE(connector_.resolver().started());
}

TEST_F(ClientNames, UnknownNameFailsTheAttemptWithAReason) {
  Hello hello;
  const auto t0 = Clock::now();
  const int rc = echo_via(kBadName, 80, &hello);
  EXPECT_TRUE(rc == -EHOSTUNREACH || rc == -EAGAIN) << rc;
  EXPECT_FALSE(failure_.empty());
  EXPECT_LT(Clock::now() - t0, 20s);
  EXPECT_FALSE(hello.closed);  // the handler never heard of it
}

TEST_F(ClientNames, AbortDuringTheLookupNeverCallsBack) {
  Hello hello;
  ClientOptions co;
  co.host = "localhost";
  co.port = refused_port();
  bool called = false;
  {
    Client client(*loop_, connector_, hello, nullptr, co);
    client.connect([&](int) { called = true; });
    client.abort();
    EXPECT_FALSE(client.connecting());
    client.connect([&](int) { called = true; });  // destroyed while looking up
  }
  run_until([] { return false; }, 200ms);
  EXPECT_FALSE(called);
  EXPECT_EQ(connector_.resolver().pending(), 0u);
  EXPECT_EQ(connector_.pending(), 0u);
}

}  // namespace
}  // namespace sluice
