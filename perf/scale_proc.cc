#include "perf/scale_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace sluice::perf::scale {

bool write_full(int fd, const void* p, size_t n) {
  const char* b = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool read_full(int fd, void* p, size_t n) {
  char* b = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

namespace {

void put_histogram(std::string& out, const Histogram& h) {
  std::vector<uint64_t> pairs;
  h.for_each_bucket([&](uint64_t v, uint64_t n) {
    pairs.push_back(v);
    pairs.push_back(n);
  });
  const uint64_t count = pairs.size() / 2;
  out.append(reinterpret_cast<const char*>(&count), sizeof count);
  out.append(reinterpret_cast<const char*>(pairs.data()), pairs.size() * sizeof(uint64_t));
}

}  // namespace

bool get_histogram(int fd, Histogram& h) {
  uint64_t count = 0;
  if (!read_full(fd, &count, sizeof count) || count > 1000000) return false;
  std::vector<uint64_t> pairs(count * 2);
  if (!read_full(fd, pairs.data(), pairs.size() * sizeof(uint64_t))) return false;
  for (size_t i = 0; i < count; ++i) h.record_n(pairs[2 * i], pairs[2 * i + 1]);
  return true;
}

int child_main(const ConnsOptions& o, int ctl, int up) {
  ::signal(SIGINT, SIG_IGN);  // the parent decides when to stop
  ::signal(SIGTERM, SIG_DFL);
  ::fcntl(ctl, F_SETFL, O_NONBLOCK);
  Conns conns(o);
  if (conns.init() < 0) return 1;
  conns.watch(ctl);
  auto send = [&](uint32_t type) {
    Record r;
    r.type = type;
    r.ramp_done = conns.ramp_done() ? 1 : 0;
    r.c = conns.counters();
    std::string out(reinterpret_cast<const char*>(&r), sizeof r);
    if (type == 2) {
      put_histogram(out, conns.connect_latency());
      put_histogram(out, conns.rtt());
      put_histogram(out, conns.ping_lateness());
    }
    return write_full(up, out.data(), out.size());
  };
  int64_t last = 0;
  for (;;) {
    const bool readable = conns.step(100);
    const int64_t now = now_ns();
    if (now - last >= 250'000'000) {
      if (!send(1)) return 0;  // the parent is gone
      last = now;
    }
    if (!readable) continue;
    Ctl c;
    for (;;) {
      const ssize_t n = ::read(ctl, &c, sizeof c);
      if (n == 0) return 0;
      if (n != static_cast<ssize_t>(sizeof c)) break;
      switch (c.op) {
        case kRamp: conns.set_target(c.arg); break;
        case kHold: conns.set_phase(Phase::kHold); break;
        case kEnd:
          conns.set_phase(Phase::kLinger);
          if (!send(2)) return 0;
          break;
        case kQuit: conns.close_all(); return 0;
        default: break;
      }
    }
  }
}

}  // namespace sluice::perf::scale
