// Congestion control on the simulated world: rudp bulk flows through one
// bottleneck (io/sim_world.h's SimFaults::bottleneck: a serializer and a
// drop-tail queue each way), in virtual time, deterministic from the
// seed. The flows are real rudp::Clients sending to a real rudp server;
// only the network is simulated. A sampler records every flow's
// controller state and the bottleneck's queue at a fixed interval, so
// tests can check the textbook shapes (slow start, the reduction on loss,
// CUBIC's curve, BBR's drained queue, Vegas' few queued packets) and
// fairness between flows.
//
// Thread rules: run_flows() on the test's thread; it runs the loop itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "rudp/cc/controller.h"

namespace sluice::rudptest {

using Ms = std::chrono::milliseconds;

struct LinkSpec {
  uint64_t bps = 20'000'000;
  Ms rtt{50};             // base round trip (propagation, both ways)
  double queue_bdp = 1;   // drop-tail queue, in bandwidth-delay products
  double loss = 0;        // random loss per datagram, each way
  // ECN step marking at the bottleneck (SimFaults::Bottleneck::
  // ce_threshold_bytes), in bandwidth-delay products of backlog; 0: off.
  double ecn_threshold = 0;
};

struct FlowSpec {
  std::string cc = "cubic";
  Ms start{0};      // when it connects (after the run begins)
  Ms extra_rtt{0};  // added to the link's RTT for this flow (RTT fairness)
  rudp::cc::Config config{};
  bool ecn = true;  // rudp::Options::ecn
};

struct FlowSample {
  uint64_t cwnd = 0;
  uint64_t pacing_rate = 0;
  uint64_t delivery_rate = 0;
  uint64_t received = 0;  // bytes the server's handler got from this flow so far
  uint64_t packets_lost = 0;
  uint64_t ecn_ce = 0;  // CE marks the server reported (rudp::Stats::ecn_ce)
  bool ecn_failed = false;
  Ms::rep srtt_us = 0, min_rtt_us = 0;
  std::string state;  // the controller's state() ("" before connecting)
};

struct Sample {
  Ms t{};              // since the run began
  uint64_t backlog = 0;  // bytes queued at the bottleneck toward the server
  std::vector<FlowSample> flows;
};

struct CcResult {
  std::vector<Sample> samples;
  std::vector<std::string> violations;
  uint64_t bottleneck_drops = 0;
  uint64_t bottleneck_ce_marks = 0;
  uint64_t random_losses = 0;

  // Goodput of `flow` between two times (bytes per second), from the samples.
  double goodput(size_t flow, Ms from, Ms to) const;
  // The sample at or just after t.
  const Sample& at(Ms t) const;
};

// Runs the flows over the link for `length` of virtual time, sampling every
// `every`. Payload is 16 KiB messages, as many as the flow takes.
CcResult run_flows(const LinkSpec& link, const std::vector<FlowSpec>& flows, Ms length,
                   Ms every = Ms(10), uint64_t seed = 1);

// The bandwidth-delay product of a link in bytes.
uint64_t bdp_bytes(const LinkSpec& link);
// Jain's fairness index: (sum x)^2 / (n * sum x^2); 1 is perfectly fair.
double jain(const std::vector<double>& x);

}  // namespace sluice::rudptest
