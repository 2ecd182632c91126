// linkem: a userspace link emulator (this kernel has no netem). See
// docs/LINKEM.md.
//
//   linkem [link options] [--near 'shell command'] -- CMD [ARGS...]
//
//       near namespace                                  far namespace
//   +---------------------+                         +---------------------+
//   | linkem0 10.201.0.1  |                         | linkem0 10.201.0.2  |
//   |   --near command    |                         |   CMD (the server)  |
//   +---------|-----------+                         +----------|----------+
//             | TUN fd         linkem (root ns)         TUN fd |
//             +------> [ up model: near -> far ] -------------->+
//             +<------ [ down model: far -> near ] <------------+
//
// linkem creates both namespaces and a TUN device in each, then forwards
// every IP packet read from one TUN through that direction's LinkModel
// (perf/linkem_model.h: loss, duplication, queue and rate, delay, jitter,
// reordering) and writes it to the other TUN when the model releases it.
// One thread: epoll over the two TUN fds, a timerfd armed for the earliest
// release or deadline, and a signalfd (SIGCHLD, SIGINT, SIGTERM, SIGHUP).
//
// CMD runs in the far namespace, the --near command (sh -c) in the near
// one. linkem waits for the near command (or CMD when there is no near
// command), then stops the other (SIGTERM to its process group, SIGKILL
// after --grace-ms), prints per-direction statistics on stderr (and
// --json), deletes both namespaces and exits with that command's status.
// --duration bounds every run (exit 124 when it ends one). The namespaces
// are deleted on every path out of main but SIGKILL.
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "perf/linkem_cli.h"
#include "perf/linkem_model.h"
#include "perf/linkem_netns.h"
#include "perf/linkem_report.h"

namespace {

using namespace sluice::perf::linkem;

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

// One emulated direction: packets read from `in` go through `model` and
// are written to `out`.
struct Direction {
  Direction(const char* n, const char* r) : name(n), route(r) {}
  const char* name;   // "up" / "down"
  const char* route;  // "near->far"
  int in = -1, out = -1;
  std::unique_ptr<LinkModel> model;
  int64_t write_errors = 0;
  int last_write_errno = 0;
};

// A child command (the far CMD or the --near command).
struct Child {
  explicit Child(const char* s) : side(s) {}
  const char* side;  // "far" / "near"
  pid_t pid = -1;    // also its process group id
  bool running = false;
  int status = 0;    // wait status once it has exited
};

int exit_code(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

// ------------------------------------------------------------- the run --

class Linkem {
 public:
  explicit Linkem(Options o) : o_(std::move(o)) {}
  ~Linkem();
  int run();

 private:
  bool setup();
  void loop();
  void read_packets(Direction& d, int64_t now);
  void release_packets(Direction& d, int64_t now);
  void arm_timer(int64_t deadline);
  void on_signal();
  void reap();
  void begin_stop(const char* why, std::optional<int> status);
  void kill_all(int sig);
  void report(int status);

  Options o_;
  Netns near_ns_, far_ns_;
  Direction up_{"up", "near->far"}, down_{"down", "far->near"};
  Child far_{"far"}, near_{"near"};
  Child* primary_ = nullptr;
  int ep_ = -1, tfd_ = -1, sfd_ = -1;
  int64_t armed_ = -1;
  int64_t start_ns_ = 0, end_ns_ = 0;
  int64_t stop_deadline_ = -1;  // SIGKILL everything left at this time
  bool stopping_ = false, done_ = false;
  bool child_exited_ = false;  // a SIGCHLD came: reap() (one waitpid per exit, not per wake-up)
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(65536);  // one read; larger than any MTU
  std::optional<int> status_;
  sigset_t sigs_{};
};

Linkem::~Linkem() {
  // Children first (a namespace with processes in it outlives its name),
  // then the TUN devices, then the namespaces (Netns destructors).
  kill_all(SIGKILL);
  reap();
  for (int fd : {up_.in, down_.in, ep_, tfd_, sfd_})
    if (fd >= 0) close(fd);
  near_ns_.remove();
  far_ns_.remove();
}

bool Linkem::setup() {
  std::string err;
  const std::string base = fmt::format("linkem-{}", getpid());
  if (!near_ns_.create(base + "-near", &err) || !far_ns_.create(base + "-far", &err)) {
    spdlog::error("{}", err);
    return false;
  }
  TunConfig near_tun{"linkem0", o_.subnet.near_addr(), o_.subnet.far_addr(), o_.mtu};
  TunConfig far_tun{"linkem0", o_.subnet.far_addr(), o_.subnet.near_addr(), o_.mtu};
  const int near_fd = open_tun_in(near_ns_.name(), near_tun, &err);
  if (near_fd < 0) {
    spdlog::error("near TUN: {}", err);
    return false;
  }
  up_.in = down_.out = near_fd;
  const int far_fd = open_tun_in(far_ns_.name(), far_tun, &err);
  if (far_fd < 0) {
    spdlog::error("far TUN: {}", err);
    return false;
  }
  up_.out = down_.in = far_fd;
  up_.model = std::make_unique<LinkModel>(o_.up, o_.seed, 0);
  down_.model = std::make_unique<LinkModel>(o_.down, o_.seed, 1);

  ep_ = epoll_create1(EPOLL_CLOEXEC);
  tfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  sfd_ = signalfd(-1, &sigs_, SFD_NONBLOCK | SFD_CLOEXEC);
  if (ep_ < 0 || tfd_ < 0 || sfd_ < 0) {
    const int e = errno;
    spdlog::error("epoll/timerfd/signalfd: {}", std::strerror(e));
    return false;
  }
  for (int fd : {near_fd, far_fd, tfd_, sfd_}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) < 0) {
      const int e = errno;
      spdlog::error("epoll_ctl: {}", std::strerror(e));
      return false;
    }
  }

