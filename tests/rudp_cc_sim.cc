#include "tests/rudp_cc_sim.h"

#include <algorithm>
#include <map>
#include <memory>

#include "tests/rudp_sim.h"

namespace sluice::rudptest {

namespace {

constexpr size_t kMessage = 16 * 1024;

// Server side: counts each flow's bytes (a message's first byte is its flow).
struct Sink final : Handler {
  void on_message(Connection&, std::string_view d) override {
    if (d.empty()) return;
    const auto flow = static_cast<uint8_t>(d[0]);
    if (flow < received.size()) received[flow] += d.size();
  }
  std::vector<uint64_t> received;
};

class FlowsScenario final : public Scenario {
 public:
  FlowsScenario(const LinkSpec& link, const std::vector<FlowSpec>& flows, Ms length, Ms every)
      : link_(link), specs_(flows), length_(length), every_(every) {
    sink_.received.assign(flows.size(), 0);
  }
  Handler& server_handler() override { return sink_; }

  void start(EventLoop& loop, uint16_t port) override {
    loop_ = &loop;
    world->set_bottleneck_port(port);
    *server_port = port;
    for (size_t i = 0; i < specs_.size(); ++i) {
      auto f = std::make_unique<Flow>(static_cast<uint8_t>(i));
      rudp::ClientOptions co;
      co.port = port;
      co.rudp = base_options();
      co.rudp.cc = specs_[i].cc;
      co.rudp.cc_config = specs_[i].config;
      co.rudp.ecn = specs_[i].ecn;
      co.rudp.cc_config.max_datagram = co.rudp.max_datagram;
      // Replayable, and different per flow (BBR's first gain phase).
      if (co.rudp.cc_config.seed == 0) co.rudp.cc_config.seed = 0x9e3779b97f4a7c15ULL * (i + 1);
      f->client = std::make_unique<rudp::Client>(loop, *f, co);
      Flow* raw = f.get();
      flows_.push_back(std::move(f));
      // Distinct start times keep the order flows first appear on the
      // link in flow order (path_delay relies on it).
      loop.run_after(specs_[i].start + Ms(i), [this, raw] {
        raw->client->connect([this, raw](int rc) {
          if (rc < 0) fail("flow {} connect failed: {}", raw->id, rc);
        });
      });
    }
    sample();
    sampler_ = loop.run_every(every_, [this] { sample(); });
    loop.run_after(length_, [this] {
      loop_->cancel(sampler_);
      done();
    });
  }
  void stopping() override { flows_.clear(); }

  rudp::Options base_options() const {
    rudp::Options o;
    // Windows well above any test's BDP x (1 + queue): the controller,
    // not flow control or the send buffer, limits the flow.
    o.window = 32 << 20;
    o.send_buffer = 32 << 20;
    o.initial_rtt = Ms(100);
    return o;
  }

  std::vector<Sample> samples;
  std::shared_ptr<uint16_t> server_port = std::make_shared<uint16_t>(0);

 private:
  struct Flow final : Handler {
    explicit Flow(uint8_t i) : id(i) {}
    void on_open(Connection& c) override {
      conn = &c;
      pump(c);
      timer = c.loop().run_every(Ms(1), [this] {
        if (conn) pump(*conn);
      });
    }
    void on_drain(Connection& c) override { pump(c); }
    void on_message(Connection&, std::string_view) override {}
    void on_close(Connection& c, CloseReason, int) override {
      if (timer) c.loop().cancel(timer);
      timer = 0;
      conn = nullptr;
    }
    void pump(Connection& c) {
      if (!c.is_open()) return;
      msg.assign(kMessage, static_cast<char>(id));
      while (c.pending_output() < 4 * kMessage && c.send(msg)) {
      }
    }
    uint8_t id;
    std::unique_ptr<rudp::Client> client;
    Connection* conn = nullptr;
    TimerId timer = 0;
    std::string msg;
  };

