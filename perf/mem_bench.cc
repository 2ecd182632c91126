// mem_bench: what an idle connection costs a sluice server, per IO model.
//
//   bazel run //perf:mem_bench -- [--backends epoll,uring] [--conns 10000]
//       [--quick] [--json FILE]          (or scripts/mem_bench.sh ...)
//
// For each back end a fresh process (forked) starts a sluice Server with a
// raw echo handler, in-process, and forks its own client process (the two
// ends of N connections need 2N descriptors; RLIMIT_NOFILE is per process).
// The server process measures itself and the kernel:
//   base   after start and one warm-up connection, 0 connections;
//   idle   N idle connections accepted and settled;
//   active peak while 1% of them ping-pong 64 B echoes (~2 s);
//   after  0.5 s after that activity stopped (buffers should be gone);
// as RSS (/proc/self/statm), heap bytes in use (mallinfo2: uordblks +
// hblkhd, exact), and machine-wide slab (/proc/meminfo Slab, per-cache
// /proc/slabinfo). Slab covers both ends (loopback): it is per connection
// *pair*. Prints a Markdown table; --json writes every figure. Exits 1
// when a back end fails (cannot start, connections fail, a timeout).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/net.h"
#include "core/server.h"
#include "io/registry.h"
#include "perf/mem_bench.h"