  if (!o_.quiet) {
    spdlog::info("near {} {} <-> far {} {} (mtu {}, seed {})", near_ns_.name(), o_.subnet.near_addr(),
                 far_ns_.name(), o_.subnet.far_addr(), o_.mtu, o_.seed);
    spdlog::info("up   (near->far): {}", describe(o_.up));
    spdlog::info("down (far->near): {}", describe(o_.down));
  }
  const std::vector<std::pair<std::string, std::string>> env = {
      {"LINKEM_NEAR_ADDR", o_.subnet.near_addr()},
      {"LINKEM_FAR_ADDR", o_.subnet.far_addr()},
      {"LINKEM_NEAR_NS", near_ns_.name()},
      {"LINKEM_FAR_NS", far_ns_.name()},
  };
  // The far side (the server) first, so it has a head start on the client.
  if (!o_.far_cmd.empty()) {
    far_.pid = spawn_in(far_ns_.name(), o_.far_cmd, env, &err);
    if (far_.pid < 0) {
      spdlog::error("far command: {}", err);
      return false;
    }
    far_.running = true;
    primary_ = &far_;
  }
  if (!o_.near_cmd.empty()) {
    near_.pid = spawn_in(near_ns_.name(), {"sh", "-c", o_.near_cmd}, env, &err);
    if (near_.pid < 0) {
      spdlog::error("near command: {}", err);
      return false;
    }
    near_.running = true;
    primary_ = &near_;
  }
  return true;
}

void Linkem::read_packets(Direction& d, int64_t now) {
  // Bounded per wake-up so the other direction and the timers get a turn.
  for (int i = 0; i < 256; ++i) {
    const ssize_t n = read(d.in, buf_.data(), buf_.size());
    if (n < 0) {
      const int e = errno;
      if (e == EINTR) continue;
      if (e != EAGAIN) spdlog::warn("{}: read: {}", d.name, std::strerror(e));
      return;
    }
    const uint64_t flow = d.model->params().order_per_flow ? flow_key(buf_.data(), static_cast<size_t>(n)) : 0;
    d.model->offer(now, Bytes(buf_.begin(), buf_.begin() + n), flow);
  }
}

