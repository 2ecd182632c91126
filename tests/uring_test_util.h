// What the io_uring back end's test files share (uring_backend_test.cc,
// uring_datagram_test.cc; one binary): back ends with test tunings, the
// fixture that skips where io_uring is unavailable, a datagram server.
//
// Thread rules: the test thread is the loop thread
// (tests/backend_harness_channels.h).
#pragma once

#include <signal.h>

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "io/uring.h"
#include "tests/backend_harness_channels.h"

namespace sluice::io::uring_test {

using sluice::testing::DatagramServer;

// uring_entries 1024: many rings per binary (every tier, every mode).
inline std::unique_ptr<UringBackend> uring(const UringTuning& tuning = {}) {
  BackendOptions opts;
  opts.uring_entries = 1024;
  return make_uring_backend_tuned(opts, tuning);
}
inline UringBackend& ur(Backend& b) { return static_cast<UringBackend&>(b); }

inline UringTuning single_shot() {
  UringTuning t;
  t.disable_buf_ring = true;
  t.disable_multishot_accept = true;
  t.disable_multishot_recvmsg = true;
  return t;
}
inline UringTuning oldest_tier() {
  UringTuning t;
  t.first_setup_tier = 4;
  return t;
}

class UringBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = probe_uring();
    if (!why.empty()) GTEST_SKIP() << "io_uring unavailable: " << why;
    ::signal(SIGPIPE, SIG_IGN);
  }
};

// A uring DatagramServer; it checks Channel::io is dropped on detach.
inline std::unique_ptr<DatagramServer> udp_server(const UringTuning& t = {}, int bufsize = 0) {
  auto s = std::make_unique<DatagramServer>(uring(t), bufsize);
  s->expect_io_released = true;
  return s;
}

}  // namespace sluice::io::uring_test
