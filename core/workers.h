// Worker processes, the nginx model: a supervisor process forks N workers,
// and each runs its own loops on its own SO_REUSEPORT socket bound to the
// shared port. The kernel spreads new connections (and UDP senders) over
// the workers' sockets by a hash of the 4-tuple, so one process's
// descriptor limit caps one worker, not the server, and a crashed worker
// costs only its own connections.
//
//   sluice::Supervisor sup({.count = 4}, [&](sluice::WorkerContext& ctx) {
//     sluice::Server server(opts, handler);   // opts.listen.reuse_port, fixed port
//     if (server.start(&err) < 0) return 1;   // the worker says why on stderr
//     ctx.ready();
//     ctx.serve([&] { return sluice::WorkerCounters{server.connection_count()}; });
//     server.stop(drain);                     // SIGTERM/SIGINT reached serve()
//     return 0;
//   });
//   if (sup.start(&err) < 0) ...              // returns once every worker is ready
//   std::printf("listening on ...\n");        // printed once, by the supervisor
//   return sup.run();                         // until SIGTERM/SIGINT, then drains
//
// The supervisor
//  * start() forks `count` workers and waits until each called ready(). A
//    worker that exits first (port in use, back end unavailable: it says
//    why on its stderr) fails start(): the others are killed, -EIO.
//  * run() serves signals until the workers are gone:
//    - a worker that exits while running (crash, or a return from its main)
//      is logged and restarted after a capped, jittered backoff (100 ms
//      doubling to 5 s; reset once a worker stays up `stable_after`);
//    - SIGTERM/SIGINT are forwarded to every worker, which drains
//      gracefully; one still alive after `stop_timeout` is killed
//      (SIGKILL), as are all at once on a second SIGTERM/SIGINT;
//    - SIGUSR1 logs one line of statistics per worker.
//    It returns 0 when every worker exited 0 after the stop, else 1.
//  * Statistics (counters()) come from a shared memory page each worker's
//    serve() refreshes every `publish_interval`. Besides those three
//    counters each worker's part of the page holds `extra_words` words of
//    its own (publish_words(); a metrics sample, core/server_metrics.h).
//  * A sidecar (WorkerOptions::sidecar, optional) is one more process,
//    forked after the workers and supervised like them (ready() awaited
//    by start(), restarted on exit, stopped with SIGTERM), that can read
//    every worker's published words (read_words()): a metrics endpoint
//    serving all workers from one port. It is a process, not a thread of
//    the supervisor, because the supervisor must stay single-threaded to
//    fork. Its WorkerContext::index() is `count`; it has no counters of
//    its own and is left out of status(), counters() and summary().
//  * Workers die with the supervisor (PR_SET_PDEATHSIG: SIGTERM, so they
//    still drain).
//
// Connections queued on a worker's listener when it exits are reset unless
// net.ipv4.tcp_migrate_req is 1 (Linux 5.14): then the kernel moves them
// to another listener of the group. migrate_requests() says which.
//
// Thread rules: fork() copies only the calling thread, so the supervisor
// must be single-threaded: construct it, start() and run() on the main
// thread before any other thread starts (spdlog's synchronous loggers are
// fine). WorkerContext: the worker's main thread. counters() and
// status(): the supervisor's thread.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace sluice {

class WorkerContext;

struct WorkerOptions {
  size_t count = 2;
  // Restart backoff: first delay, doubling per exit in a row up to the cap.
  std::chrono::milliseconds restart_initial{100};
  std::chrono::milliseconds restart_max{5000};
  // A worker up this long before it exits restarts from restart_initial.
  std::chrono::milliseconds stable_after{10000};
  // How long start() waits for every worker's ready().
  std::chrono::milliseconds ready_timeout{10000};
  // After forwarding SIGTERM: how long workers may drain before SIGKILL.
  // Give it more than the workers' own drain deadline.
  std::chrono::milliseconds stop_timeout{5000};
  // How often WorkerContext::serve() publishes the worker's counters.
  std::chrono::milliseconds publish_interval{200};
  // Words of the shared page each worker may fill with publish_words().
  size_t extra_words = 0;
  // The sidecar's main (see above); empty: none.
  std::function<int(WorkerContext&)> sidecar{};
};

