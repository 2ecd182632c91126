#include "perf/proc_sample.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace sluice::perf {

namespace {

bool read_file(const char* path, char* buf, size_t cap) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::read(fd, buf, cap - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}

// utime + stime from /proc/<pid>/stat ("self" for this process).
bool stat_ticks(const std::string& pid, int64_t* ticks) {
  char buf[1024];
  if (!read_file(("/proc/" + pid + "/stat").c_str(), buf, sizeof buf)) return false;
  const char* p = std::strrchr(buf, ')');
  if (!p) return false;
  // After ") ": field 3 (state) ... utime is field 14, stime field 15.
  p += 2;
  int field = 3;
  long long ut = 0, st = 0;
  while (*p && field < 14) {
    if (*p++ == ' ') ++field;
  }
  if (std::sscanf(p, "%lld %lld", &ut, &st) != 2) return false;
  *ticks = ut + st;
  return true;
}

}  // namespace

ProcSample sample_proc(int64_t pid) {
  ProcSample s;
  if (pid <= 0) return s;
  const std::string p = std::to_string(pid);
  if (!stat_ticks(p, &s.ticks)) return s;
  const std::string dir = "/proc/" + p + "/task";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return s;
  char buf[4096];
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string t = dir + "/" + e->d_name;
    if (read_file((t + "/schedstat").c_str(), buf, sizeof buf)) {
      s.run_ns += std::strtoll(buf, nullptr, 10);
    }
    if (read_file((t + "/status").c_str(), buf, sizeof buf)) {
      if (const char* v = std::strstr(buf, "\nvoluntary_ctxt_switches:")) {
        s.vol += std::strtoll(v + 25, nullptr, 10);
      }
      if (const char* v = std::strstr(buf, "\nnonvoluntary_ctxt_switches:")) {
        s.invol += std::strtoll(v + 28, nullptr, 10);
      }
    }
    ++s.threads;
  }
  ::closedir(d);
  s.ok = true;
  return s;
}

int64_t busy_ticks() {
  char buf[512];
  if (!read_file("/proc/stat", buf, sizeof buf)) return 0;
  long long v[8] = {};
  if (std::sscanf(buf, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4],
                  &v[5], &v[6], &v[7]) != 8) {
    return 0;
  }
  return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

namespace {

// The number after `key` (a line start) in text, or -1.
int64_t field_after(const std::string& text, const std::string& key) {
  size_t at = 0;
  if (text.compare(0, key.size(), key) != 0) {
    at = text.find("\n" + key);
    if (at == std::string::npos) return -1;
    ++at;
  }
  return std::strtoll(text.c_str() + at + key.size(), nullptr, 10);
}

std::string slurp(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

}  // namespace

int64_t pss_kib(int64_t pid) {
  return field_after(slurp("/proc/" + std::to_string(pid) + "/smaps_rollup"), "Pss:");
}

std::vector<int64_t> children_of(int64_t pid) {
  std::vector<int64_t> out;
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(task.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string kids = slurp(task + "/" + e->d_name + "/children");
    char* p = const_cast<char*>(kids.c_str());
    for (;;) {
      char* end = nullptr;
      const long long v = std::strtoll(p, &end, 10);
      if (end == p) break;
      out.push_back(v);
      p = end;
    }
  }
  ::closedir(d);
  return out;
}

int64_t meminfo_kib(const std::string& field) {
  return field_after(slurp("/proc/meminfo"), field + ":");
}

}  // namespace sluice::perf
