// rudp/cc's BBR and Vegas against a packet-level model of one path, in
// virtual time (no sockets): a bottleneck of R bytes/s with a drop-tail
// queue of Q bytes, a propagation RTT after it, optional random loss in
// front of it from a seeded generator. The sender honours cwnd() and
// pacing_rate() (a token bucket of 10 datagrams, as rudp's sender), keeps
// a real DeliveryRate and RttEstimator, the receiver acks every packet on
// arrival, and a packet is lost once 3 packets sent after it are acked
// (RFC 9002 §6.1.1). The figures the tests measure are printed.
//
// Also: the windowed filter on its own, Vegas' loss response from
// hand-built events, and the registry's names.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/sim_rng.h"
#include "rudp/cc/bbr.h"
#include "rudp/cc/delivery_rate.h"
#include "rudp/cc/registry.h"
#include "rudp/cc/vegas.h"
#include "rudp/cc/windowed_filter.h"

namespace sluice::rudp::cc {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kMss = 1400;

struct Path {
  uint64_t rate = 2'500'000;         // bytes/s (20 Mbit/s)
  uint64_t queue = 300'000;          // bytes the bottleneck buffers (3 BDP)
  Duration rtt = milliseconds(40);   // propagation, both ways
  double loss = 0;                   // random, before the bottleneck
  uint64_t seed = 1;
  // A route change: from `change_at` on, packets take `changed_rtt`.
  Duration change_at = Duration::max();
  Duration changed_rtt{};
  uint64_t bdp() const { return rate * static_cast<uint64_t>(rtt.count()) / 1'000'000'000; }
};

class Model {
 public:
  Model(std::unique_ptr<Controller> cc, Path path)
      : cc_(std::move(cc)), path_(path), rng_(path.seed), rtt_(milliseconds(100)) {}

  Controller& cc() { return *cc_; }
  // The application has data at `t` (default: always, a bulk transfer).
  std::function<bool(Duration)> has_data = [](Duration) { return true; };
  // Called after every ACK the controller has seen.
  std::function<void(Duration)> after_ack;

  // Runs the model until virtual time `end` (from the start).
  void run(Duration end) {
    const Clock::time_point stop = t0_ + end;
    while (true) {
      const Clock::time_point inf = Clock::time_point::max();
      const Clock::time_point t_ack = acks_.empty() ? inf : acks_.front().at;
      const Clock::time_point t_send = next_send_time();
      const Clock::time_point t_pto = pto_time();
      const Clock::time_point t = std::min({t_ack, t_send, t_pto, next_sample_});
      if (t > stop) break;
      now_ = t;
      if (t == t_ack) {
        const uint64_t pn = acks_.front().pn;
        acks_.pop_front();
        on_ack(pn);
      } else if (t == t_send) {
        send();
      } else if (t == t_pto) {
        declare_lost(sent_.size(), true);
      } else {
        sample();
      }
    }
    now_ = stop;
  }

  // Measurements, one per millisecond of virtual time.
  struct Tick {
    uint64_t queue = 0;  // bytes at the bottleneck (the one in service included): its delay
    uint64_t waiting = 0;  // packets whose service has not begun
    uint64_t delivered = 0;
    uint64_t cwnd = 0;
    std::string state;
  };
  const std::vector<Tick>& ticks() const { return ticks_; }
  // Goodput over [from, to) in bytes/s.
  double goodput(Duration from, Duration to) const {
    const size_t a = static_cast<size_t>(from / milliseconds(1));
    const size_t b = std::min(static_cast<size_t>(to / milliseconds(1)), ticks_.size() - 1);
    return static_cast<double>(ticks_[b].delivered - ticks_[a].delivered) * 1000.0 /
           static_cast<double>(b - a);
  }
  // The controller's states in order, repeats folded, with when each began.
  const std::vector<std::pair<std::string, Duration>>& states() const { return states_; }
  uint64_t pto_fires() const { return pto_fires_; }
  uint64_t lost_bytes() const { return rate_.lost(); }
  Duration now() const { return now_ - t0_; }
  Clock::time_point start() const { return t0_; }

 private:
  struct Sent {
    Clock::time_point at;
    DeliveryRate::PacketState state;
    bool acked = false;
    bool lost = false;
  };
  struct Arrival {
    Clock::time_point at;
    uint64_t pn;
  };

