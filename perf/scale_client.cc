// scale_client: holds up to a million heartbeat connections (docs/PROTOCOL.md)
// against a heartbeat_server and measures what holding them costs.
//
// It forks --procs processes (each holds at most ~19,000 connections: the
// descriptor limit is 20,000) that open connections at a bounded total
// --rate from --sources addresses in 127.0.0.0/8 (IP_BIND_ADDRESS_NO_PORT:
// each source address gets the whole ephemeral port range toward the
// server), ping every --interval-ms at random phases, and count RTTs and
// drops (perf/scale_conns.h). This parent steps the connection count
// through --steps, and at each step ramps, holds for the hold time, and
// reports one row:
//   ramp rate and connect latency; heartbeat RTT p50/p99/p99.9 during the
//   hold; false and late drops; with --server-pid, the server's user-space
//   memory per connection (PSS of it and its workers, growth since start),
//   kernel slab growth per connection (both ends of the loopback pair),
//   and server CPU per heartbeat.
// A progress line goes to stderr; rows to stdout; --json writes them all.
// With --linger it then keeps every connection open until SIGTERM/SIGINT
// (scripts/scale.sh stops the server meanwhile, to time its drain).
//
//   scale_client --port 7100 --conns 100000 --steps 25000,50000
//                --interval-ms 5000 --hold-s 60 --server-pid 1234 --json out.json
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "perf/histogram.h"
#include "perf/proc_sample.h"
#include "perf/scale_conns.h"
#include "perf/scale_proc.h"

