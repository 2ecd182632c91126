#include "tests/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

extern char** environ;

namespace sluice::testing {

using namespace std::chrono_literals;

std::string server_binary(const std::string& name, const std::string& package) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir && ws) return std::string(srcdir) + "/" + ws + "/" + package + "/" + name;
  return "bazel-bin/" + package + "/" + name;  // run by hand from the repository root
}

namespace {
std::string tmpdir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t ? t : "/tmp";
}
}  // namespace

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

size_t count_lines(const std::string& text, const std::string& needle) {
  size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

Proc::Proc(std::vector<std::string> args, const std::string& tag) {
  static int seq = 0;
  const std::string base =
      tmpdir() + "/" + tag + "." + std::to_string(::getpid()) + "." + std::to_string(seq++);
  out_ = base + ".out";
  err_ = base + ".err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
  posix_spawn_file_actions_destroy(&fa);
}

Proc::~Proc() {
  if (pid_ > 0 && !exited_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
}

void Proc::signal(int sig) {
  if (pid_ > 0 && !exited_) ::kill(pid_, sig);
}

int Proc::wait(std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    std::this_thread::sleep_for(5ms);
  }
  return -1;
}

uint16_t Proc::port() {
  static const std::regex re("listening on [^ ]*:([0-9]+) ");
  for (int i = 0; i < 500; ++i) {
    std::smatch m;
    std::string o = out();
    if (std::regex_search(o, m, re)) return static_cast<uint16_t>(std::stoi(m[1]));
    std::this_thread::sleep_for(10ms);
  }
  return 0;
}

std::map<std::string, double> last_json_numbers(const std::string& text) {
  std::map<std::string, double> r;
  static const std::regex field("\"([a-z0-9_]+)\":(-?[0-9.]+)");
  std::string line;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.front() == '{') line = l;
  }
  for (auto it = std::sregex_iterator(line.begin(), line.end(), field); it != std::sregex_iterator();
       ++it) {
    r[(*it)[1]] = std::stod((*it)[2]);
  }
  return r;
}

}  // namespace sluice::testing
