// mem_bench internals: the /proc and malloc probes, and the control
// protocol between the server process and its client process (see
// perf/mem_bench.cc for the tool itself).
//
// The probes allocate nothing on the heap (fixed buffers on the stack), so
// taking a measurement does not move the heap figure it reports.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice::perf::mem {

// ------------------------------------------------------------------ probes
struct Totals {
  int64_t rss = 0;            // bytes resident (/proc/self/statm)
  int64_t heap = 0;           // bytes in use: mallinfo2 uordblks + hblkhd
  int64_t threads = 0;        // /proc/self/status Threads
  int64_t slab = 0;           // bytes, /proc/meminfo Slab (machine-wide)
  int64_t kernel_stack = 0;   // bytes, /proc/meminfo KernelStack
  int64_t tcp_mem_pages = 0;  // /proc/net/sockstat "TCP: ... mem" (pages)
};

struct SlabEntry {
  char name[40];
  int64_t active = 0;  // active objects
  int64_t objsize = 0;
};

// Thread-stack-like mappings (anonymous rw-p right after a ---p guard), by
// size: how many, and their resident bytes (/proc/self/smaps Rss).
struct MapHist {
  static constexpr int kMax = 32;
  int n = 0;
  int64_t size[kMax] = {};
  int64_t count[kMax] = {};
  int64_t rss[kMax] = {};
};

struct Snapshot {
  static constexpr size_t kMaxSlabs = 512;
  Totals t;
  size_t nslabs = 0;
  SlabEntry slabs[kMaxSlabs];
  MapHist stacks;
};

int64_t heap_in_use();
int64_t rss_bytes();
// Everything above (the heap first). /proc/slabinfo needs root; without it
// nslabs stays 0.
void take(Snapshot& s);

struct Growth {
  char name[40];
  int64_t bytes = 0;  // (active objects after - before) * object size
};
// The caches that grew most from a to b, largest first; returns how many.
size_t slab_growth(const Snapshot& a, const Snapshot& b, Growth* out, size_t max);
// The stack-like mapping size whose count grew most from a to b, by how
// many, and the growth of their resident bytes (zeros when none grew).
struct StackGrowth {
  int64_t size = 0, count = 0, rss = 0;
};
StackGrowth stack_growth(const MapHist& a, const MapHist& b);

// ------------------------------------------------------- control protocol
// Fixed-size messages over a socketpair, server process -> client process,
// each answered by one kReply.
enum class Op : int32_t { kWarm, kConnect, kActive, kQuit, kReply };
struct Msg {
  Op op = Op::kReply;
  int32_t port = 0;
  // kConnect: a = connections. kActive: a = every a-th connection is
  // active, b = milliseconds, c = message bytes. kReply: a = 0 or -errno,
  // b = detail (kConnect: connections opened; kActive: echo rounds),
  // c = kActive: active connections.
  int64_t a = 0, b = 0, c = 0;
};
bool send_msg(int fd, const Msg& m);
// false on EOF, error or timeout (timeout_ms < 0: none).
bool recv_msg(int fd, Msg* m, int timeout_ms);

// The client process: serves commands from ctl_fd until kQuit; returns its
// exit status. Clients only ever connect to 127.0.0.1.
int client_main(int ctl_fd);

}  // namespace sluice::perf::mem
