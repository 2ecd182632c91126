// The back-end scenarios every Backend must pass, driven through the
// interface directly (no core): TCP echo of 1 byte to 16 MiB, 200
// concurrent connections, backpressure, peer reset, EOF, detach with
// operations in flight, wakeup, and UDP echo, bursts, backpressure, detach
// and ICMP errors. A back end's test file instantiates them:
//
//   INSTANTIATE_TEST_SUITE_P(Blocking, BackendScenarios,
//                            ::testing::Values(BackendCase{"blocking", make, probe}),
//                            BackendCaseName());
//
// and adds only what is specific to it (helper threads, buffer rings ...).
// The suite lives in a library linked with alwayslink, so each binary
// runs it on the cases it instantiates.
//
// Thread rules: the test thread is the loop thread (see
// tests/backend_harness_channels.h); clients run on TestThreads.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "io/backend.h"

namespace sluice::testing {

struct BackendCase {
  std::string name;
  // A fresh back end (nullptr: it failed to set up here).
  std::function<std::unique_ptr<io::Backend>()> make;
  // Empty when the back end can run here, else why not (the tests skip).
  std::function<std::string()> unavailable;
  // What a second attach() of an attached channel returns (-errno; see
  // io/backend.h); 0: not checked.
  int attach_twice = 0;
  // wait() sleeps until IO, a wakeup or its timeout. The nonblocking model
  // naps at most 1 ms and polls again, so its waits end early by design.
  bool waits_block = true;
};

inline std::ostream& operator<<(std::ostream& os, const BackendCase& c) { return os << c.name; }

struct BackendCaseName {
  std::string operator()(const ::testing::TestParamInfo<BackendCase>& p) const {
    std::string n = p.param.name;
    for (char& c : n) {
      if (c == '-') c = '_';
    }
    return n;
  }
};

class BackendScenarios : public ::testing::TestWithParam<BackendCase> {
 protected:
  void SetUp() override;
  std::unique_ptr<io::Backend> make() const;
};

}  // namespace sluice::testing
