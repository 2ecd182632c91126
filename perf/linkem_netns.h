// The system side of linkem (perf/linkem.cc): named network namespaces,
// a TUN device inside one, and processes started inside one. Everything
// here needs root (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN for TUN).
//
// Namespaces are made and removed with iproute2 (`ip netns add/del`), so
// they are the ordinary named kind: visible in `ip netns list`, usable with
// `ip netns exec`, and a command started in one sees its own /sys. The TUN
// devices are opened and configured from a short-lived thread that has
// joined the namespace (setns affects only the calling thread); a TUN fd
// stays bound to the namespace it was opened in, so the main thread can
// then read and write both without ever leaving the root namespace.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sluice::perf::linkem {

// A named namespace, deleted (with `ip netns del`) when destroyed.
class Netns {
 public:
  // Creates `name`; on failure returns false and sets *err (`ip`'s own
  // message goes to stderr).
  bool create(const std::string& name, std::string* err);
  // Idempotent; a namespace still holding processes lives on, unnamed,
  // until they exit (the kernel's rule), so kill them first.
  void remove();
  ~Netns() { remove(); }
  const std::string& name() const { return name_; }
  bool created() const { return created_; }

 private:
  std::string name_;
  bool created_ = false;
};

struct TunConfig {
  std::string dev = "linkem0";
  std::string local, peer;  // dotted IPv4: point-to-point, peer is a /32
  int mtu = 1500;
  int txqueuelen = 4096;    // the kernel's queue towards linkem (see .cc)
};

// Opens a TUN device (IFF_TUN | IFF_NO_PI: bare IP packets) inside the
// namespace `ns`, gives it `cfg`'s addresses and MTU, disables IPv6 on it
// (no router solicitations or MLD reports wandering across the link), and
// brings it and `lo` up. Returns a nonblocking, close-on-exec fd, or -1
// and sets *err.
int open_tun_in(const std::string& ns, const TunConfig& cfg, std::string* err);

// Packets the kernel dropped on the TUN device `dev` in namespace `ns`
// because its queue towards linkem was full (tx_dropped in
// /proc/net/dev: linkem did not read fast enough). -1 if unknown.
int64_t tun_drops(const std::string& ns, const std::string& dev);

// Starts argv inside namespace `ns` (through `ip netns exec`) in a process
// group of its own (so the whole group can be signalled), with `env` added
// to the environment, every signal unblocked and at its default. Returns
// the pid, or -1 and sets *err.
pid_t spawn_in(const std::string& ns, const std::vector<std::string>& argv,
               const std::vector<std::pair<std::string, std::string>>& env, std::string* err);

// Runs `ip args...` and waits; returns "" or a description of the failure.
std::string run_ip(const std::vector<std::string>& args);

// Deletes the namespaces a SIGKILLed linkem left: linkem-PID-near/far
// whose PID no longer runs (nothing else can clean them up). Returns how
// many it deleted.
int delete_stale_namespaces();

// Whether a TUN device can be opened at all (checked before anything is
// created, for a clear message).
bool tun_available(std::string* err);

}  // namespace sluice::perf::linkem
