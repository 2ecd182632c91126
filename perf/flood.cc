// flood: the DoS lab's attack tool (scripts/doslab.sh, docs/ROBUSTNESS.md).
// A bounded flood of one kind at one address and port:
//
//   syn | ack | rst   raw IPv4 TCP segments, random sequence numbers and
//                     ports, sources spoofed from --src-cidr
//   udp               datagrams of --size bytes; spoofed (raw) with
//                     --src-cidr, else from this host's own address
//   rudp-initial      valid rudp INITIALs (rudp/wire.h), random client ids,
//                     padded to 1200 bytes like the real client's
//   connect           full handshakes, held open (up to --conns), bound
//                     round-robin to --bind's local addresses
//   slowloris         the same, each announcing a --frame-bytes frame
//                     (4-byte big-endian length, the echo server's
//                     --codec length) and trickling a byte every --interval-ms
//
// Every run is bounded: --rate (token bucket, at most kMaxRate) and
// --seconds (at most kMaxSeconds) are required; --count stops earlier.
//
// Safety guard: it refuses (exit 2) to run in the initial network
// namespace unless the destination is in 127.0.0.0/8, and refuses to spoof
// in the initial namespace at all: a flood leaves this host only from a
// lab namespace, whose routes the lab controls. At the end: one JSON line
// on stdout with what was sent.
//
//   ip netns exec LAB-atk flood --mode syn --dst 10.77.0.2 --port 7000
//       --src-cidr 10.77.128.0/17 --rate 200000 --seconds 10
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <random>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "perf/flood.h"

