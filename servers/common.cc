#include "servers/common.h"

#include <signal.h>

#include <cstdio>


#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "io/registry.h"

namespace sluice::servers {

void init_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("sluice");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

int print_backends() {
  for (const io::BackendInfo& b : io::backends()) {
    std::printf("%-12s %-11s %s%s%s\n", b.name.c_str(),
                b.available ? "available" : "unavailable", b.summary.c_str(),
                b.available ? "" : " -- ", b.reason.c_str());
  }
  std::printf("default: %s\n", io::default_backend().c_str());
  return 0;
}

bool resolve_io(std::string& name) {
  if (name.empty()) {
    name = io::default_backend();
    return true;
  }
  io::BackendInfo info = io::probe(name);
  if (info.available) return true;
  std::fprintf(stderr, "IO back end '%s' is unavailable here: %s (see --list-io)\n",
               name.c_str(), info.reason.c_str());
  return false;
}

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int wait_for_stop_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace sluice::servers