namespace {

using namespace sluice::perf::mem;  // NOLINT: one binary's internals
using Ms = std::chrono::milliseconds;

struct Config {
  std::vector<std::string> backends;
  int64_t conns = 10000, blocking_conns = 2000, select_conns = 1000;
  size_t loops = 1;
  double active_pct = 1.0, active_s = 2.0;
  int64_t msg_size = 64;
  unsigned timeout_s = 180;
};

// Written by the server process into a pipe, read by the driver: plain data.
struct Result {
  char backend[16] = {};
  char error[240] = {};
  int64_t conns = 0, active = 0, rounds = 0;
  Totals base, idle, after;
  int64_t heap_active = 0, rss_active = 0, heap_closed = 0;
  StackGrowth stacks;  // new thread stacks (base -> idle)
  size_t ncaches = 0;
  Growth caches[8];
};

class EchoHandler final : public sluice::Handler {
 public:
  void on_message(sluice::Connection& conn, std::string_view data) override { conn.send(data); }
};

// Until the server holds n connections; false after `limit`, or after 5 s
// in which the count did not move.
bool wait_count(const sluice::Server& s, size_t n, Ms limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  auto moved = std::chrono::steady_clock::now();
  for (size_t last = s.connection_count(), now; last != n; last = now) {
    std::this_thread::sleep_for(Ms(10));
    const auto t = std::chrono::steady_clock::now();
    if ((now = s.connection_count()) != last) moved = t;
    if (t > end || t - moved > Ms(5000)) return false;
  }
  return true;
}

// Until heap and RSS stop moving: 3 quiet 100 ms steps in a row (max 6 s).
void settle() {
  auto quiet = [](int64_t a, int64_t b) { return std::abs(a - b) <= std::max<int64_t>(16384, b / 1000); };
  int64_t heap = heap_in_use(), rss = rss_bytes();
  for (int i = 0, still = 0; i < 60 && still < 3; ++i) {
    std::this_thread::sleep_for(Ms(100));
    const int64_t h = heap_in_use(), r = rss_bytes();
    still = quiet(heap, h) && quiet(rss, r) ? still + 1 : 0;
    heap = h;
    rss = r;
  }
}

// A command to the client process and its reply: "" when it succeeded,
// else why not.
std::string ask(int ctl, Msg m, Msg* reply, Ms limit) {
  if (!send_msg(ctl, m) || !recv_msg(ctl, reply, static_cast<int>(limit.count()))) {
    return "no answer from the client process";
  }
  return reply->a < 0 ? std::strerror(static_cast<int>(-reply->a)) : "";
}

void run_backend(const Config& c, int ctl, Result& r) {
  auto fail = [&r](const std::string& what) { std::snprintf(r.error, sizeof r.error, "%s", what.c_str()); };
  sluice::raise_fd_limit();
  EchoHandler handler;
  sluice::ServerOptions o;
  o.io = r.backend;
  o.threads = c.loops;
  o.listen.backlog = 4096;
  o.io_options.max_conns = std::max<size_t>(o.io_options.max_conns, static_cast<size_t>(r.conns) + 64);
  sluice::Server server(o, handler);
  std::string err;
  Msg rep;
  if (server.start(&err) < 0) return fail("cannot start the server: " + err);
  const int port = server.port();
  // Snapshots hold fixed arrays: zero-filled (so resident) before `base`.
  static Snapshot snap[3];
  std::memset(static_cast<void*>(snap), 0, sizeof snap);

  if (err = ask(ctl, {Op::kWarm, port}, &rep, Ms(10000)); !err.empty()) {
    return fail("warm-up connection failed: " + err);
  }
  if (!wait_count(server, 0, Ms(5000))) return fail("warm-up connection not closed within 5 s");
  settle();
  take(snap[0]);

  if (err = ask(ctl, {Op::kConnect, port, r.conns}, &rep, Ms(1000 * c.timeout_s)); !err.empty()) {
    return fail("opened " + std::to_string(rep.b) + " of " + std::to_string(r.conns) + " connections: " + err);
  }
  if (!wait_count(server, static_cast<size_t>(r.conns), Ms(30000))) {
    return fail("server holds " + std::to_string(server.connection_count()) + " of " +
                std::to_string(r.conns) + " connections (30 s, or 5 s without progress)");
  }
  settle();
  take(snap[1]);

  // Activity: sample the heap and RSS every 50 ms, keep the peaks.
  const auto every = std::max<int64_t>(1, static_cast<int64_t>(100.0 / c.active_pct + 0.5));
  const auto active_ms = static_cast<int64_t>(c.active_s * 1000);
  if (!send_msg(ctl, {Op::kActive, port, every, active_ms, c.msg_size})) return fail("client gone");
  const auto end = std::chrono::steady_clock::now() + Ms(active_ms + 20000);
  bool replied = false;
  while (!replied && std::chrono::steady_clock::now() < end) {
    replied = recv_msg(ctl, &rep, 50);
    r.heap_active = std::max(r.heap_active, heap_in_use());
    r.rss_active = std::max(r.rss_active, rss_bytes());
  }
  if (!replied || rep.a < 0) {
    return fail(replied ? std::string("echo on the active connections: ") + std::strerror(static_cast<int>(-rep.a))
                        : std::string("active phase did not end in time"));
  }
  r.rounds = rep.b;
  r.active = rep.c;
  std::this_thread::sleep_for(Ms(500));
  take(snap[2]);

  if (!ask(ctl, {Op::kQuit, port}, &rep, Ms(30000)).empty()) return fail("client did not quit");
  if (!wait_count(server, 0, Ms(10000))) return fail("connections not closed within 10 s of the client's resets");
  settle();
  r.heap_closed = heap_in_use();
  server.stop(Ms(100));

  r.base = snap[0].t;
  r.idle = snap[1].t;
  r.after = snap[2].t;
  r.ncaches = slab_growth(snap[0], snap[1], r.caches, std::size(r.caches));
  r.stacks = stack_growth(snap[0].stacks, snap[1].stacks);
}

// Runs one back end in a forked server process (which forks the client).
Result measure(const Config& c, const std::string& name, int64_t conns) {
  Result r;
  std::snprintf(r.backend, sizeof r.backend, "%s", name.c_str());
  r.conns = conns;
  int pipe_fd[2], ctl[2];
  if (::pipe2(pipe_fd, O_CLOEXEC) < 0 || ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0) {
    std::snprintf(r.error, sizeof r.error, "pipe: %s", std::strerror(errno));
    return r;
  }
  std::fflush(nullptr);
  const pid_t server = ::fork();
  if (server == 0) {
    ::close(pipe_fd[0]);
    ::alarm(c.timeout_s);  // every run is bounded: SIGALRM ends it
    const pid_t client = ::fork();
    if (client == 0) {
      ::close(pipe_fd[1]);
      ::close(ctl[0]);
      ::alarm(c.timeout_s);
      ::_exit(client_main(ctl[1]));
    }
    ::close(ctl[1]);
    spdlog::set_default_logger(spdlog::stderr_color_st("sluice"));  // stdout is the table's
    spdlog::set_level(spdlog::level::warn);
    if (client < 0) std::snprintf(r.error, sizeof r.error, "fork: %s", std::strerror(errno));
    else run_backend(c, ctl[0], r);
    if (r.error[0] != '\0' && client > 0) send_msg(ctl[0], {Op::kQuit});
    if (client > 0) ::waitpid(client, nullptr, 0);
    (void)!::write(pipe_fd[1], &r, sizeof r);
    ::_exit(0);
  }
  ::close(pipe_fd[1]);
  ::close(ctl[0]);
  ::close(ctl[1]);
  Result got;
  size_t have = 0;
  for (ssize_t n = 1; have < sizeof got && (n > 0 || (n < 0 && errno == EINTR)); have += n > 0 ? static_cast<size_t>(n) : 0) {
    n = ::read(pipe_fd[0], reinterpret_cast<char*>(&got) + have, sizeof got - have);
  }
  ::close(pipe_fd[0]);
  int status = 0;
  if (server > 0) ::waitpid(server, &status, 0);
  if (server < 0) std::snprintf(r.error, sizeof r.error, "fork: %s", std::strerror(errno));
  else if (have == sizeof got) r = got;
  else if (WIFSIGNALED(status)) {
    std::snprintf(r.error, sizeof r.error, "server process killed by signal %d%s", WTERMSIG(status),
                  WTERMSIG(status) == SIGALRM ? " (--timeout-s passed)" : "");
  } else {
    std::snprintf(r.error, sizeof r.error, "server process exited (status %d) without a result", status);
  }
  return r;
}

double per(int64_t bytes, int64_t n) { return n > 0 ? static_cast<double>(bytes) / static_cast<double>(n) : 0; }

void print_table(const std::vector<Result>& rs) {
  std::printf("| IO model | conns | RSS B/conn | heap B/conn | slab B/pair | heap B/conn, 1%% active | "
              "heap B/active conn | heap B/conn after activity |\n|---|---|---|---|---|---|---|---|\n");
  for (const Result& r : rs) {
    if (r.error[0] != '\0') {
      std::printf("| %s | %lld | failed: %s | | | | | |\n", r.backend, static_cast<long long>(r.conns), r.error);
      continue;
    }
    std::printf("| %s | %lld | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", r.backend,
                static_cast<long long>(r.conns), per(r.idle.rss - r.base.rss, r.conns),
                per(r.idle.heap - r.base.heap, r.conns), per(r.idle.slab - r.base.slab, r.conns),
                per(r.heap_active - r.base.heap, r.conns), per(r.heap_active - r.idle.heap, r.active),
                per(r.after.heap - r.base.heap, r.conns));
  }
}

void print_notes(const Config& c, const std::vector<Result>& rs) {
  std::printf("\nslab B/pair: growth of /proc/meminfo Slab (machine-wide) per connection; both ends live here "
              "(loopback), so half is a rough per-end figure. Active: every %.0fth connection echoes %lld B "
              "ping-pong for %.1f s; heap is the peak of 50 ms samples.\n",
              100.0 / c.active_pct, static_cast<long long>(c.msg_size), c.active_s);
  for (const Result& r : rs) {
    if (r.error[0] != '\0') continue;
    std::printf("\n%s: RSS %+.0f KiB, heap %+.0f KiB, slab %+.0f KiB for %lld conns; %lld echo rounds on %lld active;"
                " heap after closing all: %+.0f B/conn vs base\n",
                r.backend, per(r.idle.rss - r.base.rss, 1024), per(r.idle.heap - r.base.heap, 1024),
                per(r.idle.slab - r.base.slab, 1024), static_cast<long long>(r.conns),
                static_cast<long long>(r.rounds), static_cast<long long>(r.active),
                per(r.heap_closed - r.base.heap, r.conns));
    std::printf("  slab caches, B/pair:");
    for (size_t i = 0; i < r.ncaches; ++i) std::printf(" %s %.0f", r.caches[i].name, per(r.caches[i].bytes, r.conns));
    std::printf("%s\n", r.ncaches == 0 ? " (no /proc/slabinfo: needs root)" : "");
    if (r.idle.tcp_mem_pages != r.base.tcp_mem_pages) {
      std::printf("  sockstat TCP mem (machine-wide, queued data only): %lld -> %lld pages\n",
                  static_cast<long long>(r.base.tcp_mem_pages), static_cast<long long>(r.idle.tcp_mem_pages));
    }
    const int64_t threads = r.idle.threads - r.base.threads;
    if (threads > 0) {
      std::printf("  threads: %+lld (%.2f per conn); per thread: RSS %.0f B, of it %.0f B resident stack (%lld new"
                  " %lld KiB stacks behind guard pages: io/blocking.cc kStackSize), kernel stack %.0f B (not in Slab)\n",
                  static_cast<long long>(threads), per(threads, r.conns), per(r.idle.rss - r.base.rss, threads),
                  per(r.stacks.rss, r.stacks.count), static_cast<long long>(r.stacks.count),
                  static_cast<long long>(r.stacks.size / 1024), per(r.idle.kernel_stack - r.base.kernel_stack, threads));
    }
  }
  for (const Result& r : rs) {
    if (r.conns >= c.conns) continue;
    if (std::strcmp(r.backend, "select") == 0) {
      std::printf("\nselect: capped at %lld connections (--select-conns): io/select.cc refuses descriptors >= "
                  "FD_SETSIZE (1024).\n", static_cast<long long>(r.conns));
    } else if (std::strcmp(r.backend, "blocking") == 0) {
      std::printf("\nblocking: capped at %lld connections (--blocking-conns): a reader and a writer thread "
                  "per connection.\n", static_cast<long long>(r.conns));
    }
  }
}

void write_totals(FILE* f, const char* key, const Totals& t) {
  std::fprintf(f, "\"%s\":{\"rss\":%lld,\"heap\":%lld,\"threads\":%lld,\"slab\":%lld,\"kernel_stack\":%lld,"
               "\"tcp_mem_pages\":%lld},", key, static_cast<long long>(t.rss), static_cast<long long>(t.heap),
               static_cast<long long>(t.threads), static_cast<long long>(t.slab),
               static_cast<long long>(t.kernel_stack), static_cast<long long>(t.tcp_mem_pages));
}

bool write_json(const std::string& path, const Config& c, const std::vector<Result>& rs) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return false;
  utsname u{};
  ::uname(&u);
  std::fprintf(f, "{\"kernel\":\"%s\",\"loops\":%zu,\"active_pct\":%g,\"active_s\":%g,\"msg_size\":%lld,\"results\":[",
               u.release, c.loops, c.active_pct, c.active_s, static_cast<long long>(c.msg_size));
  for (size_t i = 0; i < rs.size(); ++i) {
    const Result& r = rs[i];
    std::fprintf(f, "%s{\"backend\":\"%s\",\"conns\":%lld,\"ok\":%s,\"error\":\"%s\",", i ? "," : "", r.backend,
                 static_cast<long long>(r.conns), r.error[0] ? "false" : "true", r.error);
    write_totals(f, "base", r.base);
    write_totals(f, "idle", r.idle);
    write_totals(f, "after", r.after);
    std::fprintf(f, "\"active\":%lld,\"rounds\":%lld,\"heap_active_peak\":%lld,\"rss_active_peak\":%lld,"
                 "\"heap_closed\":%lld,\"new_stacks\":%lld,\"stack_bytes\":%lld,\"new_stacks_rss\":%lld,"
                 "\"rss_per_conn\":%.1f,\"heap_per_conn\":%.1f,\"slab_per_pair\":%.1f,"
                 "\"heap_per_conn_active\":%.1f,\"heap_per_active_conn\":%.1f,\"heap_per_conn_after\":%.1f,"
                 "\"slab_caches_per_pair\":{",
                 static_cast<long long>(r.active), static_cast<long long>(r.rounds),
                 static_cast<long long>(r.heap_active), static_cast<long long>(r.rss_active),
                 static_cast<long long>(r.heap_closed), static_cast<long long>(r.stacks.count),
                 static_cast<long long>(r.stacks.size), static_cast<long long>(r.stacks.rss), per(r.idle.rss - r.base.rss, r.conns),
                 per(r.idle.heap - r.base.heap, r.conns), per(r.idle.slab - r.base.slab, r.conns),
                 per(r.heap_active - r.base.heap, r.conns), per(r.heap_active - r.idle.heap, r.active),
                 per(r.after.heap - r.base.heap, r.conns));
    for (size_t k = 0; k < r.ncaches; ++k) {
      std::fprintf(f, "%s\"%s\":%.1f", k ? "," : "", r.caches[k].name, per(r.caches[k].bytes, r.conns));
    }
    std::fprintf(f, "}}");
  }
  std::fprintf(f, "]}\n");
  return std::fclose(f) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  std::string backends, json;
  bool quick = false;
  CLI::App app{"sluice mem_bench: memory per idle (and 1% active) connection, per IO model"};
  app.add_option("--backends", backends, "Comma-separated IO models (default: every available one)");
  app.add_option("--conns", c.conns, "Idle connections per IO model")->check(CLI::Range(1, 19000))->capture_default_str();
  app.add_option("--blocking-conns", c.blocking_conns, "At most this many for blocking (2 threads per connection)")
      ->check(CLI::Range(1, 19000))->capture_default_str();
  app.add_option("--select-conns", c.select_conns, "At most this many for select (its descriptors must stay below FD_SETSIZE, 1024)")
      ->check(CLI::Range(1, 19000))->capture_default_str();
  app.add_option("--loops", c.loops, "Server event loops (threads)")->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--active-pct", c.active_pct, "Percent of connections made active")
      ->check(CLI::Range(0.01, 100.0))->capture_default_str();
  app.add_option("--active-s", c.active_s, "Seconds of activity")->check(CLI::Range(0.1, 60.0))->capture_default_str();
  app.add_option("--msg-size", c.msg_size, "Echo message bytes")->check(CLI::Range(1, 65536))->capture_default_str();
  app.add_option("--timeout-s", c.timeout_s, "Give up on one IO model after this long")->capture_default_str();
  app.add_option("--json", json, "Also write every figure to this file (JSON)");
  app.add_flag("--quick", quick, "1000 connections (blocking 500), 1 s of activity");
  CLI11_PARSE(app, argc, argv);
  if (quick) {
    c.conns = std::min<int64_t>(c.conns, 1000);
    c.blocking_conns = std::min<int64_t>(c.blocking_conns, 500);
    c.active_s = 1.0;
  }

