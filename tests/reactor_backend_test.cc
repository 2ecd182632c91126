// The readiness back ends (select, poll, epoll level- and edge-triggered,
// nonblocking), driven through the Backend interface directly: the
// scenarios of tests/backend_scenarios.cc, which the blocking and io_uring
// back ends pass too. Their shared adaptation (io/reactor.cc) is otherwise
// only reached through the core (conformance_test and the like).
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "io/registry.h"
#include "tests/backend_scenarios.h"

namespace sluice::testing {
namespace {

std::vector<BackendCase> reactor_cases() {
  std::vector<BackendCase> cases;
  for (const io::BackendInfo& info : io::backends()) {
    if (info.name == "blocking" || info.name == "uring") continue;  // their own files
    const std::string name = info.name;
    cases.push_back({name,
                     [name]() -> std::unique_ptr<io::Backend> {
                       std::string err;
                       auto be = io::create(name, {}, &err);
                       EXPECT_NE(be, nullptr) << err;
                       return be;
                     },
                     [name] { return io::probe(name).reason; },
                     /*attach_twice=*/-EEXIST,
                     /*waits_block=*/name != "nonblocking"});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Reactors, BackendScenarios, ::testing::ValuesIn(reactor_cases()),
                         BackendCaseName());

}  // namespace
}  // namespace sluice::testing
