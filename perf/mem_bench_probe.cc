// mem_bench's probes: RSS, malloc's bytes in use, and the kernel's view
// (/proc/meminfo, /proc/slabinfo, /proc/net/sockstat, /proc/self/smaps).
// Files are read line by line through a stack buffer: no heap allocation.
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "perf/mem_bench.h"

namespace sluice::perf::mem {
namespace {

template <typename F>
bool for_each_line(const char* path, F&& f) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[16384];
  size_t have = 0;
  for (;;) {
    ssize_t r = ::read(fd, buf + have, sizeof buf - have);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    have += static_cast<size_t>(r);
    size_t start = 0;
    for (size_t i = 0; i < have; ++i) {
      if (buf[i] != '\n') continue;
      f(std::string_view(buf + start, i - start));
      start = i + 1;
    }
    std::memmove(buf, buf + start, have - start);
    have -= start;
    if (have == sizeof buf) have = 0;  // a line longer than the buffer: dropped
  }
  if (have > 0) f(std::string_view(buf, have));
  ::close(fd);
  return true;
}

// The next whitespace-separated field of `s`, consumed.
std::string_view next_field(std::string_view& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return s = {};
  size_t e = s.find_first_of(" \t", b);
  std::string_view f = s.substr(b, e == std::string_view::npos ? s.size() - b : e - b);
  s = e == std::string_view::npos ? std::string_view{} : s.substr(e);
  return f;
}

int64_t to_i64(std::string_view s, int base = 10) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v, base);
  return v;
}

// "Key:   123 kB" -> 123 * 1024 when the line starts with key.
bool kb_field(std::string_view line, std::string_view key, int64_t* out) {
  if (line.substr(0, key.size()) != key) return false;
  line.remove_prefix(key.size());
  *out = to_i64(next_field(line)) * 1024;
  return true;
}

}  // namespace

int64_t heap_in_use() {
  struct mallinfo2 mi = ::mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

int64_t rss_bytes() {
  int64_t pages = 0;
  for_each_line("/proc/self/statm", [&](std::string_view l) {
    next_field(l);
    pages = to_i64(next_field(l));
  });
  return pages * ::sysconf(_SC_PAGESIZE);
}

void take(Snapshot& s) {
  s.t.heap = heap_in_use();
  s.t.rss = rss_bytes();
  for_each_line("/proc/self/status", [&](std::string_view l) {
    if (l.substr(0, 8) == "Threads:") {
      l.remove_prefix(8);
      s.t.threads = to_i64(next_field(l));
    }
  });
  for_each_line("/proc/meminfo", [&](std::string_view l) {
    kb_field(l, "Slab:", &s.t.slab) || kb_field(l, "KernelStack:", &s.t.kernel_stack);
  });
  for_each_line("/proc/net/sockstat", [&](std::string_view l) {
    if (l.substr(0, 4) != "TCP:") return;
    while (!l.empty()) {
      if (next_field(l) == "mem") s.t.tcp_mem_pages = to_i64(next_field(l));
    }
  });
  s.nslabs = 0;
  for_each_line("/proc/slabinfo", [&](std::string_view l) {
    if (l.empty() || l[0] == '#' || l.substr(0, 8) == "slabinfo" || s.nslabs == Snapshot::kMaxSlabs) return;
    SlabEntry& e = s.slabs[s.nslabs++];
    std::string_view name = next_field(l);
    const size_t n = std::min(name.size(), sizeof e.name - 1);
    std::memcpy(e.name, name.data(), n);
    e.name[n] = '\0';
    e.active = to_i64(next_field(l));
    next_field(l);  // num_objs
    e.objsize = to_i64(next_field(l));
  });
  // Thread stacks: glibc maps stack + guard and makes the guard PROT_NONE,
  // so each stack is an unnamed rw-p mapping right after a ---p one.
  s.stacks = MapHist{};
  uint64_t prev_end = 0;
  bool prev_guard = false;
  int current = -1;  // the stack-like mapping whose Rss line comes next
  for_each_line("/proc/self/smaps", [&](std::string_view l) {
    std::string_view range = next_field(l);
    const size_t dash = range.find('-');
    if (range.empty() || range.back() == ':' || dash == std::string_view::npos) {  // "Rss:  12 kB"
      if (range == "Rss:" && current >= 0) s.stacks.rss[current] += to_i64(next_field(l)) * 1024;
      return;
    }
    std::string_view perms = next_field(l);
    next_field(l);  // offset
    next_field(l);  // device
    const bool anon = next_field(l) == "0" && next_field(l).empty();
    const auto start = static_cast<uint64_t>(to_i64(range.substr(0, dash), 16));
    const auto end = static_cast<uint64_t>(to_i64(range.substr(dash + 1), 16));
    current = -1;
    if (anon && perms == "rw-p" && prev_guard && prev_end == start) {
      const auto size = static_cast<int64_t>(end - start);
      MapHist& h = s.stacks;
      int i = 0;
      while (i < h.n && h.size[i] != size) ++i;
      if (i == h.n && h.n < MapHist::kMax) h.size[h.n++] = size;
      if (i < h.n) {
        ++h.count[i];
        current = i;
      }
    }
    prev_guard = perms == "---p";
    prev_end = end;
  });
}

size_t slab_growth(const Snapshot& a, const Snapshot& b, Growth* out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < b.nslabs; ++i) {
    const SlabEntry& e = b.slabs[i];
    int64_t before = 0;
    for (size_t j = 0; j < a.nslabs; ++j) {
      if (std::strcmp(a.slabs[j].name, e.name) == 0) before = a.slabs[j].active;
    }
    const int64_t bytes = (e.active - before) * e.objsize;
    if (bytes <= 0) continue;
    // Insertion into the sorted top-`max` list.
    size_t at = std::min(n, max);
    while (at > 0 && out[at - 1].bytes < bytes) --at;
    if (at >= max) continue;
    if (n < max) ++n;
    std::move_backward(out + at, out + n - 1, out + n);
    std::snprintf(out[at].name, sizeof out[at].name, "%s", e.name);
    out[at].bytes = bytes;
  }
  return n;
}

StackGrowth stack_growth(const MapHist& a, const MapHist& b) {
  StackGrowth g;
  for (int i = 0; i < b.n; ++i) {
    int j = 0;
    while (j < a.n && a.size[j] != b.size[i]) ++j;
    const int64_t count = b.count[i] - (j < a.n ? a.count[j] : 0);
    if (count > g.count) g = {b.size[i], count, b.rss[i] - (j < a.n ? a.rss[j] : 0)};
  }
  return g;
}

}  // namespace sluice::perf::mem
