#include "core/workers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>

#include <spdlog/spdlog.h>

#include "core/backoff.h"
#include "core/signals.h"

namespace sluice {

using Clock = std::chrono::steady_clock;

// One worker's counters in the shared mapping, written by the worker and
// read by the supervisor. Lock-free atomics are address-free, so they work
// across processes; a cache line each keeps the writers apart.
struct alignas(64) Supervisor::Slot {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> messages{0};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);

Supervisor::Slot* Supervisor::slot(size_t i) const {
  if (slots_ == nullptr || i >= options_.count) return nullptr;
  return reinterpret_cast<Slot*>(static_cast<char*>(slots_) + i * slot_stride_);
}

std::atomic<uint64_t>* Supervisor::words(size_t i) const {
  Slot* s = slot(i);
  return s == nullptr ? nullptr : reinterpret_cast<std::atomic<uint64_t>*>(s + 1);
}

struct Supervisor::Worker {
  explicit Worker(size_t i, const WorkerOptions& o)
      : index(i), backoff(o.restart_initial, o.restart_max, 0x5eed0000 + i) {}
  size_t index;
  pid_t pid = 0;
  int ready_fd = -1;  // read end of the ready pipe until ready() or exit
  bool ready = false;
  uint64_t starts = 0;
  std::string last_exit;
  Clock::time_point started_at{};
  bool restart_pending = false;
  Clock::time_point restart_at{};
  Backoff backoff;
};

namespace {

sigset_t supervisor_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  return set;
}

std::string describe(int status) {
  char buf[96];
  if (WIFEXITED(status)) {
    std::snprintf(buf, sizeof buf, "exited %d", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    std::snprintf(buf, sizeof buf, "killed by signal %d (%s)", WTERMSIG(status),
                  ::strsignal(WTERMSIG(status)));
  } else {
    std::snprintf(buf, sizeof buf, "status %#x", status);
  }
  return buf;
}

int ms_until(Clock::time_point t) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now());
  if (left.count() <= 0) return 0;
  return left.count() > 60000 ? 60000 : static_cast<int>(left.count()) + 1;
}

}  // namespace

// ---- WorkerContext (in the worker) ----

void WorkerContext::ready() {
  if (ready_fd_ < 0) return;
  const char byte = 'r';
  while (::write(ready_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  ::close(ready_fd_);
  ready_fd_ = -1;
}

void WorkerContext::publish(const WorkerCounters& c) {
  Supervisor::Slot* slot = sup_.slot(index_);
  if (slot == nullptr) return;  // the sidecar has no counters
  slot->connections.store(c.connections, std::memory_order_relaxed);
  slot->accepted.store(c.accepted, std::memory_order_relaxed);
  slot->messages.store(c.messages, std::memory_order_relaxed);
}

void WorkerContext::publish_words(std::span<const uint64_t> in) {
  std::atomic<uint64_t>* w = sup_.words(index_);
  if (w == nullptr) return;
  const size_t n = std::min(in.size(), sup_.options_.extra_words);
  for (size_t i = 0; i < n; ++i) w[i].store(in[i], std::memory_order_relaxed);
}

bool WorkerContext::read_words(size_t worker, std::span<uint64_t> out) const {
  const std::atomic<uint64_t>* w = sup_.words(worker);
  if (w == nullptr) return false;
  const size_t n = std::min(out.size(), sup_.options_.extra_words);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = i < n ? w[i].load(std::memory_order_relaxed) : 0;
  }
  return true;
}

int WorkerContext::serve(const std::function<WorkerCounters()>& sample) {
  for (;;) {
    if (sample) publish(sample());
    if (int sig = wait_for_stop_signal(publish_interval_); sig != 0) {
      if (sample) publish(sample());
      return sig;
    }
  }
}

// ---- Supervisor ----

Supervisor::Supervisor(WorkerOptions options, WorkerMain main)
    : options_(options), main_(std::move(main)) {
  const size_t processes = options_.count + (options_.sidecar ? 1 : 0);
  for (size_t i = 0; i < processes; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, options_));
  }
}

