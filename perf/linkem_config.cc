#include "perf/linkem_config.h"

#include <arpa/inet.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

namespace sluice::perf::linkem {

namespace {

// A whole-string finite number, or false.
bool parse_double(const std::string& s, double* out) {
  if (s.empty() || std::isspace(static_cast<unsigned char>(s[0]))) return false;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

std::string ms_to_ns(const std::string& v, int64_t* out, const char* what) {
  double ms = 0;
  if (!parse_double(v, &ms) || ms < 0 || ms > 3'600'000)
    return fmt::format("{} must be milliseconds in [0, 3600000], got '{}'", what, v);
  *out = std::llround(ms * 1e6);
  return "";
}

std::string prob(const std::string& v, double* out, const char* what) {
  double x = 0;
  if (!parse_double(v, &x) || x < 0 || x > 1)
    return fmt::format("{} must be a probability in [0, 1], got '{}' (5% is 0.05)", what, v);
  *out = x;
  return "";
}

std::string count(const std::string& v, int64_t* out, const char* what) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || errno != 0 || end != v.c_str() + v.size() || x < 0)
    return fmt::format("{} must be a whole number >= 0, got '{}'", what, v);
  *out = x;
  return "";
}

}  // namespace

int64_t parse_rate(std::string_view s, std::string* err) {
  std::string lower;
  for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t i = 0;
  while (i < lower.size() && (std::isdigit(static_cast<unsigned char>(lower[i])) || lower[i] == '.')) ++i;
  const std::string number = lower.substr(0, i), unit = lower.substr(i);
  double v = 0;
  struct Unit {
    const char* name;
    double factor;  // to bit/s
  };
  static const Unit kUnits[] = {{"", 1},          {"bit", 1},       {"kbit", 1e3},
                                {"mbit", 1e6},    {"gbit", 1e9},    {"bps", 8},
                                {"kbps", 8e3},    {"mbps", 8e6},    {"gbps", 8e9}};
  const Unit* u = nullptr;
  for (const auto& k : kUnits)
    if (unit == k.name) u = &k;
  if (!parse_double(number, &v) || u == nullptr) {
    *err = fmt::format(
        "bad rate '{}': expected a number with an optional unit bit, kbit, mbit, gbit "
        "(bit/s) or bps, kbps, mbps, gbps (bytes/s), e.g. 100mbit",
        s);
    return -1;
  }
  const double bps = v * u->factor;
  if (bps > 1e12) {
    *err = fmt::format("rate '{}' is above 1 Tbit/s", s);
    return -1;
  }
  if (bps > 0 && bps < 1) {
    *err = fmt::format("rate '{}' is below 1 bit/s", s);
    return -1;
  }
  return std::llround(bps);
}

const std::vector<ParamSpec>& param_specs() {
  static const std::vector<ParamSpec> specs = {
      {"delay-ms", "one-way propagation delay, ms",
       [](LinkParams& p, const std::string& v) { return ms_to_ns(v, &p.delay_ns, "delay-ms"); }},
      {"jitter-ms", "delay varies uniformly in [delay - jitter, delay + jitter], ms",
       [](LinkParams& p, const std::string& v) { return ms_to_ns(v, &p.jitter_ns, "jitter-ms"); }},
      {"loss", "independent random loss probability, 0..1",
       [](LinkParams& p, const std::string& v) { return prob(v, &p.loss, "loss"); }},
      {"ge-p", "Gilbert-Elliott: probability good -> bad per packet (0 = off)",
       [](LinkParams& p, const std::string& v) { return prob(v, &p.ge_p, "ge-p"); }},
      {"ge-r", "Gilbert-Elliott: probability bad -> good per packet (mean burst 1/r)",
       [](LinkParams& p, const std::string& v) { return prob(v, &p.ge_r, "ge-r"); }},
      {"ge-loss-bad", "Gilbert-Elliott: loss probability in the bad state (default 1)",
       [](LinkParams& p, const std::string& v) { return prob(v, &p.ge_loss_bad, "ge-loss-bad"); }},
      {"ge-loss-good", "Gilbert-Elliott: loss probability in the good state (default 0)",
       [](LinkParams& p, const std::string& v) { return prob(v, &p.ge_loss_good, "ge-loss-good"); }},
      {"dup", "duplication probability, 0..1",
       [](LinkParams& p, const std::string& v) { return prob(v, &p.dup, "dup"); }},
      {"reorder", "probability a packet is held back by --reorder-ms (later ones overtake it)",
       [](LinkParams& p, const std::string& v) { return prob(v, &p.reorder, "reorder"); }},
      {"reorder-ms", "how long a reordered packet is held back, ms (default 10)",
       [](LinkParams& p, const std::string& v) { return ms_to_ns(v, &p.reorder_ns, "reorder-ms"); }},
      {"order", "what jitter keeps in order: link (every packet of the direction; default) or flow "
                "(per IP 5-tuple: flows may pass each other)",
       [](LinkParams& p, const std::string& v) {
         if (v != "link" && v != "flow") return fmt::format("order must be link or flow, got '{}'", v);
         p.order_per_flow = v == "flow";
         return std::string();
       }},
      {"rate", "bottleneck rate, e.g. 100mbit, 1gbit, 12.5mbps (bytes/s); 0 = unlimited",
       [](LinkParams& p, const std::string& v) {
         std::string err;
         const int64_t r = parse_rate(v, &err);
         if (r < 0) return err;
         p.rate_bps = r;
         return std::string();
       }},
      {"queue-packets", "drop-tail queue limit in packets in front of the rate (default 1000; 0 = none)",
       [](LinkParams& p, const std::string& v) { return count(v, &p.queue_packets, "queue-packets"); }},
      {"queue-bytes", "drop-tail queue limit in bytes in front of the rate (default 0 = none)",
       [](LinkParams& p, const std::string& v) { return count(v, &p.queue_bytes, "queue-bytes"); }},
  };
  return specs;
}

std::string Subnet::near_addr() const {
  in_addr a{htonl(base + 1)};
  char buf[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, &a, buf, sizeof buf);
}

std::string Subnet::far_addr() const {
  in_addr a{htonl(base + 2)};
  char buf[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, &a, buf, sizeof buf);
}

bool parse_subnet(std::string_view s, Subnet* out, std::string* err) {
  in_addr a{};
  const std::string str(s);
  if (inet_pton(AF_INET, str.c_str(), &a) != 1) {
    *err = fmt::format("bad --subnet '{}': expected an IPv4 address such as 10.201.0.0", s);
    return false;
  }
  const uint32_t base = ntohl(a.s_addr) & ~uint32_t{3};
  const uint32_t first = base >> 24;
  if (first == 0 || first == 127 || first >= 224) {
    *err = fmt::format("--subnet '{}' is not a usable unicast range", s);
    return false;
  }
  out->base = base;
  return true;
}

}  // namespace sluice::perf::linkem
