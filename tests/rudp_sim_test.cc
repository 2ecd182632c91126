// rudp on the simulated world: delivery is byte-exact and in order at
// 0-30% loss with duplication, corruption and reordering (delays of
// 10-30 ms drawn per datagram), across hundreds of seeds per setting, in
// virtual time (seconds of real time in all). Every connection then closes
// in order on both sides.
//
// A failing seed reproduces alone: SLUICE_RUDP_SEED=<seed> runs just it
// (and logs at debug level with SLUICE_RUDP_DEBUG=1).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "io/sim_rng.h"
#include "tests/rudp_sim.h"

namespace sluice::rudptest {
namespace {

struct ServerEcho final : Handler {
  void on_message(Connection& c, std::string_view d) override { c.send(d); }
  void on_close(Connection&, CloseReason r, int e) override {
    closes.emplace_back(r, e);
    if (on_closed) on_closed();
  }
  std::vector<std::pair<CloseReason, int>> closes;
  std::function<void()> on_closed;
};

class EchoScenario final : public Scenario {
 public:
  EchoScenario(uint64_t seed, size_t clients, size_t messages, size_t max_size,
               rudp::Options opts)
      : options(opts), rng_(seed ^ 0x5eed), clients_(clients), messages_(messages),
        max_size_(max_size) {}
  rudp::Options options;

  Handler& server_handler() override { return echo_; }

  void start(EventLoop& loop, uint16_t port) override {
    loop_ = &loop;
    echo_.on_closed = [this] { maybe_done(); };
    limit_timer_ = loop.run_after(std::chrono::seconds(500), [this] {
      fail("not finished after 500 s of virtual time: {} of {} clients closed, {} server closes",
           closed_, clients_, echo_.closes.size());
      for (auto& c : peers_) fail("client: {} of {} echoes", c->received, c->msgs.size());
      done();
    });
    for (size_t i = 0; i < clients_; ++i) {
      auto p = std::make_unique<Peer>(*this);
      for (size_t m = 0; m < messages_; ++m) {
        // Mostly small, some spanning many datagrams, a few large.
        const uint64_t pick = rng_.below(100);
        size_t size = pick < 70 ? rng_.below(300) : pick < 95 ? rng_.below(20000)
                                                              : rng_.below(max_size_ + 1);
        std::string s(size, '\0');
        for (char& ch : s) ch = static_cast<char>(rng_.below(256));
        p->msgs.push_back(std::move(s));
      }
      rudp::ClientOptions co;
      co.port = port;
      co.rudp = options;
      p->client = std::make_unique<rudp::Client>(loop, *p, co);
      Peer* raw = p.get();
      peers_.push_back(std::move(p));
      raw->client->connect([this, raw](int rc) {
        if (rc < 0) {
          fail("connect failed: {}", rc);
          raw->closed = true;
          ++closed_;
          maybe_done();
        }
      });
    }
  }

  void stopping() override { peers_.clear(); }
  uint64_t retransmitted() const { return retransmitted_; }
  uint64_t spurious() const { return spurious_; }

 private:
  struct Peer final : Handler {
    explicit Peer(EchoScenario& s) : sc(s) {}
    void on_open(Connection& c) override {
      for (int i = 0; i < 8 && sent < msgs.size(); ++i) c.send(msgs[sent++]);
    }
    void on_message(Connection& c, std::string_view d) override {
      if (received >= msgs.size() || d != msgs[received]) {
        sc.fail("echo {} wrong ({} bytes, want {})", received, d.size(),
                received < msgs.size() ? msgs[received].size() : 0);
        c.abort();
        return;
      }
      ++received;
      if (sent < msgs.size()) c.send(msgs[sent++]);
      if (received == msgs.size()) {
        if (auto st = rudp::stats(c)) sc.note(*st);
        c.close();
      }
    }
    void on_close(Connection&, CloseReason r, int e) override {
      if (received != msgs.size()) sc.fail("client closed ({}, {}) after {} of {} echoes",
                                          to_string(r), e, received, msgs.size());
      closed = true;
      ++sc.closed_;
      sc.maybe_done();
    }
    EchoScenario& sc;
    std::vector<std::string> msgs;
    std::unique_ptr<rudp::Client> client;
    size_t sent = 0, received = 0;
    bool closed = false;
  };