Supervisor::~Supervisor() {
  for (auto& w : workers_) {
    if (w->pid > 0) ::kill(w->pid, SIGKILL);
  }
  for (auto& w : workers_) {
    if (w->pid > 0) {
      while (::waitpid(w->pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    if (w->ready_fd >= 0) ::close(w->ready_fd);
  }
  if (signal_fd_ >= 0) {
    ::close(signal_fd_);
    // Nothing of ours may stay pending once the signals are unblocked.
    const sigset_t set = supervisor_signals();
    timespec zero{0, 0};
    while (::sigtimedwait(&set, nullptr, &zero) > 0) {
    }
    ::pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
  }
  if (slots_ != nullptr) ::munmap(slots_, slots_bytes_);
}

bool Supervisor::migrate_requests() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_migrate_req");
  int v = 0;
  return (in >> v) && v != 0;
}

int Supervisor::spawn(size_t index) {
  Worker& w = *workers_[index];
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return -errno;
  if (Slot* slot = this->slot(index)) {
    slot->connections.store(0);
    slot->accepted.store(0);
    slot->messages.store(0);
    std::atomic<uint64_t>* w = words(index);
    for (size_t i = 0; i < options_.extra_words; ++i) w[i].store(0);
  }
  std::fflush(nullptr);  // or the child would print the parent's buffered output again
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return -err;
  }
  if (pid == 0) {
    // The worker: only this thread exists here. Drop the supervisor's
    // descriptors, die with it, take stop signals in serve().
    ::close(fds[0]);
    ::close(signal_fd_);
    for (auto& other : workers_) {
      if (other->ready_fd >= 0) ::close(other->ready_fd);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the supervisor died meanwhile
    ::signal(SIGUSR1, SIG_IGN);              // statistics are the supervisor's
    if (auto logger = spdlog::default_logger()) {  // lines say which worker wrote them
      spdlog::set_default_logger(logger->clone(logger->name() + "/w" + std::to_string(index)));
    }
    sigset_t mask = saved_mask_;
    sigdelset(&mask, SIGCHLD);
    sigdelset(&mask, SIGUSR1);
    ::pthread_sigmask(SIG_SETMASK, &mask, nullptr);
    block_stop_signals();
    WorkerContext ctx(index, options_.count, fds[1], *this, options_.publish_interval);
    int rc = 1;
    try {
      rc = index < options_.count ? main_(ctx) : options_.sidecar(ctx);
    } catch (const std::exception& e) {
      spdlog::error("worker {}: {}", index, e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);  // not exit(): the supervisor's static state is not ours to tear down
  }
  ::close(fds[1]);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  w.pid = pid;
  w.ready_fd = fds[0];
  w.ready = false;
  w.starts += 1;
  w.started_at = Clock::now();
  w.restart_pending = false;
  return 0;
}

int Supervisor::start(std::string* error) {
  auto fail = [&](int rc, const std::string& what) {
    if (error) *error = what;
    return rc;
  };
  if (options_.count == 0) return fail(-EINVAL, "workers: count must be at least 1");
  if (signal_fd_ >= 0) return fail(-EALREADY, "workers: already started");
  // Each slot starts on its own cache line (the writers stay apart).
  slot_stride_ = (sizeof(Slot) + options_.extra_words * sizeof(uint64_t) + 63) / 64 * 64;
  slots_bytes_ = slot_stride_ * options_.count;
  void* mem = ::mmap(nullptr, slots_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                     -1, 0);
  if (mem == MAP_FAILED) return fail(-errno, std::string("workers: mmap: ") + ::strerror(errno));
  slots_ = mem;

  const sigset_t set = supervisor_signals();
  ::pthread_sigmask(SIG_BLOCK, &set, &saved_mask_);
  ::signal(SIGPIPE, SIG_IGN);
  signal_fd_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd_ < 0) {
    const int err = errno;
    ::pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
    return fail(-err, std::string("workers: signalfd: ") + ::strerror(err));
  }
  for (size_t i = 0; i < workers_.size(); ++i) {  // the sidecar last: it reads the others
    if (int rc = spawn(i); rc < 0) {
      return fail(rc, std::string("workers: fork: ") + ::strerror(-rc));
    }
  }
  return wait_ready(Clock::now() + options_.ready_timeout, error);
}

int Supervisor::wait_ready(Clock::time_point deadline, std::string* error) {
  for (;;) {
    std::vector<pollfd> pfds{{signal_fd_, POLLIN, 0}};
    std::vector<Worker*> waiting;
    for (auto& w : workers_) {
      if (!w->ready) {
        if (w->ready_fd < 0) {
          if (error) {
            *error = "worker " + std::to_string(w->index) + " " +
                     (w->last_exit.empty() ? "exited" : w->last_exit) +
                     " before it was ready (its stderr says why)";
          }
          return -EIO;
        }
        pfds.push_back({w->ready_fd, POLLIN, 0});
        waiting.push_back(w.get());
      }
    }
    if (waiting.empty()) return 0;
    const int timeout = ms_until(deadline);
    if (timeout == 0) {
      if (error) {
        *error = std::to_string(waiting.size()) + " worker(s) not ready after " +
                 std::to_string(options_.ready_timeout.count()) + " ms";
      }
      return -ETIMEDOUT;
    }
    if (::poll(pfds.data(), pfds.size(), timeout) < 0 && errno != EINTR) return -errno;
    for (size_t k = 0; k < waiting.size(); ++k) {
      if (pfds[k + 1].revents != 0) read_ready(*waiting[k]);
    }
    if (pfds[0].revents != 0) {
      signalfd_siginfo si;
      while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM) {
          if (error) *error = "interrupted by signal " + std::to_string(si.ssi_signo);
          return -EINTR;
        }
        // SIGCHLD: the exit shows as EOF on the ready pipe; reap it here
        // for its status. SIGUSR1: nothing to report yet.
      }
      reap();
    }
  }
}