  void sample() {
    Sample s;
    s.t = std::chrono::duration_cast<Ms>(world->now() - start_at());
    s.backlog = world->bottleneck_backlog(true);
    for (size_t i = 0; i < flows_.size(); ++i) {
      FlowSample f;
      f.received = sink_.received[i];
      if (flows_[i]->conn) {
        if (auto st = rudp::stats(*flows_[i]->conn)) {
          f.cwnd = st->cwnd;
          f.pacing_rate = st->pacing_rate;
          f.delivery_rate = st->delivery_rate;
          f.packets_lost = st->packets_lost;
          f.ecn_ce = st->ecn_ce;
          f.ecn_failed = st->ecn_failed;
          f.srtt_us = std::chrono::duration_cast<std::chrono::microseconds>(st->srtt).count();
          f.min_rtt_us = std::chrono::duration_cast<std::chrono::microseconds>(st->min_rtt).count();
          const auto slash = st->cc.find('/');
          f.state = slash == std::string::npos ? "" : st->cc.substr(slash + 1);
        }
      }
      s.flows.push_back(std::move(f));
    }
    samples.push_back(std::move(s));
  }
  sim::SimClock::time_point start_at() {
    if (!started_) {
      started_ = true;
      start_ = world->now();
    }
    return start_;
  }

  LinkSpec link_;
  std::vector<FlowSpec> specs_;
  Ms length_, every_;
  Sink sink_;
  std::vector<std::unique_ptr<Flow>> flows_;
  EventLoop* loop_ = nullptr;
  TimerId sampler_ = 0;
  bool started_ = false;
  sim::SimClock::time_point start_{};
};

}  // namespace

uint64_t bdp_bytes(const LinkSpec& link) {
  return link.bps / 8 * static_cast<uint64_t>(link.rtt.count()) / 1000;
}

double jain(const std::vector<double>& x) {
  double sum = 0, sq = 0;
  for (double v : x) {
    sum += v;
    sq += v * v;
  }
  return sq == 0 ? 0 : sum * sum / (static_cast<double>(x.size()) * sq);
}

const Sample& CcResult::at(Ms t) const {
  for (const Sample& s : samples) {
    if (s.t >= t) return s;
  }
  return samples.back();
}

double CcResult::goodput(size_t flow, Ms from, Ms to) const {
  const Sample& a = at(from);
  const Sample& b = at(to);
  if (b.t <= a.t) return 0;
  return static_cast<double>(b.flows[flow].received - a.flows[flow].received) * 1000.0 /
         static_cast<double>((b.t - a.t).count());
}

CcResult run_flows(const LinkSpec& link, const std::vector<FlowSpec>& flows, Ms length, Ms every,
                   uint64_t seed) {
  SimRun r;
  r.seed = seed;
  r.faults.max_delay = std::chrono::microseconds(0);  // no jitter: no reordering
  r.faults.min_delay = std::chrono::duration_cast<std::chrono::microseconds>(link.rtt) / 2;
  r.faults.loss = link.loss;
  r.faults.datagram_queue = 1 << 20;
  r.faults.bottleneck.bps = link.bps;
  r.faults.bottleneck.queue_bytes =
      std::max<size_t>(static_cast<size_t>(link.queue_bdp * static_cast<double>(bdp_bytes(link))),
                       4 * 1500);
  r.faults.bottleneck.ce_threshold_bytes =
      static_cast<size_t>(link.ecn_threshold * static_cast<double>(bdp_bytes(link)));
  FlowsScenario s(link, flows, length, every);
  // Per-flow RTTs: the flows' ports, in the order they first appear.
  auto ports = std::make_shared<std::map<uint16_t, size_t>>();
  std::vector<Ms> extra;
  for (const FlowSpec& f : flows) extra.push_back(f.extra_rtt);
  r.faults.path_delay = [ports, extra, server = s.server_port](uint16_t from, uint16_t to) {
    const uint16_t client = from == *server ? to : from;
    auto it = ports->find(client);
    if (it == ports->end()) it = ports->emplace(client, ports->size()).first;
    if (it->second >= extra.size()) return std::chrono::microseconds(0);
    return std::chrono::duration_cast<std::chrono::microseconds>(extra[it->second]) / 2;
  };
  r.virtual_limit = std::chrono::duration_cast<std::chrono::seconds>(length) + std::chrono::seconds(30);
  sim::SimStats totals;
  r.totals = &totals;
  CcResult out;
  out.violations = run(r, s);
  out.samples = std::move(s.samples);
  out.random_losses = totals.datagrams_lost;
  out.bottleneck_drops = totals.bottleneck_drops;
  out.bottleneck_ce_marks = totals.bottleneck_ce_marks;
  return out;
}

}  // namespace sluice::rudptest
