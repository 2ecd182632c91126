#include "perf/linkem_netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sched.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include <fmt/format.h>

extern char** environ;

namespace sluice::perf::linkem {

namespace {

std::string errstr(int e) { return std::strerror(e); }

const char* ip_path() {
  static const char* const kPaths[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
  for (const char* p : kPaths)
    if (access(p, X_OK) == 0) return p;
  return nullptr;
}

// posix_spawn with the signal state a child must not inherit from linkem
// (which blocks SIGINT, SIGTERM, SIGHUP and SIGCHLD for its signalfd).
pid_t spawn(const char* path, const std::vector<std::string>& argv, char* const envp[],
            bool own_group, std::string* err) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, dfl;
  sigemptyset(&none);
  sigemptyset(&dfl);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE, SIGQUIT}) sigaddset(&dfl, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &dfl);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (own_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path, nullptr, &attr, args.data(), envp);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    *err = fmt::format("cannot start {}: {}", path, errstr(rc));
    return -1;
  }
  return pid;
}

// ifreq-based configuration of one interface, from inside its namespace.
struct IfCtl {
  int sock = -1;
  std::string dev;
  std::string* err;

  bool call(unsigned long req, ifreq& ifr, const char* what) {
    std::strncpy(ifr.ifr_name, dev.c_str(), IFNAMSIZ - 1);
    if (ioctl(sock, req, &ifr) < 0) {
      const int e = errno;
      *err = fmt::format("{} on {}: {}", what, dev, errstr(e));
      return false;
    }
    return true;
  }
  bool addr(unsigned long req, const std::string& a, const char* what) {
    ifreq ifr{};
    auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, a.c_str(), &sin->sin_addr) != 1) {
      *err = fmt::format("bad address '{}'", a);
      return false;
    }
    return call(req, ifr, what);
  }
  bool up() {
    ifreq ifr{};
    if (!call(SIOCGIFFLAGS, ifr, "SIOCGIFFLAGS")) return false;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    return call(SIOCSIFFLAGS, ifr, "bringing up");
  }
};

// The body of open_tun_in, run on a thread that has joined the namespace.
int open_tun_here(const TunConfig& cfg, std::string* err) {
  const int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    *err = fmt::format("open /dev/net/tun: {}", errstr(e));
    return -1;
  }
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, cfg.dev.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    const int e = errno;
    *err = fmt::format("TUNSETIFF {}: {}", cfg.dev, errstr(e));
    close(fd);
    return -1;
  }
  // Before the device goes up, so it never sends IPv6 autoconfiguration
  // traffic. /proc/sys/net resolves against the opening thread's
  // namespace, so this touches only ours. Best effort: no IPv6, no file.
  const std::string v6 = fmt::format("/proc/sys/net/ipv6/conf/{}/disable_ipv6", cfg.dev);
  if (int s = open(v6.c_str(), O_WRONLY | O_CLOEXEC); s >= 0) {
    if (write(s, "1", 1) != 1) { /* best effort */ }
    close(s);
  }
  const int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    const int e = errno;
    *err = fmt::format("socket: {}", errstr(e));
    close(fd);
    return -1;
  }
  IfCtl tun{sock, cfg.dev, err}, lo{sock, "lo", err};
  ifreq mtu{}, qlen{};
  mtu.ifr_mtu = cfg.mtu;
  // The TUN's queue towards us: packets the stack sends while linkem is
  // busy wait here; beyond it the kernel drops them before the model sees
  // them. Deeper than the default 500 so that bursts reach the model.
  qlen.ifr_qlen = cfg.txqueuelen;
  ifreq mask{};
  auto* m = reinterpret_cast<sockaddr_in*>(&mask.ifr_netmask);
  m->sin_family = AF_INET;
  m->sin_addr.s_addr = htonl(0xffffffff);
  const bool ok = tun.addr(SIOCSIFADDR, cfg.local, "setting the address") &&
                  tun.addr(SIOCSIFDSTADDR, cfg.peer, "setting the peer address") &&
                  tun.call(SIOCSIFNETMASK, mask, "setting the netmask") &&
                  tun.call(SIOCSIFMTU, mtu, "setting the MTU") &&
                  tun.call(SIOCSIFTXQLEN, qlen, "setting txqueuelen") && tun.up() && lo.up();
  close(sock);
  if (!ok) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string run_ip(const std::vector<std::string>& args) {
  const char* ip = ip_path();
  if (ip == nullptr) return "iproute2's `ip` was not found (apt-get install iproute2)";
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string err;
  const pid_t pid = spawn(ip, argv, environ, false, &err);
  if (pid < 0) return err;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fmt::format("waitpid: {}", errstr(errno));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  std::string cmd = "ip";
  for (const auto& a : args) cmd += " " + a;
  return fmt::format("`{}` failed (status {:#x})", cmd, status);
}

