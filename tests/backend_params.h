// Parameterising a GoogleTest suite over every registered IO back end:
//
//   INSTANTIATE_TEST_SUITE_P(AllBackends, MySuite,
//                            ::testing::ValuesIn(sluice::testing::all_backends()),
//                            sluice::testing::BackendName());
//
// Suites skip an unavailable back end in SetUp with io::probe()'s reason.
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "io/registry.h"

namespace sluice::testing {

inline std::vector<std::string> all_backends() {
  std::vector<std::string> names;
  for (const io::BackendInfo& b : io::backends()) names.push_back(b.name);
  return names;
}

// Test-name suffix for a back end ("epoll-et" -> "epoll_et").
struct BackendName {
  std::string operator()(const ::testing::TestParamInfo<std::string>& p) const {
    std::string n = p.param;
    for (char& c : n) {
      if (c == '-') c = '_';
    }
    return n;
  }
};

}  // namespace sluice::testing