int Supervisor::read_ready(Worker& w) {
  char byte;
  const ssize_t n = ::read(w.ready_fd, &byte, 1);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return -1;
  ::close(w.ready_fd);
  w.ready_fd = -1;
  w.ready = n == 1;  // 0: the worker exited (or closed it) without ready()
  return w.ready ? 1 : 0;
}

void Supervisor::reap() {
  int status = 0;
  pid_t pid;
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    for (auto& wp : workers_) {
      Worker& w = *wp;
      if (w.pid != pid) continue;
      w.pid = 0;
      w.last_exit = describe(status);
      if (Slot* s = slot(w.index)) s->connections.store(0, std::memory_order_relaxed);
      if (stopping_) {
        const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!clean) failed_ = true;
        if (clean) {
          spdlog::info("worker {} (pid {}) {}", w.index, pid, w.last_exit);
        } else {
          spdlog::warn("worker {} (pid {}) {} while stopping", w.index, pid, w.last_exit);
        }
      }
      // Not stopping: run() schedules the restart (a failure before the
      // first ready() is start()'s to report: wait_ready() reads the EOF).
    }
  }
}

void Supervisor::schedule_restart(Worker& w) {
  const auto up = Clock::now() - w.started_at;
  if (up >= options_.stable_after) w.backoff.reset();
  const auto delay = w.backoff.next();
  if (w.ready_fd >= 0) {
    ::close(w.ready_fd);
    w.ready_fd = -1;
  }
  w.ready = false;
  w.restart_pending = true;
  w.restart_at = Clock::now() + delay;
  spdlog::warn("worker {} {} after {:.1f} s; restarting in {} ms (start #{})", w.index,
               w.last_exit, std::chrono::duration<double>(up).count(),
               std::chrono::duration_cast<std::chrono::milliseconds>(delay).count(),
               w.starts + 1);
}

void Supervisor::forward(int sig) {
  for (auto& w : workers_) {
    if (w->pid > 0) ::kill(w->pid, sig);
  }
}

bool Supervisor::any_running() const {
  for (const auto& w : workers_) {
    if (w->pid > 0) return true;
  }
  return false;
}