// What a worker reports (its own meaning per server; zeros are fine).
struct WorkerCounters {
  uint64_t connections = 0;  // open now (TCP connections, or UDP peers)
  uint64_t accepted = 0;     // since this worker process started
  uint64_t messages = 0;     // since this worker process started
};

struct WorkerStatus {
  size_t index = 0;
  pid_t pid = 0;          // 0: not running (waiting to restart)
  uint64_t starts = 0;    // processes started for this slot (1 + restarts)
  std::string last_exit;  // "exited 1", "killed by signal 11"; empty: none yet
  WorkerCounters counters{};
};

class Supervisor;

// Given to the worker's main, in the worker process.
class WorkerContext {
 public:
  size_t index() const { return index_; }
  size_t count() const { return count_; }
  // Tells the supervisor this worker serves (call once it listens).
  void ready();
  // Publishes counters now (any time; serve() does it periodically).
  void publish(const WorkerCounters& c);
  // Publishes up to WorkerOptions::extra_words words (the rest are
  // ignored); each word is stored on its own (relaxed), so a reader may
  // see some words of this call and some of the previous one. A worker
  // calls it from its main thread (e.g. in serve()'s sample callback).
  void publish_words(std::span<const uint64_t> words);
  // Reads worker `worker`'s published words into `out` (zeros past
  // extra_words, and for a worker not started yet). Any of the
  // supervisor's processes; meant for the sidecar. False: no such worker.
  bool read_words(size_t worker, std::span<uint64_t> out) const;
  // Blocks until SIGTERM/SIGINT (or the supervisor's death), publishing
  // sample() every publish_interval; returns the signal. Stop signals are
  // blocked in workers, so they arrive here and never kill a loop.
  int serve(const std::function<WorkerCounters()>& sample);

 private:
  friend class Supervisor;
  WorkerContext(size_t index, size_t count, int ready_fd, const Supervisor& sup,
                std::chrono::milliseconds publish_interval)
      : index_(index), count_(count), ready_fd_(ready_fd), sup_(sup),
        publish_interval_(publish_interval) {}
  size_t index_;
  size_t count_;
  int ready_fd_;
  const Supervisor& sup_;  // this process's copy; its page is shared
  std::chrono::milliseconds publish_interval_;
};

// The worker's main: runs in the child; its return value is the exit code.
using WorkerMain = std::function<int(WorkerContext&)>;

class Supervisor {
 public:
  Supervisor(WorkerOptions options, WorkerMain main);
  ~Supervisor();  // kills workers still running (SIGKILL) and reaps them
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Returns 0 once every worker is ready, or -errno and sets *error.
  int start(std::string* error);
  // See "The supervisor" above; returns the process exit code.
  int run();

  size_t count() const { return options_.count; }
  std::vector<WorkerStatus> status() const;
  // Summed over the workers (from the last publications).
  WorkerCounters counters() const;
  // "3 workers: conns 2011+1987+2002=6000, accepted ..., restarts 1".
  std::string summary() const;
  // net.ipv4.tcp_migrate_req in this network namespace (false if unknown).
  static bool migrate_requests();

 private:
  friend class WorkerContext;  // writes its Slot
  struct Worker;
  struct Slot;  // one worker's counters in the shared mapping
  // Worker i's slot (null for the sidecar's index), and its extra words.
  Slot* slot(size_t i) const;
  std::atomic<uint64_t>* words(size_t i) const;

  int spawn(size_t index);
  void reap();
  void schedule_restart(Worker& w);
  void forward(int sig);
  // After poll() flagged w's ready pipe: 1 ready, 0 closed without
  // ready() (it exited), -1 nothing to read yet.
  int read_ready(Worker& w);
  int wait_ready(std::chrono::steady_clock::time_point deadline, std::string* error);
  bool any_running() const;

  WorkerOptions options_;
  WorkerMain main_;
  std::vector<std::unique_ptr<Worker>> workers_;
  void* slots_ = nullptr;  // mmap(MAP_SHARED): count slots, shared with the workers
  size_t slots_bytes_ = 0;
  size_t slot_stride_ = 0;  // bytes per slot: the counters, then extra_words
  sigset_t saved_mask_{};  // before start(): restored at the end, and in workers
  int signal_fd_ = -1;
  bool stopping_ = false;
  bool failed_ = false;  // a worker exited non-zero during the stop
};

}  // namespace sluice