  std::vector<sluice::io::BackendInfo> infos = sluice::io::backends();
  bool failed = false;
  for (size_t at = 0; !backends.empty() && at != std::string::npos;) {
    const size_t comma = backends.find(',', at);
    c.backends.push_back(backends.substr(at, comma == std::string::npos ? comma : comma - at));
    at = comma == std::string::npos ? comma : comma + 1;
  }
  if (c.backends.empty()) {
    for (const auto& i : infos) {
      if (i.available) c.backends.push_back(i.name);
      else std::fprintf(stderr, "mem_bench: skipping %s: %s\n", i.name.c_str(), i.reason.c_str());
    }
  }
  std::vector<Result> results;
  for (const std::string& b : c.backends) {
    const sluice::io::BackendInfo info = sluice::io::probe(b);
    if (!info.available) {
      std::fprintf(stderr, "mem_bench: %s: %s\n", b.c_str(), info.reason.c_str());
      return 2;
    }
    int64_t n = c.conns;
    if (b == "blocking") n = std::min(n, c.blocking_conns);
    if (b == "select") n = std::min(n, c.select_conns);
    std::fprintf(stderr, "mem_bench: %s, %lld connections ...\n", b.c_str(), static_cast<long long>(n));
    results.push_back(measure(c, b, n));
    if (results.back().error[0] != '\0') {
      std::fprintf(stderr, "mem_bench: %s FAILED: %s\n", b.c_str(), results.back().error);
      failed = true;
    }
  }
  print_table(results);
  print_notes(c, results);
  if (!json.empty() && !write_json(json, c, results)) {
    std::fprintf(stderr, "mem_bench: cannot write %s: %s\n", json.c_str(), std::strerror(errno));
    return 1;
  }
  return failed ? 1 : 0;
}