void Linkem::release_packets(Direction& d, int64_t now) {
  Bytes pkt;
  while (d.model->pop_due(now, pkt)) {
    if (write(d.out, pkt.data(), pkt.size()) < 0) {
      // The stack refused it (e.g. the device is going away): counted,
      // not fatal.
      const int e = errno;
      ++d.write_errors;
      d.last_write_errno = e;
    }
  }
}

void Linkem::arm_timer(int64_t deadline) {
  if (deadline == armed_) return;
  itimerspec its{};
  if (deadline >= 0) {
    // 0 would disarm: a deadline already passed still fires at once.
    const int64_t at = std::max<int64_t>(deadline, 1);
    its.it_value.tv_sec = at / 1'000'000'000;
    its.it_value.tv_nsec = at % 1'000'000'000;
  }
  timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
  armed_ = deadline;
}

void Linkem::kill_all(int sig) {
  // The whole group of each command. A group's id cannot be reused while
  // any member lives; once it is empty this gives ESRCH (pids are handed
  // out cyclically, so reuse within a run's grace period is not a concern).
  for (Child* c : {&far_, &near_})
    if (c->pid > 0) kill(-c->pid, sig);
  // Orphans that left their group (setsid daemons) were reparented to us
  // (PR_SET_CHILD_SUBREAPER): signal our remaining children directly.
  if (sig == SIGKILL) {
    const std::string path = fmt::format("/proc/self/task/{}/children", getpid());
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      long pid = 0;
      while (std::fscanf(f, "%ld", &pid) == 1) kill(static_cast<pid_t>(pid), SIGKILL);
      std::fclose(f);
    }
  }
}

// Collects every exited child (ours, or orphans reparented to us).
void Linkem::reap() {
  for (;;) {
    int st = 0;
    const pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid <= 0) break;
    for (Child* c : {&far_, &near_}) {
      if (c->pid != pid || !c->running) continue;
      c->running = false;
      c->status = st;
      if (c == primary_ && !stopping_) {
        spdlog::debug("{} command exited", c->side);
        begin_stop(nullptr, exit_code(st));
      } else if (!stopping_) {
        spdlog::warn("{} command exited early (status {}), the link keeps running", c->side,
                     exit_code(st));
      }
    }
  }
}

void Linkem::begin_stop(const char* why, std::optional<int> status) {
  if (!status_) status_ = status;
  if (stopping_) return;
  stopping_ = true;
  if (why != nullptr) spdlog::warn("{}: stopping", why);
  kill_all(SIGTERM);
  stop_deadline_ = now_ns() + o_.grace_ms * 1'000'000LL;
}

void Linkem::on_signal() {
  signalfd_siginfo si{};
  while (read(sfd_, &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGCHLD) {
      child_exited_ = true;
      continue;
    }
    const int sig = static_cast<int>(si.ssi_signo);
    if (stopping_) {  // a second Ctrl-C: no more grace
      stop_deadline_ = now_ns();
      continue;
    }
    begin_stop(strsignal(sig), 128 + sig);
  }
}

void Linkem::loop() {
  std::array<epoll_event, 8> evs{};
  while (!done_) {
    const int n = epoll_wait(ep_, evs.data(), static_cast<int>(evs.size()), -1);
    if (n < 0) {
      const int e = errno;
      if (e == EINTR) continue;
      spdlog::error("epoll_wait: {}", std::strerror(e));
      begin_stop("epoll failed", 1);
      break;
    }
    int64_t now = now_ns();
    for (int i = 0; i < n; ++i) {
      const int fd = evs[i].data.fd;
      if (fd == up_.in) {
        read_packets(up_, now);
      } else if (fd == down_.in) {
        read_packets(down_, now);
      } else if (fd == tfd_) {
        uint64_t ticks = 0;
        if (read(tfd_, &ticks, sizeof ticks) < 0) { /* EAGAIN: raced with a re-arm */ }
        armed_ = -1;  // expired (or re-armed below)
      } else if (fd == sfd_) {
        on_signal();
      }
    }
    if (child_exited_) {
      child_exited_ = false;
      reap();
    }
    now = now_ns();
    release_packets(up_, now);
    release_packets(down_, now);

    if (!stopping_ && now >= end_ns_) begin_stop("--duration reached", 124);
    if (stopping_) {
      if (!far_.running && !near_.running) {
        done_ = true;
        break;
      }
      if (now >= stop_deadline_) {
        kill_all(SIGKILL);
        done_ = true;  // the destructor reaps what SIGKILL left
        break;
      }
    }
    // No commands at all: run until --duration or a signal.
    int64_t next = stopping_ ? stop_deadline_ : end_ns_;
    for (const Direction* d : {&up_, &down_}) {
      const int64_t r = d->model->next_release_ns();
      if (r >= 0) next = std::min(next, r);
    }
    arm_timer(next);
  }
}

