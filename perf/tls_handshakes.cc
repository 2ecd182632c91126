// tls_handshakes: TLS handshakes per second against a TLS echo server, full
// or resumed (--resume), for scripts/tlsbench.sh. Each of --threads threads
// loops: connect, handshake, echo one byte (so the server has finished its
// side and any TLS 1.3 ticket has arrived), close_notify, close. With
// --resume each connection offers the session its thread's previous one
// ended with (the first is full); the report counts how many resumed.
//
// The server is not verified (the cost measured is the server's; a client
// that verifies spends more of the shared CPUs on itself). OpenSSL directly,
// not sluice's TLS, like loadgen. Phases on stderr as loadgen prints them
// ("tls_handshakes: phase measure" / "phase done"), so a harness can sample
// the server over the measured window. One JSON line on stdout:
//
//   {"resume":0,"threads":4,"duration_s":3.000,"handshakes":...,"per_s":...,
//    "resumed":...,"errors":...}
//
//   tls_handshakes --port 7443 --threads 4 --duration-s 3 [--resume]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {

struct Counts {
  std::atomic<uint64_t> done{0}, resumed{0}, errors{0};
};

std::atomic<bool> g_stop{false};

// One connection: true when the handshake and the echo succeeded. With
// `resume`, offers *session; either way *session ends as the newest one.
bool one(SSL_CTX* ctx, const sockaddr_in& to, bool resume, SSL_SESSION** session, bool* resumed) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one_ = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0;
  SSL* ssl = ok ? SSL_new(ctx) : nullptr;
  ok = ssl && SSL_set_fd(ssl, fd) == 1;
  if (ok && resume && *session) SSL_set_session(ssl, *session);
  ok = ok && SSL_connect(ssl) == 1;
  char c = 'x';
  size_t n = 0;
  ok = ok && SSL_write_ex(ssl, &c, 1, &n) == 1 && SSL_read_ex(ssl, &c, 1, &n) == 1 && n == 1;
  if (ok) {
    *resumed = SSL_session_reused(ssl) == 1;
    if (SSL_SESSION* s = SSL_get1_session(ssl)) {  // the newest ticket
      if (*session) SSL_SESSION_free(*session);
      *session = s;
    }
    SSL_shutdown(ssl);  // our close_notify; the server's is not awaited
  }
  ERR_clear_error();
  if (ssl) SSL_free(ssl);
  ::close(fd);
  return ok;
}

void run(SSL_CTX* ctx, sockaddr_in to, bool resume, Counts* counts) {
  SSL_SESSION* session = nullptr;
  while (!g_stop.load(std::memory_order_relaxed)) {
    bool resumed = false;
    if (one(ctx, to, resume, &session, &resumed)) {
      counts->done.fetch_add(1, std::memory_order_relaxed);
      if (resumed) counts->resumed.fetch_add(1, std::memory_order_relaxed);
    } else {
      counts->errors.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (session) SSL_SESSION_free(session);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"TLS handshakes per second against a TLS echo server (full or resumed)"};
  std::string host = "127.0.0.1";
  unsigned port = 0;
  size_t threads = 4;
  double duration_s = 3, warmup_s = 0.5;
  bool resume = false;
  app.add_option("--host", host, "Server address (IPv4 literal)")->capture_default_str();
  app.add_option("--port", port, "Server port")->required()->check(CLI::Range(1, 65535));
  app.add_option("--threads", threads, "Connections at a time (one thread each)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--duration-s", duration_s, "Measured seconds")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--warmup-s", warmup_s, "Unmeasured seconds before")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_flag("--resume", resume, "Offer the previous connection's session (resumed handshakes)");
  CLI11_PARSE(app, argc, argv);

  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &to.sin_addr) != 1) {
    std::fprintf(stderr, "tls_handshakes: bad --host %s\n", host.c_str());
    return 2;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  // Sessions are kept by the threads (SSL_get1_session), not by a cache.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

  Counts counts;
  std::vector<std::thread> pool;
  for (size_t i = 0; i < threads; ++i) pool.emplace_back(run, ctx, to, resume, &counts);
  auto snap = [&counts] {
    return std::array<uint64_t, 3>{counts.done.load(), counts.resumed.load(), counts.errors.load()};
  };
  using clock = std::chrono::steady_clock;
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup_s));
  std::fprintf(stderr, "tls_handshakes: phase measure\n");
  const auto a = snap();
  const auto t0 = clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(duration_s));
  const auto b = snap();
  const double secs = std::chrono::duration<double>(clock::now() - t0).count();
  std::fprintf(stderr, "tls_handshakes: phase done\n");
  g_stop = true;
  for (auto& t : pool) t.join();
  SSL_CTX_free(ctx);
  const uint64_t done = b[0] - a[0];
  std::printf("{\"resume\":%d,\"threads\":%zu,\"duration_s\":%.3f,\"handshakes\":%" PRIu64
              ",\"per_s\":%.1f,\"resumed\":%" PRIu64 ",\"errors\":%" PRIu64 "}\n",
              resume ? 1 : 0, threads, secs, done, static_cast<double>(done) / secs, b[1] - a[1],
              b[2] - a[2]);
  return done == 0 || b[2] - a[2] > 0 ? 1 : 0;
}
