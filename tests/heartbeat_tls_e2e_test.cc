// The heartbeat protocol over TLS, end to end with the shipped binaries on
// every back end: heartbeat_server --tls-cert/--tls-key, heartbeat_client
// --tls --tls-ca; the counts add up and the server counts the handshakes.
// A client trusting another CA fails verification at once, with OpenSSL's
// reason and no report, while --tls-insecure against the same server works
// (so what failed was the verification, not the connection).
#include <signal.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "io/registry.h"
#include "tests/backend_params.h"
#include "tests/subprocess.h"
#include "tests/tls_certs.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

using testing::count_lines;
using testing::Proc;
using testing::tls_files;

std::string binary(const std::string& name) { return testing::server_binary(name); }

std::vector<std::string> tls_server(const std::string& io) {
  return {binary("heartbeat_server"), "--io",     io,   "--port",     "0",
          "--interval-ms",            "50",       "--misses",  "3", "--tls-cert",
          tls_files().cert,           "--tls-key", tls_files().key};
}

std::vector<std::string> client(const std::string& io, uint16_t port,
                                std::vector<std::string> tls, const char* duration = "0.6",
                                const char* conns = "3") {
  std::vector<std::string> a{binary("heartbeat_client"), "--io", io,  "--port",
                             std::to_string(port),       "--conns", conns, "--interval-ms",
                             "50",                       "--duration-s", duration};
  a.insert(a.end(), tls.begin(), tls.end());
  return a;
}

class HeartbeatTls : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    io::BackendInfo info = io::probe(GetParam());
    if (!info.available) GTEST_SKIP() << GetParam() << " unavailable here: " << info.reason;
  }
};

TEST_P(HeartbeatTls, PingsAndPongsOverVerifiedTls) {
  Proc server(tls_server(GetParam()), "server");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();
  EXPECT_NE(server.out().find(" tls"), std::string::npos) << server.out();
  Proc c(client(GetParam(), port, {"--tls", "--tls-ca", tls_files().ca}), "client");
  ASSERT_EQ(c.wait(10s), 0) << c.err();
  const std::string out = c.out();
  std::map<std::string, double> r = testing::last_json_numbers(out);
  ASSERT_TRUE(r.count("pings_sent") && r.count("pongs_received")) << out << c.err();
  EXPECT_EQ(r["pings_sent"], r["pongs_received"] + r["lost"] + r["in_flight"]) << out;
  // 3 sessions x ~12 intervals: all but the last interval's are answered.
  EXPECT_GE(r["pongs_received"], 15) << out;
  EXPECT_EQ(r["lost"], 0) << out;
  EXPECT_EQ(r["reconnects"], 0) << out;
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(5s), 0) << server.err();
  const std::string log = server.err();
  EXPECT_EQ(count_lines(log, "join 127.0.0.1:"), 3u) << log;
  // The sessions share one client context: the first handshake is full,
  // the others may resume its session.
  EXPECT_EQ(count_lines(log, "tls: 3 handshakes"), 1u) << log;
  EXPECT_EQ(count_lines(log, "0 failed, 0 timed out"), 1u) << log;
}

INSTANTIATE_TEST_SUITE_P(AllBackends, HeartbeatTls,
                         ::testing::ValuesIn(testing::all_backends()), testing::BackendName());

TEST(HeartbeatTlsVerify, AnotherCaFailsWithTheReasonAndInsecureConnects) {
  const std::string io = "epoll";
  Proc server(tls_server(io), "server");
  const uint16_t port = server.port();
  ASSERT_NE(port, 0) << server.err();

  // One session: the server then counts exactly one failed handshake.
  Proc wrong(client(io, port, {"--tls", "--tls-ca", tls_files().rogue_ca}, "5", "1"),
             "wrong_ca");
  // At once, not after --duration-s: retrying cannot fix a CA mismatch.
  ASSERT_EQ(wrong.wait(3s), 1) << wrong.err();
  const std::string err = wrong.err();
  EXPECT_NE(err.find("heartbeat_client: TLS handshake with 127.0.0.1:" + std::to_string(port) +
                     " failed: certificate verify failed"),
            std::string::npos)
      << err;
  EXPECT_EQ(wrong.out().find('{'), std::string::npos) << wrong.out();

  Proc insecure(client(io, port, {"--tls", "--tls-insecure"}, "0.3"), "insecure");
  ASSERT_EQ(insecure.wait(10s), 0) << insecure.err();
  EXPECT_GT(testing::last_json_numbers(insecure.out())["pongs_received"], 0) << insecure.out();

  // --tls-* options without --tls are refused up front (exit 2).
  Proc no_tls({binary("heartbeat_client"), "--port", std::to_string(port), "--tls-ca",
               tls_files().ca},
              "no_tls");
  EXPECT_EQ(no_tls.wait(5s), 2) << no_tls.err();

  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(5s), 0) << server.err();
  // The server saw the refused handshake: the client's alert.
  const std::string log = server.err();
  EXPECT_EQ(count_lines(log, "tls: 3 handshakes ("), 1u) << log;
  EXPECT_EQ(count_lines(log, " 1 failed, 0 timed out"), 1u) << log;
}

}  // namespace
}  // namespace sluice
