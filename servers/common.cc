#include "servers/common.h"

#include <cstdio>

#include "io/registry.h"

namespace sluice::servers {

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

}  // namespace sluice::servers