int Supervisor::run() {
  if (signal_fd_ < 0) return 1;  // not started
  Clock::time_point kill_at = Clock::time_point::max();
  while (!(stopping_ && !any_running())) {
    // Sleep until a signal, a restarted worker's ready(), a due restart,
    // or the stop deadline.
    Clock::time_point wake = kill_at;
    std::vector<pollfd> pfds{{signal_fd_, POLLIN, 0}};
    std::vector<Worker*> waiting;
    for (auto& w : workers_) {
      if (w->restart_pending && w->restart_at < wake) wake = w->restart_at;
      if (w->pid > 0 && !w->ready && w->ready_fd >= 0) {
        pfds.push_back({w->ready_fd, POLLIN, 0});
        waiting.push_back(w.get());
      }
    }
    const int timeout = wake == Clock::time_point::max() ? -1 : ms_until(wake);
    if (::poll(pfds.data(), pfds.size(), timeout) < 0 && errno != EINTR) {
      spdlog::error("workers: poll: {}", ::strerror(errno));
      forward(SIGKILL);
      failed_ = true;
      stopping_ = true;
    }
    for (size_t k = 0; k < waiting.size(); ++k) {
      Worker& w = *waiting[k];
      if (pfds[k + 1].revents != 0 && read_ready(w) == 1) {
        spdlog::info("worker {} (pid {}) serving again", w.index, w.pid);
      }
      // Closed without ready(): it died first; SIGCHLD brings its status
      // and the restart below retries it on the backoff.
    }
    signalfd_siginfo si;
    while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      const int sig = static_cast<int>(si.ssi_signo);
      if (sig == SIGINT || sig == SIGTERM) {
        if (!stopping_) {
          stopping_ = true;
          kill_at = Clock::now() + options_.stop_timeout;
          for (auto& w : workers_) w->restart_pending = false;
          spdlog::info("signal {}: stopping {} workers ({})", sig, options_.count, summary());
          forward(SIGTERM);
        } else {
          spdlog::warn("signal {} again: killing the workers", sig);
          forward(SIGKILL);
          failed_ = true;
        }
      } else if (sig == SIGUSR1) {
        for (const WorkerStatus& s : status()) {
          spdlog::info("worker {} pid {} starts {} connections {} accepted {} messages {}{}{}",
                       s.index, s.pid, s.starts, s.counters.connections, s.counters.accepted,
                       s.counters.messages, s.last_exit.empty() ? "" : " last ", s.last_exit);
        }
        spdlog::info("{}", summary());
      }
    }
    reap();
    for (auto& w : workers_) {
      if (!stopping_ && w->pid == 0 && !w->restart_pending) schedule_restart(*w);
    }
    if (stopping_) {
      if (Clock::now() >= kill_at && any_running()) {
        spdlog::warn("workers still running {} ms after SIGTERM: killing them",
                     options_.stop_timeout.count());
        forward(SIGKILL);
        failed_ = true;
        kill_at = Clock::time_point::max();
      }
      continue;
    }
    for (auto& w : workers_) {
      if (w->restart_pending && Clock::now() >= w->restart_at) {
        if (int rc = spawn(w->index); rc < 0) {
          spdlog::error("worker {}: fork: {}", w->index, ::strerror(-rc));
          schedule_restart(*w);
        }
      }
    }
  }
  spdlog::info("workers stopped: {}", summary());
  return failed_ ? 1 : 0;
}

std::vector<WorkerStatus> Supervisor::status() const {
  std::vector<WorkerStatus> out;
  for (const auto& w : workers_) {
    if (w->index >= options_.count) continue;  // the sidecar
    WorkerStatus s;
    s.index = w->index;
    s.pid = w->pid;
    s.starts = w->starts;
    s.last_exit = w->last_exit;
    if (const Slot* cp = slot(w->index)) {
      const Slot& c = *cp;
      s.counters.connections = c.connections.load(std::memory_order_relaxed);
      s.counters.accepted = c.accepted.load(std::memory_order_relaxed);
      s.counters.messages = c.messages.load(std::memory_order_relaxed);
    }
    out.push_back(std::move(s));
  }
  return out;
}

WorkerCounters Supervisor::counters() const {
  WorkerCounters sum;
  for (const WorkerStatus& s : status()) {
    sum.connections += s.counters.connections;
    sum.accepted += s.counters.accepted;
    sum.messages += s.counters.messages;
  }
  return sum;
}

std::string Supervisor::summary() const {
  const std::vector<WorkerStatus> all = status();
  std::string parts;
  uint64_t conns = 0, accepted = 0, messages = 0, restarts = 0;
  for (const WorkerStatus& s : all) {
    if (!parts.empty()) parts += '+';
    parts += std::to_string(s.counters.connections);
    conns += s.counters.connections;
    accepted += s.counters.accepted;
    messages += s.counters.messages;
    if (s.starts > 1) restarts += s.starts - 1;
  }
  return std::to_string(all.size()) + " workers: connections " + parts + "=" +
         std::to_string(conns) + ", accepted " + std::to_string(accepted) + ", messages " +
         std::to_string(messages) + ", restarts " + std::to_string(restarts);
}

}  // namespace sluice
