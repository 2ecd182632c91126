// Runs a fuzz target (LLVMFuzzerTestOneInput) as an ordinary test, without
// libFuzzer: every file of its seed corpus, then deterministic
// pseudo-random inputs and mutations of the seeds. A property violation
// traps, which fails the test.
//
//   <test> [DIR_OR_FILE...]
//
// Corpus paths are relative to the workspace root and resolved through the
// runfiles tree ($TEST_SRCDIR/$TEST_WORKSPACE) under bazel test, or taken
// as given otherwise (e.g. to replay a crash file). FUZZ_RANDOM_RUNS sets
// the number of generated inputs (default 400).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

fs::path resolve(const std::string& arg) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir && ws && !fs::path(arg).is_absolute()) {
    const fs::path p = fs::path(srcdir) / ws / arg;
    std::error_code ec;
    if (fs::exists(p, ec)) return p;
  }
  return fs::path(arg);
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f),
                     std::istreambuf_iterator<char>());
}

void run_one(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()),
                         input.size());
}

// splitmix64: deterministic across platforms and runs.
uint64_t next(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string random_bytes(uint64_t& s, size_t n) {
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(next(s) & 0xFF);
  return out;
}

// A few cheap libFuzzer-like mutations of a seed.
std::string mutate(uint64_t& s, std::string in) {
  const int steps = 1 + static_cast<int>(next(s) % 4);
  for (int i = 0; i < steps; ++i) {
    const size_t n = in.size();
    switch (next(s) % 5) {
      case 0:  // flip a byte
        if (n) in[next(s) % n] = static_cast<char>(next(s) & 0xFF);
        break;
      case 1:  // truncate
        if (n) in.resize(next(s) % n);
        break;
      case 2:  // insert random bytes
        in.insert(n ? next(s) % (n + 1) : 0,
                  random_bytes(s, 1 + next(s) % 16));
        break;
      case 3:  // duplicate a tail (more frames of the same shape)
        if (n) in += in.substr(next(s) % n);
        break;
      default:  // an interesting byte
        if (n) {
          static constexpr char kBytes[] = {'\0', '\n', '\r', '\x7f', '\x80',
                                            '\xff'};
          in[next(s) % n] = kBytes[next(s) % sizeof(kBytes)];
        }
        break;
    }
  }
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> seeds;
  for (int i = 1; i < argc; ++i) {
    const fs::path p = resolve(argv[i]);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(p)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) seeds.push_back(read_file(f));
    } else if (fs::is_regular_file(p, ec)) {
      seeds.push_back(read_file(p));
    } else {
      std::fprintf(stderr, "corpus_main: no such file or directory: %s\n",
                   p.c_str());
      return 1;
    }
  }
  if (argc > 1 && seeds.empty()) {
    std::fprintf(stderr, "corpus_main: the corpus is empty\n");
    return 1;
  }
  for (const std::string& s : seeds) run_one(s);

  long runs = 400;
  if (const char* env = std::getenv("FUZZ_RANDOM_RUNS")) {
    runs = std::strtol(env, nullptr, 10);
  }
  uint64_t state = 0x5EED5EEDull;
  run_one("");
  for (long i = 0; i < runs; ++i) {
    if (!seeds.empty() && i % 2 == 1) {
      run_one(mutate(state, seeds[next(state) % seeds.size()]));
    } else {
      // Mostly short inputs, where options and limits are hit most.
      const size_t n = next(state) % (i % 8 == 0 ? 2048 : 128);
      run_one(random_bytes(state, n));
    }
  }
  std::printf("corpus_main: %zu seed file(s), %ld generated input(s): ok\n",
              seeds.size(), runs);
  return 0;
}