bool Netns::create(const std::string& name, std::string* err) {
  name_ = name;
  if (std::string e = run_ip({"netns", "add", name}); !e.empty()) {
    *err = e;
    if (access(("/run/netns/" + name).c_str(), F_OK) == 0)
      *err += fmt::format(" ({} exists: left by a killed run? linkem --cleanup-stale)", name);
    return false;
  }
  created_ = true;
  return true;
}

void Netns::remove() {
  if (!created_) return;
  created_ = false;
  if (std::string e = run_ip({"netns", "del", name_}); !e.empty())
    fmt::print(stderr, "linkem: could not delete namespace {}: {}\n", name_, e);
}

namespace {

// Runs fn() on a thread that has joined namespace `ns`; false (and *err)
// if it could not join. The thread ends, still inside, when fn returns.
template <typename F>
bool run_in_ns(const std::string& ns, std::string* err, F fn) {
  const std::string path = "/run/netns/" + ns;
  const int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    const int e = errno;
    *err = fmt::format("open {}: {}", path, errstr(e));
    return false;
  }
  bool joined = false;
  std::thread t([&] {
    if (setns(nsfd, CLONE_NEWNET) < 0) {
      const int e = errno;
      *err = fmt::format("setns {}: {}", path, errstr(e));
      return;
    }
    joined = true;
    fn();
  });
  t.join();
  close(nsfd);
  return joined;
}

}  // namespace

int open_tun_in(const std::string& ns, const TunConfig& cfg, std::string* err) {
  int fd = -1;
  run_in_ns(ns, err, [&] { fd = open_tun_here(cfg, err); });
  return fd;
}

int64_t tun_drops(const std::string& ns, const std::string& dev) {
  int64_t drops = -1;
  std::string err;
  run_in_ns(ns, &err, [&] {
    // /proc/thread-self/net is this thread's namespace (/proc/self/net
    // would be the main thread's).
    FILE* f = std::fopen("/proc/thread-self/net/dev", "r");
    if (f == nullptr) return;
    char line[512];
    const std::string key = dev + ":";
    while (std::fgets(line, sizeof line, f) != nullptr) {
      const char* p = line;
      while (*p == ' ') ++p;
      if (std::strncmp(p, key.c_str(), key.size()) != 0) continue;
      long long v[16] = {};
      // rx: bytes packets errs drop fifo frame compressed multicast,
      // tx: bytes packets errs drop ...
      if (std::sscanf(p + key.size(), "%lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld", &v[0],
                      &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11]) == 12)
        drops = v[11];
    }
    std::fclose(f);
  });
  return drops;
}

pid_t spawn_in(const std::string& ns, const std::vector<std::string>& argv,
               const std::vector<std::pair<std::string, std::string>>& env, std::string* err) {
  const char* ip = ip_path();
  if (ip == nullptr) {
    *err = "iproute2's `ip` was not found (apt-get install iproute2)";
    return -1;
  }
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    bool replaced = false;
    for (const auto& [k, v] : env) replaced |= std::strncmp(*e, (k + "=").c_str(), k.size() + 1) == 0;
    if (!replaced) envs.emplace_back(*e);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> full{"ip", "netns", "exec", ns};
  full.insert(full.end(), argv.begin(), argv.end());
  return spawn(ip, full, envp.data(), true, err);
}

int delete_stale_namespaces() {
  int removed = 0;
  DIR* dir = opendir("/run/netns");
  if (dir == nullptr) return 0;
  std::vector<std::string> names;
  while (dirent* e = readdir(dir)) names.emplace_back(e->d_name);
  closedir(dir);
  for (const auto& n : names) {
    long pid = 0;
    char side[8] = {};
    if (std::sscanf(n.c_str(), "linkem-%ld-%5s", &pid, side) != 2 || pid <= 0) continue;
    if (n != fmt::format("linkem-{}-{}", pid, side) || (std::string(side) != "near" && std::string(side) != "far"))
      continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // still running
    if (std::string err = run_ip({"netns", "del", n}); !err.empty()) {
      fmt::print(stderr, "linkem: {}\n", err);
      continue;
    }
    fmt::print(stderr, "linkem: deleted stale namespace {}\n", n);
    ++removed;
  }
  return removed;
}

bool tun_available(std::string* err) {
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    *err = fmt::format("cannot open /dev/net/tun: {}{}", errstr(e),
                       e == ENOENT ? " (no TUN support: modprobe tun, or mknod /dev/net/tun c 10 200)" : "");
    return false;
  }
  close(fd);
  return true;
}

}  // namespace sluice::perf::linkem
