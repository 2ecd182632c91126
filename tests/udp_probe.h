// A real capability probe: can this IO back end serve UDP (Channel kind
// kDatagram) yet? Used by tests to GTEST_SKIP("... not yet supported")
// instead of failing on back ends whose datagram path is still being
// written, while a broken datagram path on a back end that claims support
// still fails the tests. Test code only.
#pragma once

#include <string>

namespace sluice::testing {

// Empty when the back end takes a kDatagram channel and delivers a
// loopback datagram through on_datagram. Otherwise why not: attach()
// returned -EOPNOTSUPP, or it delivered the datagram as stream bytes
// (on_input: no datagram path). Other failures (no datagram arrives, a
// different attach error) count as "supported", so the real test fails and
// shows them. Cached per back end; thread-safe.
std::string udp_unsupported_reason(const std::string& backend);

// Why a UDP suite must skip this back end ("" when it can run): not
// available here (io::probe's reason), or udp_unsupported_reason.
std::string udp_skip_reason(const std::string& backend);

}  // namespace sluice::testing