namespace {

using namespace sluice::perf::flood;  // NOLINT: one binary's internals

constexpr double kMaxRate = 1e6;         // packets or connects per second
constexpr double kMaxSeconds = 600;
constexpr size_t kMaxConns = 200000;
constexpr size_t kMaxBind = 65536;

// Whether this process is in the initial network namespace (PID 1's).
// Some kernels deny /proc/1/ns/net to a process in another namespace; then
// a namespace named by `ip netns` (bound under /run/netns) is known not to
// be the initial one. Anything else counts as initial: the guard fails
// closed.
bool in_initial_netns() {
  struct stat self {}, init {};
  if (stat("/proc/self/ns/net", &self) != 0) return true;
  if (stat("/proc/1/ns/net", &init) == 0)
    return self.st_ino == init.st_ino && self.st_dev == init.st_dev;
  DIR* d = opendir("/run/netns");
  if (d == nullptr) return true;
  bool named = false;
  while (dirent* e = readdir(d)) {
    struct stat st {};
    const std::string path = std::string("/run/netns/") + e->d_name;
    if (e->d_name[0] != '.' && stat(path.c_str(), &st) == 0 && st.st_ino == self.st_ino &&
        st.st_dev == self.st_dev) {
      named = true;
      break;
    }
  }
  closedir(d);
  return !named;
}

int refuse(const std::string& why) {
  std::fprintf(stderr, "flood: refusing to run: %s\n", why.c_str());
  return 2;
}

bool parse_bind(const std::string& text, std::vector<uint32_t>* out, std::string* err) {
  if (text.find('/') != std::string::npos) {
    Cidr c;
    if (parse_cidr(text, &c, err) < 0) return false;
    if (c.size() > kMaxBind + 2) {
      *err = fmt::format("--bind {}: more than {} addresses", text, kMaxBind);
      return false;
    }
    for (uint64_t i = 0; i < c.size(); ++i) {
      const uint32_t a = c.base + static_cast<uint32_t>(i);
      if (c.size() > 2 && (i == 0 || i + 1 == c.size())) continue;  // network, broadcast
      out->push_back(a);
    }
    return true;
  }
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    uint32_t a = 0;
    if (!parse_ipv4(text.substr(at, comma - at), &a)) {
      *err = fmt::format("--bind: bad address '{}'", text.substr(at, comma - at));
      return false;
    }
    out->push_back(a);
    at = comma + 1;
  }
  return true;
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "flood: the DoS lab's bounded attack tool (scripts/doslab.sh). Runs only inside a network "
      "namespace other than the initial one, or at 127.0.0.0/8; spoofs only inside a lab "
      "namespace, and only from --src-cidr. Prints one JSON line: what it sent."};
  Options o;
  std::string dst, src_cidr, bind;
  o.seed = std::random_device{}();
  app.add_option("--mode", o.mode, "syn|ack|rst|udp|rudp-initial|connect|slowloris")
      ->required()
      ->check(CLI::IsMember({"syn", "ack", "rst", "udp", "rudp-initial", "connect", "slowloris"}));
  app.add_option("--dst", dst, "Target IPv4 address")->required();
  app.add_option("--port", o.port, "Target port")->required()->check(CLI::Range(1, 65535));
  app.add_option("--rate", o.rate,
                 fmt::format("Packets (connect/slowloris: connects) per second, token-bucket "
                             "paced; at most {:.0f}",
                             kMaxRate))
      ->required()
      ->check(CLI::Range(1.0, kMaxRate));
  app.add_option("--seconds", o.seconds,
                 fmt::format("Hard stop after this long; at most {:.0f}", kMaxSeconds))
      ->required()
      ->check(CLI::Range(0.01, kMaxSeconds));
  app.add_option("--count", o.count, "Stop after this many packets (connects) too (0: no count)");
  app.add_option("--src-cidr", src_cidr,
                 "Spoof source addresses from this prefix (syn/ack/rst/rudp-initial: required; "
                 "udp: optional, raw). Lab namespaces only");
  app.add_option("--bind", bind,
                 "connect/slowloris: local source addresses, round-robin: A.B.C.D[,...] or a CIDR "
                 "(must be local here, e.g. `ip route add local CIDR dev lo`)");
  app.add_option("--size", o.size, "udp: payload bytes")->check(CLI::Range(0, 1472))->capture_default_str();
  app.add_option("--conns", o.conns, fmt::format("connect/slowloris: most held open (at most {})", kMaxConns))
      ->check(CLI::Range(size_t{1}, kMaxConns))
      ->capture_default_str();
  app.add_option("--connect-timeout-ms", o.connect_timeout_ms, "connect/slowloris: give up on a connect after this long")
      ->check(CLI::Range(int64_t{10}, int64_t{600000}))
      ->capture_default_str();
  app.add_option("--interval-ms", o.interval_ms, "slowloris: one byte per connection this often")
      ->check(CLI::Range(int64_t{10}, int64_t{600000}))
      ->capture_default_str();
  app.add_option("--frame-bytes", o.frame_bytes, "slowloris: the frame length it announces (and never finishes)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Random seed (ports, sequence numbers, sources, ids)");
  CLI11_PARSE(app, argc, argv);

  if (!parse_ipv4(dst, &o.dst)) return refuse(fmt::format("--dst '{}' is not an IPv4 address", dst));
  const bool loopback = (o.dst >> 24) == 127;
  const bool initial = in_initial_netns();
  const bool raw_tcp = o.mode == "syn" || o.mode == "ack" || o.mode == "rst";
  const bool conns = o.mode == "connect" || o.mode == "slowloris";
  if ((raw_tcp || o.mode == "rudp-initial") && src_cidr.empty())
    return refuse(fmt::format("--mode {} spoofs its sources: give --src-cidr", o.mode));
  if (conns && !src_cidr.empty())
    return refuse("--src-cidr is for spoofed packets; connect/slowloris take --bind (local addresses)");
  if (!conns && !bind.empty()) return refuse("--bind is for connect/slowloris");
  std::string err;
  if (!src_cidr.empty()) {
    if (parse_cidr(src_cidr, &o.src, &err) < 0) return refuse(err);
    o.spoof = true;
  }
  if (!bind.empty() && !parse_bind(bind, &o.bind, &err)) return refuse(err);
  if (initial && o.spoof)
    return refuse("spoofed sources in the initial network namespace (run it inside a lab namespace)");
  if (initial && !loopback)
    return refuse(fmt::format("{} is not in 127.0.0.0/8 and this is the initial network namespace "
                              "(run it inside a lab namespace, e.g. scripts/doslab.sh)",
                              dst));

  raise_nofile();
  Report rep;
  const int rc = conns ? run_conns(o, &rep) : run_raw(o, &rep);
  const double rate = rep.elapsed_s > 0 ? static_cast<double>(rep.packets) / rep.elapsed_s : 0;
  std::string extra;
  if (conns) {
    extra = fmt::format(
        ",\"established\":{},\"refused\":{},\"reset\":{},\"closed_by_server\":{},\"timeouts\":{},"
        "\"max_open\":{},\"open_at_end\":{}",
        rep.established, rep.refused, rep.reset, rep.closed_by_server, rep.timeouts, rep.max_open,
        rep.open_at_end);
  }
  std::string first_error;
  for (char c : rep.first_error) first_error += (c == '"' || c == '\\') ? '\'' : c;
  std::printf(
      "{\"mode\":\"%s\",\"dst\":\"%s\",\"port\":%u,\"spoofed\":%s,\"packets\":%llu,\"bytes\":%llu,"
      "\"seconds\":%.3f,\"rate\":%.1f,\"target_rate\":%.1f,\"errors\":%llu,\"first_error\":\"%s\"%s}\n",
      o.mode.c_str(), dst.c_str(), o.port, o.spoof ? "true" : "false",
      static_cast<unsigned long long>(rep.packets), static_cast<unsigned long long>(rep.bytes),
      rep.elapsed_s, rate, o.rate, static_cast<unsigned long long>(rep.errors), first_error.c_str(),
      extra.c_str());
  std::fflush(stdout);
  return rc < 0 ? 1 : 0;
}
