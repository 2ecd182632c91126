// The shipped binaries as subprocesses, for end-to-end tests (Bazel `data`
// deps): spawn one with stdout and stderr in files, signal it (SIGSTOP and
// SIGCONT included), wait for it, and read what it printed. Test code only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace sluice::testing {

// Path of <package>/<name> in the test's runfiles (or bazel-bin/ by hand):
// a bundled server (servers/), or an example (package "examples").
std::string server_binary(const std::string& name, const std::string& package = "servers");

std::string slurp(const std::string& path);

// Lines of `text` that contain `needle`.
size_t count_lines(const std::string& text, const std::string& needle);

// The numeric fields of the last line of `text` that starts with '{' (the
// one-line JSON reports of loadgen and heartbeat_client).
std::map<std::string, double> last_json_numbers(const std::string& text);

// A child process with stdout and stderr in files under TEST_TMPDIR.
// Killed (SIGKILL) on destruction if still running.
class Proc {
 public:
  Proc(std::vector<std::string> args, const std::string& tag);
  ~Proc();
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Exit status (128 + signal if killed), or -1 if still running after
  // `limit`.
  int wait(std::chrono::milliseconds limit);
  // The port from "listening on HOST:PORT ...", waiting up to 5 s; 0 if
  // it never appeared.
  uint16_t port();
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string out_, err_;
};

}  // namespace sluice::testing