int Linkem::run() {
  // Signals arrive through the signalfd; children get them unblocked.
  sigemptyset(&sigs_);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&sigs_, s);
  sigprocmask(SIG_BLOCK, &sigs_, nullptr);
  // Grandchildren orphaned inside the namespaces come to us, so none
  // survives the run.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  // Releases are timed to the microsecond; the default 50 us slack of
  // timers would add to every delay.
  prctl(PR_SET_TIMERSLACK, 1);
  if (!setup()) return 1;
  start_ns_ = now_ns();
  end_ns_ = start_ns_ + static_cast<int64_t>(o_.duration_s * 1e9);
  loop();
  // Reap what is left so the exit status is known; SIGKILL always wins.
  for (int i = 0; i < 200 && (far_.running || near_.running); ++i) {
    reap();
    if (far_.running || near_.running) usleep(10'000);
  }
  // Set by the first reason to stop: the primary command's exit, 124 for
  // --duration, 128 + N for signal N.
  const int status = status_.value_or(0);
  report(status);
  return status;
}

void Linkem::report(int status) {
  RunReport r;
  r.near_ns = near_ns_.name();
  r.far_ns = far_ns_.name();
  r.near_addr = o_.subnet.near_addr();
  r.far_addr = o_.subnet.far_addr();
  r.seed = o_.seed;
  r.mtu = o_.mtu;
  r.seconds = (now_ns() - start_ns_) / 1e9;
  r.exit_status = status;
  // The kernel's drops at each TUN's queue towards linkem count against
  // the direction that reads that TUN: linkem fell behind the sender.
  const std::pair<Direction*, std::string> inputs[] = {{&up_, near_ns_.name()}, {&down_, far_ns_.name()}};
  for (const auto& [d, ns] : inputs) {
    DirectionReport& dr = d == &up_ ? r.up : r.down;
    dr.name = d->name;
    dr.route = d->route;
    dr.params = d->model->params();
    dr.stats = d->model->stats();
    dr.delay = d->model->delay();
    dr.in_flight = d->model->in_flight();
    dr.write_errors = d->write_errors;
    dr.last_write_errno = d->last_write_errno;
    dr.tun_drops = tun_drops(ns, "linkem0");
  }
  print_report(r);
  if (o_.json_path.empty()) return;
  if (FILE* f = std::fopen(o_.json_path.c_str(), "w")) {
    std::fputs(report_json(r).c_str(), f);
    std::fclose(f);
  } else {
    const int e = errno;
    spdlog::error("cannot write {}: {}", o_.json_path, std::strerror(e));
  }
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_st("linkem"));
  spdlog::set_pattern("linkem: %^%l%$: %v");
  Options o;
  if (auto rc = parse_options(argc, argv, o)) return *rc;
  if (geteuid() != 0) {
    spdlog::error("linkem needs root (it creates network namespaces and TUN devices)");
    return 1;
  }
  if (o.cleanup_stale) {
    fmt::print(stderr, "linkem: {} stale namespace(s) deleted\n", delete_stale_namespaces());
    return 0;
  }
  if (std::string err; !tun_available(&err)) {
    spdlog::error("{}", err);
    return 1;
  }
  Linkem lk(std::move(o));
  return lk.run();
}