  Duration prop(Clock::time_point t) const {
    return t - t0_ >= path_.change_at ? path_.changed_rtt : path_.rtt;
  }
  uint64_t backlog(Clock::time_point t) const {
    if (link_free_ <= t) return 0;
    return static_cast<uint64_t>((link_free_ - t).count()) * path_.rate / 1'000'000'000;
  }

  Clock::time_point next_send_time() {
    if (in_flight_ + kMss > cc_->cwnd()) return Clock::time_point::max();
    if (!has_data(now_ - t0_)) {
      // §3.4 of the delivery-rate draft: the window has room, the
      // application nothing: what is in flight is app-limited.
      rate_.on_app_limited(in_flight_);
      // Look again a millisecond on (the tick), or at the next ACK.
      return Clock::time_point::max();
    }
    return cc_->pacing_rate() == 0 ? now_ : std::max(now_, next_send_at_);
  }

  // A stand-in for the probe timeout (the model does not send probes):
  // when everything in flight vanished (no ACK on the way), all of it is
  // declared lost after a PTO. Counted: a healthy run never needs it.
  Clock::time_point pto_time() const {
    if (in_flight_ == 0 || !acks_.empty()) return Clock::time_point::max();
    return last_event_ + rtt_.pto(Duration::zero());
  }