  void note(const rudp::Stats& st) {
    retransmitted_ += st.retransmitted;
    spurious_ += st.spurious;
  }

  void maybe_done() {
    if (closed_ < clients_ || echo_.closes.size() < clients_ - failed_connects()) return;
    for (auto& [r, e] : echo_.closes) {
      if (r != CloseReason::kPeerClosed || e != 0) {
        fail("server side closed with {} ({})", to_string(r), e);
      }
    }
    loop_->cancel(limit_timer_);
    done();
  }
  size_t failed_connects() const { return 0; }

  sim::Rng rng_;
  size_t clients_, messages_, max_size_;
  ServerEcho echo_;
  EventLoop* loop_ = nullptr;
  TimerId limit_timer_ = 0;
  std::vector<std::unique_ptr<Peer>> peers_;
  size_t closed_ = 0;
  uint64_t retransmitted_ = 0, spurious_ = 0;
};

struct Setting {
  const char* name;
  double loss, duplicate, corrupt;
  int seeds;
};

class RudpSim : public ::testing::TestWithParam<Setting> {};

TEST_P(RudpSim, DeliversEveryMessageWholeAndInOrder) {
  if (!std::getenv("SLUICE_RUDP_DEBUG")) spdlog::set_level(spdlog::level::warn);
  const Setting& st = GetParam();
  uint64_t first = 1, count = static_cast<uint64_t>(st.seeds);
  if (const char* one = std::getenv("SLUICE_RUDP_SEED")) {
    first = std::strtoull(one, nullptr, 10);
    count = 1;
    if (std::getenv("SLUICE_RUDP_DEBUG")) spdlog::set_level(spdlog::level::debug);
  }
  size_t bad = 0;
  sim::SimStats totals;
  uint64_t retransmitted = 0, spurious = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SimRun r;
    r.seed = seed;
    r.faults.loss = st.loss;
    r.faults.duplicate = st.duplicate;
    r.faults.corrupt = st.corrupt;
    r.faults.min_delay = std::chrono::milliseconds(10);
    r.faults.max_delay = std::chrono::milliseconds(20);
    // Small windows make flow control and the send buffer matter.
    r.options.window = 64 << 10;
    r.options.send_buffer = 64 << 10;
    // At 30% loss each way a handshake (four datagrams) can take many tries.
    r.options.connect_timeout = std::chrono::seconds(60);
    r.totals = &totals;
    EchoScenario sc(seed, 2, 12, 300000, r.options);
    for (const std::string& v : run(r, sc)) {
      ADD_FAILURE() << st.name << ": " << v;
      ++bad;
    }
    retransmitted += sc.retransmitted();
    spurious += sc.spurious();
    if (bad > 5) break;
  }
  std::printf("%s: %llu runs, %llu datagrams delivered, %llu lost, %llu duplicated, "
              "%llu corrupted; clients retransmitted %llu B (%llu spurious losses); "
              "%.0f s of virtual time\n",
              st.name, static_cast<unsigned long long>(count),
              static_cast<unsigned long long>(totals.datagrams_to_core),
              static_cast<unsigned long long>(totals.datagrams_lost),
              static_cast<unsigned long long>(totals.datagrams_duplicated),
              static_cast<unsigned long long>(totals.datagrams_corrupted),
              static_cast<unsigned long long>(retransmitted),
              static_cast<unsigned long long>(spurious),
              std::chrono::duration<double>(totals.jumped).count());
  // The faults happened (a run that lost nothing proves nothing).
  if (st.loss > 0) {
    EXPECT_GT(retransmitted, 0u);
  }
  if (st.corrupt > 0) {
    EXPECT_GT(totals.datagrams_corrupted, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Links, RudpSim,
    ::testing::Values(Setting{"clean", 0, 0, 0, 200}, Setting{"loss1", 0.01, 0, 0, 200},
                      Setting{"loss5_dup_corrupt", 0.05, 0.05, 0.05, 400},
                      Setting{"loss10", 0.10, 0.02, 0.02, 400},
                      Setting{"loss20", 0.20, 0.02, 0.02, 300},
                      Setting{"loss30_dup_corrupt", 0.30, 0.05, 0.05, 300}),
    [](const ::testing::TestParamInfo<Setting>& p) { return std::string(p.param.name); });

}  // namespace
}  // namespace sluice::rudptest
