// Buffer micro-benchmarks: the per-message costs a connection pays in
// sluice's hot path (append to output, retrieve from input, read_fd from a
// socket, prepend a header). Items are messages/operations; bytes are
// payload bytes.
//
//   bazel run -c opt //perf:buffer_bench
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/buffer.h"

namespace sluice {
namespace {

std::string payload(size_t n) {
  std::string s(n, 'x');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

// Steady state of an echo connection: append a message, consume it.
void BM_AppendRetrieve(benchmark::State& state) {
  const std::string msg = payload(static_cast<size_t>(state.range(0)));
  Buffer b;
  for (auto _ : state) {
    b.append(msg);
    benchmark::DoNotOptimize(b.peek());
    b.retrieve(msg.size());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(msg.size()));
}
BENCHMARK(BM_AppendRetrieve)->Arg(16)->Arg(64)->Arg(1024)->Arg(16384);

// A pipelined burst: append many messages, then consume them one by one
// (exercises compaction rather than the retrieve_all fast path).
void BM_AppendBurstThenRetrieve(benchmark::State& state) {
  const std::string msg = payload(64);
  const int burst = static_cast<int>(state.range(0));
  Buffer b;
  for (auto _ : state) {
    for (int i = 0; i < burst; ++i) b.append(msg);
    for (int i = 0; i < burst; ++i) {
      benchmark::DoNotOptimize(b.peek());
      b.retrieve(msg.size());
    }
  }
  state.SetItemsProcessed(state.iterations() * burst);
  state.SetBytesProcessed(state.iterations() * burst * static_cast<int64_t>(msg.size()));
}
BENCHMARK(BM_AppendBurstThenRetrieve)->Arg(8)->Arg(64)->Arg(1024);

// Partial retrieves leave a tail that the next append must compact around.
void BM_AppendPartialRetrieve(benchmark::State& state) {
  const std::string msg = payload(static_cast<size_t>(state.range(0)));
  Buffer b;
  b.append("abc", 3);  // a permanent 3-byte tail (an incomplete frame)
  for (auto _ : state) {
    b.append(msg);
    b.retrieve(msg.size());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(msg.size()));
}
BENCHMARK(BM_AppendPartialRetrieve)->Arg(64)->Arg(1024);

// Growing from empty to N bytes (allocation + copies), then dropping it.
void BM_GrowFromEmpty(benchmark::State& state) {
  const std::string chunk = payload(512);
  const size_t total = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    Buffer b;
    for (size_t n = 0; n < total; n += chunk.size()) b.append(chunk);
    benchmark::DoNotOptimize(b.peek());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(total));
}
BENCHMARK(BM_GrowFromEmpty)->Arg(4096)->Arg(64 * 1024)->Arg(1024 * 1024);

// Prepend a 4-byte length header in front of an appended payload (the
// length-field codec's encode path).
void BM_Prepend(benchmark::State& state) {
  const std::string msg = payload(static_cast<size_t>(state.range(0)));
  Buffer b;
  for (auto _ : state) {
    b.append(msg);
    uint32_t len = static_cast<uint32_t>(msg.size());
    b.prepend(&len, sizeof len);
    benchmark::DoNotOptimize(b.peek());
    b.retrieve_all();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(msg.size()));
}
BENCHMARK(BM_Prepend)->Arg(64)->Arg(1024);

// read_fd from a socketpair: one write() of N bytes on one end, read_fd on
// the other, then retrieve. Both syscalls are included (the write is the
// cost of producing the data); BM_SocketpairWriteRead is the baseline with
// a plain read() into a fixed array, so the difference is Buffer's cost
// (readv with the spill iovec, bookkeeping).
struct Pair {
  int fd[2] = {-1, -1};
  explicit Pair(int bufsize) {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) != 0) std::abort();
    for (int s : fd) {
      ::setsockopt(s, SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof bufsize);
      ::setsockopt(s, SOL_SOCKET, SO_RCVBUF, &bufsize, sizeof bufsize);
    }
  }
  ~Pair() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
};

void BM_ReadFdSocketpair(benchmark::State& state) {
  const std::string msg = payload(static_cast<size_t>(state.range(0)));
  Pair p(1 << 20);
  Buffer b;
  for (auto _ : state) {
    if (::write(p.fd[0], msg.data(), msg.size()) != static_cast<ssize_t>(msg.size())) {
      state.SkipWithError("write");
      break;
    }
    size_t got = 0;
    while (got < msg.size()) {
      ssize_t n = b.read_fd(p.fd[1]);
      if (n <= 0) {
        state.SkipWithError("read_fd");
        break;
      }
      got += static_cast<size_t>(n);
    }
    b.retrieve(got);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(msg.size()));
}
BENCHMARK(BM_ReadFdSocketpair)->Arg(64)->Arg(4096)->Arg(65536);

void BM_SocketpairWriteRead(benchmark::State& state) {
  const std::string msg = payload(static_cast<size_t>(state.range(0)));
  Pair p(1 << 20);
  std::vector<char> buf(msg.size() + 64 * 1024);
  for (auto _ : state) {
    if (::write(p.fd[0], msg.data(), msg.size()) != static_cast<ssize_t>(msg.size())) {
      state.SkipWithError("write");
      break;
    }
    size_t got = 0;
    while (got < msg.size()) {
      ssize_t n = ::read(p.fd[1], buf.data(), buf.size());
      if (n <= 0) {
        state.SkipWithError("read");
        break;
      }
      got += static_cast<size_t>(n);
    }
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(msg.size()));
}
BENCHMARK(BM_SocketpairWriteRead)->Arg(64)->Arg(4096)->Arg(65536);

// A large burst arriving at a small buffer: read_fd's spill path (one
// readv, then one grow) against the buffer's free space.
void BM_ReadFdSpill(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  const std::string msg = payload(n);
  Pair p(4 << 20);
  for (auto _ : state) {
    state.PauseTiming();
    Buffer b(256);
    if (::write(p.fd[0], msg.data(), msg.size()) != static_cast<ssize_t>(msg.size())) {
      state.SkipWithError("write");
      break;
    }
    state.ResumeTiming();
    size_t got = 0;
    while (got < n) {
      ssize_t r = b.read_fd(p.fd[1]);
      if (r <= 0) {
        state.SkipWithError("read_fd");
        break;
      }
      got += static_cast<size_t>(r);
    }
    benchmark::DoNotOptimize(b.peek());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(n));
}
BENCHMARK(BM_ReadFdSpill)->Arg(32 * 1024)->Arg(256 * 1024);

}  // namespace
}  // namespace sluice