  void send() {
    const uint64_t rate = cc_->pacing_rate();
    Sent s;
    s.at = now_;
    s.state = rate_.on_sent(now_, in_flight_, kMss);
    in_flight_ += kMss;
    cc_->on_sent(now_, kMss, in_flight_);
    const uint64_t pn = sent_.size();
    sent_.push_back(s);
    last_event_ = now_;
    if (rate != 0) {
      // rudp's token bucket (session_send.cc): a burst of 10, then size/rate.
      const Duration burst(10 * kMss * 1'000'000'000 / rate);
      const Duration gap(kMss * 1'000'000'000 / rate);
      next_send_at_ = std::max(next_send_at_, now_ - burst) + gap;
    }
    if (rng_.chance(path_.loss)) return;                   // random loss
    if (backlog(now_) + kMss > path_.queue) return;        // drop-tail
    link_free_ = std::max(now_, link_free_) + Duration(kMss * 1'000'000'000 / path_.rate);
    acks_.push_back({link_free_ + prop(now_), pn});
  }

  void on_ack(uint64_t pn) {
    Sent& s = sent_[pn];
    last_event_ = now_;
    if (s.acked || s.lost) return;  // the model never reorders; lost ones are gone
    s.acked = true;
    rate_.begin_ack();
    const uint64_t prior_in_flight = in_flight_;
    in_flight_ -= kMss;
    rate_.on_acked(now_, s.at, kMss, s.state);
    largest_acked_ = std::max(largest_acked_, pn);
    rtt_.on_sample(now_ - s.at, Duration::zero());
    // RFC 9002 §6.1.1: lost once kPacketThreshold (3) later packets are acked.
    if (largest_acked_ >= 3) declare_lost(largest_acked_ - 2, false);
    AckEvent ev;
    ev.now = now_;
    ev.bytes_acked = kMss;
    ev.prior_in_flight = prior_in_flight;
    ev.bytes_in_flight = in_flight_;
    ev.largest_sent = s.at;
    ev.has_rtt_sample = true;
    ev.rtt_sample = rtt_.latest();
    ev.rtt = &rtt_;
    ev.rate = rate_.finish(rtt_.min());
    ev.delivered = rate_.delivered();
    ev.app_limited = !has_data(now_ - t0_);
    cc_->on_ack(ev);
    note_state();
    if (after_ack) after_ack(now_ - t0_);
  }

  // Everything unresolved below `below` is lost.
  void declare_lost(uint64_t below, bool by_timeout) {
    uint64_t bytes = 0;
    Clock::time_point last{};
    for (; first_open_ < below; ++first_open_) {
      Sent& s = sent_[first_open_];
      if (s.acked || s.lost) continue;
      s.lost = true;
      bytes += kMss;
      last = s.at;
    }
    if (bytes == 0) return;
    if (by_timeout) ++pto_fires_;
    in_flight_ -= bytes;
    rate_.on_lost(bytes);
    LossEvent ev;
    ev.now = now_;
    ev.bytes_lost = bytes;
    ev.bytes_in_flight = in_flight_;
    ev.largest_lost_sent = last;
    ev.delivered = rate_.delivered();
    cc_->on_loss(ev);
    note_state();
  }

  void sample() {
    Tick k;
    k.queue = backlog(now_);
    k.waiting = k.queue == 0 ? 0 : (k.queue + kMss - 1) / kMss - 1;
    k.delivered = rate_.delivered();
    k.cwnd = cc_->cwnd();
    k.state = std::string(cc_->state());
    ticks_.push_back(k);
    next_sample_ += milliseconds(1);
  }

  void note_state() {
    const std::string_view st = cc_->state();
    if (states_.empty() || states_.back().first != st) states_.emplace_back(st, now_ - t0_);
  }

  std::unique_ptr<Controller> cc_;
  Path path_;
  sim::Rng rng_;
  RttEstimator rtt_;
  DeliveryRate rate_;
  // Far from the clock's epoch, so no "time zero" collides with a real time.
  const Clock::time_point t0_ = Clock::time_point{} + seconds(1000);
  Clock::time_point now_ = t0_;
  Clock::time_point next_send_at_ = t0_;
  Clock::time_point next_sample_ = t0_;
  Clock::time_point link_free_ = t0_;
  Clock::time_point last_event_ = t0_;
  std::deque<Arrival> acks_;
  std::vector<Sent> sent_;
  uint64_t in_flight_ = 0;
  uint64_t largest_acked_ = 0;
  uint64_t first_open_ = 0;
  uint64_t pto_fires_ = 0;
  std::vector<Tick> ticks_;
  std::vector<std::pair<std::string, Duration>> states_;
};

Config config() {
  Config c;
  c.max_datagram = kMss;
  return c;
}

Duration first(const Model& m, const std::string& state) {
  for (const auto& [s, t] : m.states()) {
    if (s == state) return t;
  }
  return Duration::max();
}

double percentile(std::vector<uint64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))]);
}

double ms(Duration d) { return static_cast<double>(d.count()) / 1e6; }

Bbr& as_bbr(Model& m) { return dynamic_cast<Bbr&>(m.cc()); }
Vegas& as_vegas(Model& m) { return dynamic_cast<Vegas&>(m.cc()); }

// Queue occupancy over [from, to) of the run, in bytes, one value per ms.
std::vector<uint64_t> queue_over(const Model& m, Duration from, Duration to) {
  std::vector<uint64_t> q;
  const auto& t = m.ticks();
  for (size_t i = static_cast<size_t>(from / milliseconds(1));
       i < std::min(t.size(), static_cast<size_t>(to / milliseconds(1))); ++i) {
    q.push_back(t[i].queue);
  }
  return q;
}

double mean(const std::vector<uint64_t>& v) {
  double s = 0;
  for (uint64_t x : v) s += static_cast<double>(x);
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

TEST(RudpCcModel, BbrConvergesToTheBottleneckAndDrainsItsQueue) {
  const Path p;
  Model m(create("bbr", config()), p);
  Bbr& bbr = as_bbr(m);
  uint64_t queue_at_drain_exit = UINT64_MAX;
  m.after_ack = [&](Duration) {
    if (queue_at_drain_exit == UINT64_MAX && bbr.state() == "probe_bw") {
      queue_at_drain_exit = m.ticks().empty() ? 0 : m.ticks().back().queue;
    }
  };
  const Duration end = seconds(10);
  m.run(end);

  // startup -> drain -> probe_bw, and no PROBE_RTT within 10 s.
  ASSERT_EQ(m.states().size(), 3u);
  EXPECT_EQ(m.states()[0].first, "startup");
  EXPECT_EQ(m.states()[1].first, "drain");
  EXPECT_EQ(m.states()[2].first, "probe_bw");
  const Duration probe_bw = m.states()[2].second;
  EXPECT_LT(probe_bw, seconds(2));

  const double bw_err = std::abs(static_cast<double>(bbr.btl_bw()) / p.rate - 1);
  const double rtt_err = ms(bbr.rtprop()) / ms(p.rtt) - 1;
  EXPECT_LE(bw_err, 0.10);
  EXPECT_GE(rtt_err, 0.0);
  EXPECT_LE(rtt_err, 0.10);

  // DRAIN left (almost) nothing queued; in PROBE_BW the queue is the
  // 1.25 phase's quarter BDP at most, and mostly none.
  EXPECT_LE(queue_at_drain_exit, p.bdp() / 10);
  const std::vector<uint64_t> q = queue_over(m, probe_bw, end);
  const double q95_ms = percentile(q, 0.95) * 1000 / p.rate;
  const double qmean_ms = mean(q) * 1000 / p.rate;
  EXPECT_LE(q95_ms, 0.25 * ms(p.rtt));
  EXPECT_LE(qmean_ms, 0.10 * ms(p.rtt));

  const double util = m.goodput(probe_bw, end) / p.rate;
  EXPECT_GE(util, 0.90);
  EXPECT_EQ(m.pto_fires(), 0u);
  std::printf(
      "bbr clean: probe_bw at %.0f ms; btl_bw %.4f of R (err %.2f%%), rtprop %.3f ms (err "
      "%.2f%%); queue at drain exit %llu B; probe_bw queue p95 %.2f ms mean %.2f ms; "
      "utilisation %.3f; lost %llu B\n",
      ms(probe_bw), static_cast<double>(bbr.btl_bw()) / p.rate, bw_err * 100, ms(bbr.rtprop()),
      rtt_err * 100, static_cast<unsigned long long>(queue_at_drain_exit), q95_ms, qmean_ms, util,
      static_cast<unsigned long long>(m.lost_bytes()));
}

TEST(RudpCcModel, BbrToleratesRandomLoss) {
  Path p;
  p.loss = 0.05;
  p.seed = 7;
  Model m(create("bbr", config()), p);
  Bbr& bbr = as_bbr(m);
  const Duration end = seconds(20);
  m.run(end);
  const double util = m.goodput(seconds(2), end) / p.rate;
  EXPECT_GE(util, 0.50);
  std::printf("bbr 5%% loss: utilisation %.3f; btl_bw %.3f of R; rtprop %.3f ms; state %s\n",
              util, static_cast<double>(bbr.btl_bw()) / p.rate, ms(bbr.rtprop()),
              std::string(bbr.state()).c_str());
}

TEST(RudpCcModel, BbrRecoversFromStartupOverflowingAShallowBuffer) {
  // Half a BDP of buffer: STARTUP's 2.885 gain overflows it, and packet
  // conservation (§4.2.3.4) has to carry the flow through the losses.
  Path p;
  p.queue = p.bdp() / 2;
  Model m(create("bbr", config()), p);
  Bbr& bbr = as_bbr(m);
  const Duration end = seconds(8);
  m.run(seconds(2));
  const uint64_t startup_lost = m.lost_bytes();
  m.run(end);
  ASSERT_GE(m.states().size(), 3u);
  EXPECT_EQ(m.states()[2].first, "probe_bw");
  // Once the model is right, PROBE_BW's quarter-BDP probes fit the buffer.
  const uint64_t steady_lost = m.lost_bytes() - startup_lost;
  EXPECT_EQ(steady_lost, 0u);
  const double bw = static_cast<double>(bbr.btl_bw()) / p.rate;
  EXPECT_GE(bw, 0.9);
  EXPECT_LE(bw, 1.1);
  const double util = m.goodput(seconds(2), end) / p.rate;
  EXPECT_GE(util, 0.90);
  EXPECT_EQ(m.pto_fires(), 0u);
  std::printf(
      "bbr shallow buffer: lost %llu B (%.1f BDP) in the first 2 s, %llu B after; btl_bw %.3f "
      "of R; utilisation %.3f\n",
      static_cast<unsigned long long>(startup_lost),
      static_cast<double>(startup_lost) / static_cast<double>(p.bdp()),
      static_cast<unsigned long long>(steady_lost), bw, util);
}

TEST(RudpCcModel, BbrProbesRttWhenTheMinimumGoesStale) {
  // A route change at 5 s lengthens the RTT from 40 to 48 ms: RTprop is
  // not refreshed after it (a longer sample never lowers a minimum), so
  // PROBE_RTT comes 10 s after the last refresh and its new measurement
  // takes the longer path in.
  Path p;
  p.change_at = seconds(5);
  p.changed_rtt = milliseconds(48);
  Model m(create("bbr", config()), p);
  Bbr& bbr = as_bbr(m);
  Duration stamp_before{};  // RTprop's stamp when PROBE_RTT first began
  bool probed = false;
  m.after_ack = [&](Duration) {
    probed = probed || bbr.state() == "probe_rtt";
    if (!probed) stamp_before = bbr.rtprop_stamp() - m.start();
  };
  // 17 s: pacing 1% below the estimate (bbr.cc) lets the queue empty, so
  // RTprop is refreshed up to the route change; PROBE_RTT is due 10 s on.
  m.run(seconds(17));
  const Duration entered = first(m, "probe_rtt");
  ASSERT_NE(entered, Duration::max());
  EXPECT_GE(entered - stamp_before, seconds(10));
  EXPECT_LE(entered - stamp_before, seconds(10) + 2 * p.rtt);
  // The window is 4 packets for the whole of PROBE_RTT, which lasts
  // 200 ms and a round trip, then PROBE_BW resumes.
  Duration left = Duration::max();
  for (size_t i = 0; i + 1 < m.states().size(); ++i) {
    if (m.states()[i].first == "probe_rtt") {
      left = m.states()[i + 1].second;
      EXPECT_EQ(m.states()[i + 1].first, "probe_bw");
      break;
    }
  }
  ASSERT_NE(left, Duration::max());
  EXPECT_GE(left - entered, milliseconds(200));
  EXPECT_LE(left - entered, milliseconds(200) + 4 * p.changed_rtt);
  uint64_t max_cwnd = 0;
  for (size_t i = static_cast<size_t>(entered / milliseconds(1)) + 1;
       i < static_cast<size_t>(left / milliseconds(1)); ++i) {
    max_cwnd = std::max(max_cwnd, m.ticks()[i].cwnd);
  }
  EXPECT_EQ(max_cwnd, 4 * kMss);
  const double rtt_err = ms(bbr.rtprop()) / ms(p.changed_rtt) - 1;
  EXPECT_GE(rtt_err, 0.0);
  EXPECT_LE(rtt_err, 0.10);
  EXPECT_GE(m.goodput(left, seconds(17)) / p.rate, 0.90);
  std::printf(
      "bbr probe_rtt: entered at %.0f ms, %.0f ms after RTprop's last refresh, for %.0f ms; "
      "rtprop then %.3f ms\n",
      ms(entered), ms(entered - stamp_before), ms(left - entered), ms(bbr.rtprop()));
}

TEST(RudpCcModel, BbrAppLimitedSamplesDoNotLowerTheEstimate) {
  // Converged by 3 s; then the application has data 2 ms in every 25 ms
  // for 3 s (60 round trips, far past the 10-round filter).
  const Path p;
  Model m(create("bbr", config()), p);
  m.has_data = [](Duration t) {
    return t < seconds(3) || t >= seconds(6) || (t / milliseconds(1)) % 25 < 2;
  };
  Bbr& bbr = as_bbr(m);
  m.run(seconds(6));
  EXPECT_LE(m.goodput(seconds(4), seconds(6)) / p.rate, 0.5);  // it was app-limited
  const double bw = static_cast<double>(bbr.btl_bw()) / p.rate;
  EXPECT_GE(bw, 0.9);
  EXPECT_LE(bw, 1.1);
  std::printf("bbr app-limited: btl_bw %.3f of R after 3 s at %.2f of R\n", bw,
              m.goodput(seconds(4), seconds(6)) / p.rate);
}

TEST(RudpCcModel, VegasKeepsAlphaToBetaPacketsQueued) {
  const Path p;
  const Config c = config();
  Model m(create("vegas", c), p);
  Vegas& vegas = as_vegas(m);
  const Duration end = seconds(20);
  m.run(end);
  EXPECT_EQ(vegas.state(), "vegas");
  // Vegas' diff counts the packets waiting behind the one in service (its
  // BaseRTT includes one service time), so that is what is measured.
  std::vector<uint64_t> w;
  for (size_t i = 5000; i < m.ticks().size(); ++i) w.push_back(m.ticks()[i].waiting);
  const double queued = mean(w);
  const double backlog = mean(queue_over(m, seconds(5), end)) / kMss;
  EXPECT_GE(queued, static_cast<double>(c.vegas_alpha));
  EXPECT_LE(queued, static_cast<double>(c.vegas_beta));
  const double util = m.goodput(seconds(5), end) / p.rate;
  EXPECT_GE(util, 0.90);
  EXPECT_EQ(m.lost_bytes(), 0u);
  std::printf(
      "vegas: %.2f packets waiting (time average; p5 %.0f, p95 %.0f), backlog %.2f packets "
      "with the one in service; last diff %.2f; cwnd %.1f packets for a BDP of %.1f; "
      "utilisation %.3f; base rtt %.3f ms\n",
      queued, percentile(w, 0.05), percentile(w, 0.95), backlog, vegas.last_diff(),
      static_cast<double>(vegas.cwnd()) / kMss, static_cast<double>(p.bdp()) / kMss, util,
      ms(vegas.base_rtt()));
}

TEST(RudpCcModel, VegasHalvesOncePerRecoveryPeriod) {
  const Config c = config();
  Vegas v(c);
  RttEstimator rtt;
  rtt.on_sample(milliseconds(40), Duration::zero());
  const Clock::time_point t0 = Clock::time_point{} + seconds(1000);
  auto loss = [&](Duration at, Duration newest_sent) {
    LossEvent ev;
    ev.now = t0 + at;
    ev.bytes_lost = kMss;
    ev.largest_lost_sent = t0 + newest_sent;
    v.on_loss(ev);
  };
  auto ack = [&](Duration at, Duration sent) {
    AckEvent ev;
    ev.now = t0 + at;
    ev.bytes_acked = kMss;
    ev.largest_sent = t0 + sent;
    ev.rtt = &rtt;
    v.on_ack(ev);
  };
  const uint64_t w0 = v.cwnd();
  EXPECT_EQ(w0, c.initial_window_packets * kMss);
  loss(milliseconds(1000), milliseconds(960));
  EXPECT_EQ(v.cwnd(), w0 / 2);
  EXPECT_EQ(v.state(), "recovery");
  // Sent before recovery began: the same congestion event.
  loss(milliseconds(1010), milliseconds(990));
  ack(milliseconds(1020), milliseconds(995));
  EXPECT_EQ(v.cwnd(), w0 / 2);
  EXPECT_EQ(v.state(), "recovery");
  // An ACK of a packet sent after it began ends recovery; a later loss
  // is a new event.
  ack(milliseconds(1045), milliseconds(1005));
  EXPECT_EQ(v.state(), "vegas");
  loss(milliseconds(1050), milliseconds(1020));
  EXPECT_EQ(v.cwnd(), w0 / 4);
  v.on_persistent_congestion(t0 + milliseconds(1100));
  EXPECT_EQ(v.cwnd(), c.min_window_packets * kMss);
  EXPECT_EQ(v.state(), "slow_start");
  loss(milliseconds(1200), milliseconds(1150));
  EXPECT_EQ(v.cwnd(), c.min_window_packets * kMss);  // never below the minimum
}

TEST(RudpCcModel, WindowedMaxFilter) {
  WindowedFilter<uint64_t, std::greater_equal<uint64_t>, uint64_t, uint64_t> f(10, 0);
  f.update(100, 0);
  f.update(50, 1);
  EXPECT_EQ(f.best(), 100u);
  f.update(80, 3);  // a quarter window on: a second-best from now
  f.update(70, 6);
  f.update(60, 9);  // half a window past the second-best: a third-best
  EXPECT_EQ(f.best(), 100u);
  EXPECT_EQ(f.second_best(), 80u);
  EXPECT_EQ(f.third_best(), 60u);
  f.update(10, 11);  // 100 has aged out: the next-best moves up
  EXPECT_EQ(f.best(), 80u);
  f.update(10, 14);
  EXPECT_EQ(f.best(), 60u);
  f.update(200, 15);  // a new maximum replaces everything at once
  EXPECT_EQ(f.best(), 200u);
  EXPECT_EQ(f.third_best(), 200u);
  f.update(5, 30);  // everything stale: the new sample alone
  EXPECT_EQ(f.best(), 5u);
}

TEST(RudpCcModel, WindowedMinFilter) {
  WindowedFilter<int, std::less_equal<int>, int, int> f(4, 0);
  f.update(30, 1);
  f.update(40, 2);
  f.update(20, 3);
  EXPECT_EQ(f.best(), 20);
  f.update(25, 5);
  f.update(50, 8);  // 20 (at 3) is older than the window
  EXPECT_GE(f.best(), 25);
}

TEST(RudpCcModel, RegistryHasBbrAndVegas) {
  const std::vector<std::string> names = available();
  EXPECT_EQ(names.front(), "cubic");  // the default
  EXPECT_NE(std::find(names.begin(), names.end(), "bbr"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "vegas"), names.end());
  std::unique_ptr<Controller> bbr = create("bbr", config());
  ASSERT_NE(bbr, nullptr);
  EXPECT_EQ(bbr->name(), "bbr");
  EXPECT_EQ(bbr->state(), "startup");
  EXPECT_EQ(bbr->cwnd(), 10 * kMss);
  EXPECT_GT(bbr->pacing_rate(), 0u);
  std::unique_ptr<Controller> vegas = create("vegas", config());
  ASSERT_NE(vegas, nullptr);
  EXPECT_EQ(vegas->name(), "vegas");
  EXPECT_EQ(vegas->state(), "slow_start");
  EXPECT_EQ(vegas->cwnd(), 10 * kMss);
}

}  // namespace
}  // namespace sluice::rudp::cc