namespace sluice::perf::scale {
namespace {

constexpr size_t kPerProcessMax = 19000;  // under the 20,000 descriptor limit

struct Child {
  pid_t pid = -1;
  int ctl = -1;
  int up = -1;
  size_t conns = 0;
  Record last{};
};

struct ServerSample {
  int64_t pss_kib = 0;
  int64_t run_ns = 0;  // CPU time of every thread (schedstat: ns, not 10 ms ticks)
  size_t processes = 0;
};

// The server process and all its descendants (a supervisor's workers).
ServerSample sample_server(int64_t pid) {
  ServerSample s;
  if (pid <= 0) return s;
  std::vector<int64_t> pids{pid};
  for (size_t i = 0; i < pids.size() && pids.size() < 4096; ++i) {
    for (int64_t kid : children_of(pids[i])) pids.push_back(kid);
  }
  for (int64_t p : pids) {
    const int64_t pss = pss_kib(p);
    const ProcSample ps = sample_proc(p);
    if (pss < 0 || !ps.ok) continue;
    s.pss_kib += pss;
    s.run_ns += ps.run_ns;
    ++s.processes;
  }
  return s;
}

double ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

struct Row {
  size_t target = 0;
  uint64_t open = 0, failed = 0, first_errno = 0;
  double ramp_s = 0, ramp_rate = 0;
  double connect_p50_ms = 0, connect_p99_ms = 0;
  double rtt_p50_ms = 0, rtt_p99_ms = 0, rtt_p999_ms = 0, lateness_p999_ms = 0;
  uint64_t pings = 0, pongs = 0, false_drops = 0, late_drops = 0, bad_frames = 0;
  double hold_s = 0;
  size_t server_procs = 0;
  double server_pss_mib = 0, server_bytes_per_conn = 0, slab_bytes_per_conn = 0;
  double server_cpu_us_per_heartbeat = 0, client_pss_mib = 0;
};

std::string json_row(const Row& r) {
  std::ostringstream o;
  o << "{\"conns\": " << r.target << ", \"open\": " << r.open << ", \"connect_failed\": "
    << r.failed << ", \"first_connect_errno\": " << r.first_errno << ", \"ramp_s\": " << r.ramp_s
    << ", \"ramp_conns_per_s\": " << r.ramp_rate << ", \"connect_p50_ms\": " << r.connect_p50_ms
    << ", \"connect_p99_ms\": " << r.connect_p99_ms << ", \"hold_s\": " << r.hold_s
    << ", \"pings\": " << r.pings << ", \"pongs\": " << r.pongs << ", \"rtt_p50_ms\": "
    << r.rtt_p50_ms << ", \"rtt_p99_ms\": " << r.rtt_p99_ms << ", \"rtt_p999_ms\": "
    << r.rtt_p999_ms << ", \"ping_lateness_p999_ms\": " << r.lateness_p999_ms
    << ", \"false_drops\": " << r.false_drops << ", \"late_drops\": " << r.late_drops
    << ", \"bad_frames\": " << r.bad_frames << ", \"server_processes\": " << r.server_procs
    << ", \"server_pss_mib\": " << r.server_pss_mib << ", \"server_bytes_per_conn\": "
    << r.server_bytes_per_conn << ", \"slab_bytes_per_conn\": " << r.slab_bytes_per_conn
    << ", \"server_cpu_us_per_heartbeat\": " << r.server_cpu_us_per_heartbeat
    << ", \"client_pss_mib\": " << r.client_pss_mib << "}";
  return o.str();
}

}  // namespace

int main_impl(int argc, char** argv) {
  CLI::App app{"sluice connection-scale client (heartbeat protocol over TCP)"};
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  size_t conns = 10000;
  std::string steps_arg;
  size_t procs = 0;
  size_t sources = 0;
  std::string source_base = "127.1.0.1";
  double rate = 20000;
  int64_t interval_ms = 5000;
  int misses = 3;
  double hold_s = 60;
  double step_hold_s = 0;
  int64_t server_pid = 0;
  std::string json_path;
  bool linger = false;
  uint64_t seed = 1;
  app.add_option("--host", host, "Server address")->capture_default_str();
  app.add_option("--port", port, "Server port")->required();
  app.add_option("--conns", conns, "Connections to hold at the last step")->capture_default_str();
  app.add_option("--steps", steps_arg, "Earlier steps, comma-separated (e.g. 25000,50000)");
  app.add_option("--procs", procs, "Client processes (0: enough for 19,000 each)");
  app.add_option("--sources", sources,
                 "Source addresses from --source-base up (0: one per 25,000 connections)");
  app.add_option("--source-base", source_base, "First source address")->capture_default_str();
  app.add_option("--rate", rate, "Connects per second, all processes together")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--interval-ms", interval_ms, "PING interval")->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  app.add_option("--misses", misses, "The server's misses (drops after interval x misses)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--hold-s", hold_s, "Hold at the last step, seconds")->capture_default_str();
  app.add_option("--step-hold-s", step_hold_s, "Hold at earlier steps (0: one interval)");
  app.add_option("--server-pid", server_pid, "Server (or supervisor) to measure");
  app.add_option("--json", json_path, "Write every step's row here");
  app.add_flag("--linger", linger, "After the last step, keep the connections until SIGTERM");
  app.add_option("--seed", seed, "Ping phase seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<size_t> steps;
  {
    std::stringstream ss(steps_arg);
    for (std::string s; std::getline(ss, s, ',');) {
      if (!s.empty()) steps.push_back(std::stoul(s));
    }
  }
  steps.push_back(conns);
  std::sort(steps.begin(), steps.end());
  steps.erase(std::unique(steps.begin(), steps.end()), steps.end());
  steps.erase(std::remove_if(steps.begin(), steps.end(), [&](size_t s) { return s > conns; }),
              steps.end());
  if (step_hold_s <= 0) step_hold_s = static_cast<double>(interval_ms) / 1000.0 + 1;
  if (procs == 0) procs = (conns + kPerProcessMax - 1) / kPerProcessMax;
  if (conns / procs + 1 > kPerProcessMax + 1) {
    std::fprintf(stderr, "scale_client: %zu connections need at least %zu processes (%zu each)\n",
                 conns, (conns + kPerProcessMax - 1) / kPerProcessMax, kPerProcessMax);
    return 2;
  }
  if (sources == 0) sources = std::max<size_t>(1, (conns + 24999) / 25000);
  in_addr base{};
  if (::inet_pton(AF_INET, source_base.c_str(), &base) != 1) {
    std::fprintf(stderr, "scale_client: bad --source-base %s\n", source_base.c_str());
    return 2;
  }
  std::vector<in_addr> srcs;
  for (size_t i = 0; i < sources; ++i) {
    in_addr a;
    a.s_addr = htonl(ntohl(base.s_addr) + static_cast<uint32_t>(i));
    srcs.push_back(a);
  }
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }

  const int64_t slab0 = meminfo_kib("Slab");
  const ServerSample server0 = sample_server(server_pid);
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);

  std::vector<Child> kids(procs);
  for (size_t i = 0; i < procs; ++i) {
    Child& k = kids[i];
    k.conns = conns / procs + (i < conns % procs ? 1 : 0);
    int ctl[2], up[2];
    if (::pipe2(ctl, O_CLOEXEC) < 0 || ::pipe2(up, O_CLOEXEC) < 0) return 1;
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(ctl[1]);
      ::close(up[0]);
      for (size_t j = 0; j < i; ++j) {
        ::close(kids[j].ctl);
        ::close(kids[j].up);
      }
      ConnsOptions o;
      o.host = host;
      o.port = port;
      o.conns = k.conns;
      o.sources = srcs;
      o.source_offset = i * 7;
      o.rate = rate / static_cast<double>(procs);
      o.max_connecting = std::max<size_t>(64, 4000 / procs);
      o.interval_ms = interval_ms;
      o.misses = misses;
      o.seed = seed * 1000003 + i;
      ::_exit(child_main(o, ctl[0], up[1]));
    }
    ::close(ctl[0]);
    ::close(up[1]);
    k.pid = pid;
    k.ctl = ctl[1];
    k.up = up[0];
  }
  ::pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  auto tell = [&](uint32_t op, auto arg_of) {
    for (size_t i = 0; i < kids.size(); ++i) {
      Ctl c;
      c.op = op;
      c.arg = arg_of(i);
      write_full(kids[i].ctl, &c, sizeof c);
    }
  };
  auto stop_requested = [&] {
    timespec zero{0, 0};
    return ::sigtimedwait(&stop, nullptr, &zero) > 0;
  };
  // Reads progress for up to `ms` milliseconds; false if a child died.
  auto pump = [&](int ms_budget) {
    const int64_t end = now_ns() + int64_t{ms_budget} * 1000000;
    while (now_ns() < end) {
      std::vector<pollfd> pfds;
      for (Child& k : kids) pfds.push_back({k.up, POLLIN, 0});
      const int left = static_cast<int>((end - now_ns()) / 1000000) + 1;
      if (::poll(pfds.data(), pfds.size(), left) <= 0) continue;
      for (size_t i = 0; i < kids.size(); ++i) {
        if (pfds[i].revents == 0) continue;
        Record r;
        if (!read_full(kids[i].up, &r, sizeof r) || r.type != 1) return false;
        kids[i].last = r;
      }
    }
    return true;
  };
  auto sum = [&] {
    ConnsCounters s;
    bool done = true;
    for (const Child& k : kids) {
      s.attempted += k.last.c.attempted;
      s.connected += k.last.c.connected;
      s.connect_failed += k.last.c.connect_failed;
      s.open += k.last.c.open;
      s.false_drops += k.last.c.false_drops;
      s.late_drops += k.last.c.late_drops;
      done = done && k.last.ramp_done;
    }
    return std::make_pair(s, done);
  };
  const bool tty = ::isatty(2);
  auto progress = [&](const char* what, size_t target, double elapsed) {
    const auto [s, done] = sum();
    std::fprintf(stderr, "%s%s %zu: open %lu, failed %lu, false drops %lu, late drops %lu, %.0f s%s",
                 tty ? "\r" : "", what, target, static_cast<unsigned long>(s.open),
                 static_cast<unsigned long>(s.connect_failed),
                 static_cast<unsigned long>(s.false_drops),
                 static_cast<unsigned long>(s.late_drops), elapsed, tty ? "   " : "\n");
  };

  std::vector<Row> rows;
  bool aborted = false;
  std::printf("%9s %9s %7s %9s %8s %8s %8s %8s %8s %7s %7s %9s %9s %9s\n", "conns", "open",
              "failed", "ramp/s", "conn_p99", "rtt_p50", "rtt_p99", "rtt_p999", "late_p999",
              "false", "late", "srv_B/c", "slab_B/c", "cpu_us/hb");
  for (size_t si = 0; si < steps.size() && !aborted; ++si) {
    const size_t target = steps[si];
    const bool last = si + 1 == steps.size();
    const int64_t t0 = now_ns();
    tell(kRamp, [&](size_t i) {
      return target / procs + (i < target % procs ? 1 : 0);
    });
    // The children report ramp_done for the previous target until they
    // read this one: wait for a fresh report that has started this step.
    for (Child& k : kids) k.last.ramp_done = 0;
    int64_t shown = 0;
    for (;;) {
      if (!pump(250) || stop_requested()) {
        aborted = true;
        break;
      }
      const auto [s, done] = sum();
      if (done && s.attempted >= target) break;
      if (now_ns() - shown > (tty ? 250'000'000 : 2'000'000'000)) {
        progress("ramp", target, static_cast<double>(now_ns() - t0) / 1e9);
        shown = now_ns();
      }
    }
    if (aborted) break;
    const double ramp_s = static_cast<double>(now_ns() - t0) / 1e9;
    const auto [ramped, unused] = sum();
    (void)unused;
    const ServerSample server1 = sample_server(server_pid);
    tell(kHold, [](size_t) { return 0; });
    const double hold = last ? hold_s : step_hold_s;
    const int64_t h0 = now_ns();
    shown = 0;
    while (static_cast<double>(now_ns() - h0) / 1e9 < hold) {
      if (!pump(250) || stop_requested()) {
        aborted = true;
        break;
      }
      if (now_ns() - shown > (tty ? 1'000'000'000 : 10'000'000'000)) {
        progress("hold", target, static_cast<double>(now_ns() - h0) / 1e9);
        shown = now_ns();
      }
    }
    const double held_s = static_cast<double>(now_ns() - h0) / 1e9;
    const ServerSample server2 = sample_server(server_pid);
    const int64_t slab1 = meminfo_kib("Slab");
    int64_t client_pss = 0;
    for (const Child& k : kids) client_pss += std::max<int64_t>(0, pss_kib(k.pid));
    tell(kEnd, [](size_t) { return 0; });
    // Collect the reports (progress records may come first).
    Row row;
    Histogram connect{2}, rtt{2}, late{2};
    ConnsCounters total;
    for (Child& k : kids) {
      Record r;
      do {
        if (!read_full(k.up, &r, sizeof r)) {
          aborted = true;
          break;
        }
      } while (r.type == 1);
      if (aborted) break;
      if (!get_histogram(k.up, connect) || !get_histogram(k.up, rtt) ||
          !get_histogram(k.up, late)) {
        aborted = true;
        break;
      }
      k.last = r;
      total.open += r.c.open;
      total.connect_failed += r.c.connect_failed;
      total.pings += r.c.pings;
      total.pongs += r.c.pongs;
      total.false_drops += r.c.false_drops;
      total.late_drops += r.c.late_drops;
      total.bad_frames += r.c.bad_frames;
      if (total.errno_first == 0) total.errno_first = r.c.errno_first;
    }
    if (aborted) break;
    if (tty) std::fprintf(stderr, "\n");
    row.target = target;
    row.open = total.open;
    row.failed = total.connect_failed;
    row.first_errno = total.errno_first;
    row.ramp_s = ramp_s;
    const uint64_t before = si == 0 ? 0 : rows.back().open;
    row.ramp_rate = ramp_s > 0 ? static_cast<double>(ramped.connected - std::min(before, ramped.connected)) / ramp_s : 0;
    row.connect_p50_ms = ms(connect.percentile(50));
    row.connect_p99_ms = ms(connect.percentile(99));
    row.hold_s = held_s;
    row.pings = total.pings;
    row.pongs = total.pongs;
    row.rtt_p50_ms = ms(rtt.percentile(50));
    row.rtt_p99_ms = ms(rtt.percentile(99));
    row.rtt_p999_ms = ms(rtt.percentile(99.9));
    row.lateness_p999_ms = ms(late.percentile(99.9));
    row.false_drops = total.false_drops;
    row.late_drops = total.late_drops;
    row.bad_frames = total.bad_frames;
    row.client_pss_mib = static_cast<double>(client_pss) / 1024.0;
    if (server_pid > 0 && row.open > 0) {
      row.server_procs = server2.processes;
      row.server_pss_mib = static_cast<double>(server2.pss_kib) / 1024.0;
      row.server_bytes_per_conn =
          static_cast<double>(server2.pss_kib - server0.pss_kib) * 1024.0 / static_cast<double>(row.open);
      if (row.pongs > 0) {
        row.server_cpu_us_per_heartbeat =
            static_cast<double>(server2.run_ns - server1.run_ns) / 1e3 / static_cast<double>(row.pongs);
      }
    }
    if (slab0 >= 0 && slab1 >= 0 && row.open > 0) {
      row.slab_bytes_per_conn = static_cast<double>(slab1 - slab0) * 1024.0 / static_cast<double>(row.open);
    }
    std::printf("%9zu %9lu %7lu %9.0f %8.2f %8.3f %8.3f %8.3f %9.2f %7lu %7lu %9.0f %9.0f %9.2f\n",
                row.target, static_cast<unsigned long>(row.open),
                static_cast<unsigned long>(row.failed), row.ramp_rate, row.connect_p99_ms,
                row.rtt_p50_ms, row.rtt_p99_ms, row.rtt_p999_ms, row.lateness_p999_ms,
                static_cast<unsigned long>(row.false_drops),
                static_cast<unsigned long>(row.late_drops), row.server_bytes_per_conn,
                row.slab_bytes_per_conn, row.server_cpu_us_per_heartbeat);
    std::fflush(stdout);
    rows.push_back(row);
  }

  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << "{\"interval_ms\": " << interval_ms << ", \"misses\": " << misses
        << ", \"procs\": " << procs << ", \"sources\": " << sources << ", \"rate\": " << rate
        << ", \"slab_kib_at_start\": " << slab0 << ", \"server_pss_kib_at_start\": "
        << server0.pss_kib << ",\n \"steps\": [\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      out << "  " << json_row(rows[i]) << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    out << " ]}\n";
  }
  if (linger && !aborted) {
    std::fprintf(stderr, "holding %lu connections until SIGTERM/SIGINT\n",
                 static_cast<unsigned long>(rows.empty() ? 0 : rows.back().open));
    int sig = 0;
    while (::sigwait(&stop, &sig) != 0) {
    }
  }
  tell(kQuit, [](size_t) { return 0; });
  for (Child& k : kids) {
    ::close(k.ctl);
    int st;
    ::waitpid(k.pid, &st, 0);
  }
  if (aborted) {
    std::fprintf(stderr, "scale_client: stopped early (a signal, or a client process died)\n");
    return 1;
  }
  for (const Row& r : rows) {
    if (r.false_drops != 0) return 3;
  }
  return 0;
}

}  // namespace sluice::perf::scale

int main(int argc, char** argv) { return sluice::perf::scale::main_impl(argc, argv); }
