// Time scenarios: loop timers, idle detection, the heartbeat service over
// TCP; all in virtual time, with time jumps (stalls).
#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "codec/heartbeat.h"
#include "core/connection.h"
#include "core/event_loop.h"
#include "io/sim_backend.h"
#include "servers/heartbeat_service.h"
#include "tests/sim_scenarios.h"

namespace sluice::simtest {

using namespace std::chrono_literals;
using sim::StreamPeer;

namespace {
std::chrono::milliseconds ms_of(SimClock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}
// A timer may run up to this late without a jump: the 1 ms tick, and the
// wait's timeout rounded up to whole milliseconds.
constexpr auto kSlack = 2ms;
}  // namespace

// ---- timers ----
// One-shot and periodic timers on an EventLoop over a world that stalls
// often: none fires before its deadline (by the loop's now()), one-shots
// fire in deadline order (ties in the order armed), none later than its
// deadline plus the stalls meanwhile plus a tick.
Outcome run_timers(uint64_t seed) {
  sim::Rng pick(seed ^ 0x713e);
  sim::SimFaults f;
  f.jump = pick.chance(0.8) ? 0.3 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 1500));
  Harness h(seed, f);
  const size_t fds_before = count_fds();
  {
    EventLoop loop(h.world().backend());
    struct Shot {
      SimClock::time_point due;
      bool fired = false;
    };
    std::vector<Shot> shots(pick.range(1, 60));
    std::vector<size_t> order;  // indices in firing order
    int periodic_left = 0;
    auto check_late = [&](SimClock::time_point due, const char* what, size_t i) {
      const SimClock::time_point now = loop.now();
      if (now < due) h.fail("{} {}: fired {} us early", what, i, (due - now).count() / 1000);
      const auto allowed = kSlack + h.world().stalled_between(due, now);
      if (now - due > allowed) {
        h.fail("{} {}: fired {} ms late (allowed {} ms)", what, i, ms_of(now - due).count(),
               ms_of(allowed).count());
      }
      if (loop.clock() < loop.now()) h.fail("clock() behind now()");
    };
    auto maybe_done = [&] {
      if (order.size() == shots.size() && periodic_left == 0) loop.quit();
    };
    loop.run([&] {
      h.world().resume();
      // A deadline in virtual time: quit whatever happens.
      loop.run_after(600s, [&] {
        h.fail("hang: timers not done after 600 s of virtual time");
        loop.quit();
      });
      for (size_t i = 0; i < shots.size(); ++i) {
        const auto d = std::chrono::milliseconds(pick.range(0, 3000)) +
                       std::chrono::microseconds(pick.chance(0.5) ? pick.range(0, 999) : 0);
        shots[i].due = loop.clock() + d;
        loop.run_after(d, [&, i] {
          if (shots[i].fired) h.fail("timer {} fired twice", i);
          shots[i].fired = true;
          check_late(shots[i].due, "timer", i);
          order.push_back(i);
          maybe_done();
        });
      }
      const size_t periodics = pick.range(0, 5);
      for (size_t j = 0; j < periodics; ++j) {
        const auto every = std::chrono::milliseconds(pick.range(1, 300));
        const int times = static_cast<int>(pick.range(1, 10));
        ++periodic_left;
        struct Tick {
          int n = 0;
          SimClock::time_point start;
          TimerId id = 0;
        };
        auto tick = std::make_shared<Tick>();
        tick->start = loop.clock();
        tick->id = loop.run_every(every, [&, tick, every, times, j] {
          // Never early: the k-th run is due k intervals after arming (a
          // late run does not push the later ones back).
          ++tick->n;
          if (loop.now() < tick->start + tick->n * every) {
            h.fail("periodic {}: run {} came {} us early", j, tick->n,
                   (tick->start + tick->n * every - loop.now()).count() / 1000);
          }
          if (tick->n == times) {
            loop.cancel(tick->id);
            --periodic_left;
            maybe_done();
          }
        });
      }
      maybe_done();
    });
    for (size_t k = 1; k < order.size(); ++k) {
      const Shot& a = shots[order[k - 1]];
      const Shot& b = shots[order[k]];
      // Deadlines round up to the 1 ms tick; within a tick, deadline
      // order, ties in arming order (core/timer_queue.h).
      if (a.due > b.due || (a.due == b.due && order[k - 1] > order[k])) {
        h.fail("timer {} (due +{} us) ran before timer {} (due +{} us)", order[k - 1],
               (a.due - sim::World::kEpoch).count() / 1000, order[k],
               (b.due - sim::World::kEpoch).count() / 1000);
        break;
      }
    }
    if (order.size() != shots.size()) h.fail("{} of {} timers fired", order.size(), shots.size());
  }
  if (count_fds() != fds_before) h.fail("descriptor leak");
  Outcome o;
  o.violations = std::move(h.violations());
  o.stats = h.world().stats();
  o.virtual_time = h.world().now() - sim::World::kEpoch;
  return o;
}

// ---- idle ----
// reader-idle with idle_close. Pingers write a byte more often than the
// idle period for a while, then shut down: never called idle. Silent peers
// write once: called idle no earlier than the period after their last
// byte, and no later than that plus the stalls meanwhile plus a tick.
// In half the runs the handler closes instead of idle_close: all-idle is
// on as well, so a silent peer is reader- and all-idle at the same check,
// and the handler aborts it from the first on_idle: the second must not
// follow (nothing after on_close), also when the back end releases the
// connection late.
Outcome run_idle(uint64_t seed) {
  sim::Rng pick(seed ^ 0x1d1e);
  sim::SimFaults f;
  f.max_segment = pick.range(1, 100);
  f.max_delay = std::chrono::microseconds(pick.range(0, 5000));
  f.jump = pick.chance(0.7) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 3000));
  f.late_detach = pick.chance(0.5) ? 0.5 : 0.0;
  Harness h(seed, f);
  ServerOptions o;
  const auto period = std::chrono::milliseconds(pick.range(50, 500));
  const bool handler_closes = pick.chance(0.5);
  o.idle.reader = period;
  if (handler_closes) o.idle.all = period;
  o.idle_close = !handler_closes;
  struct App final : Handler {
    Harness* h;
    bool handler_closes = false;
    std::chrono::milliseconds period{};
    std::map<uint64_t, bool> pinger;  // peer id -> pings
    struct State {
      uint64_t peer = 0;
      SimClock::time_point last_in;
    };
    void on_open(Connection& c) override {
      State& s = c.state<State>();
      if (StreamPeer* p = h->world().peer_for(c.fd())) s.peer = p->id();
      s.last_in = c.loop().clock();
    }
    void on_message(Connection& c, std::string_view) override {
      State& s = c.state<State>();
      s.last_in = c.loop().clock();
    }
    void on_idle(Connection& c, IdleKind kind) override {
      const State& s = c.state<State>();
      if (kind != IdleKind::kReader && !(handler_closes && kind == IdleKind::kAll)) {
        h->fail("conn #{}: idle kind {}", c.id(), to_string(kind));
      }
      if (pinger[s.peer]) h->fail("peer {}: pings, but was called idle at {:.3f} ms", s.peer, h->ms());
      const SimClock::duration quiet = c.loop().now() - s.last_in;
      if (quiet < period) {
        h->fail("peer {}: idle after {} ms < {} ms", s.peer, ms_of(quiet).count(), period.count());
      }
      const auto allowed =
          period + kSlack + h->world().stalled_between(s.last_in, c.loop().now());
      if (quiet > allowed) {
        h->fail("peer {}: idle only after {} ms (allowed {} ms)", s.peer, ms_of(quiet).count(),
                ms_of(allowed).count());
      }
      ++idles;
      if (handler_closes) c.abort();  // on_close now: no second kind follows
    }
    void on_close(Connection& c, CloseReason reason, int) override {
      const State& s = c.state<State>();
      const CloseReason idle_reason = handler_closes ? CloseReason::kLocal : CloseReason::kIdle;
      if (reason == idle_reason) ++idle_closes;
      if (!pinger[s.peer] && reason != idle_reason) {
        h->fail("silent peer {}: closed as {}", s.peer, to_string(reason));
      }
    }
    int idles = 0, idle_closes = 0;
  } app;
  app.h = &h;
  app.period = period;
  app.handler_closes = handler_closes;
  std::vector<StreamPeer*> peers;
  int silent = 0;
  size_t ended = 0;
  auto script = [&](Server& server) {
    h.deadline(120s);
    const size_t n = h.rng().range(1, 6);
    for (size_t i = 0; i < n; ++i) {
      StreamPeer* p = h.world().connect(server.port());
      peers.push_back(p);
      const bool pings = h.rng().chance(0.5);
      app.pinger[p->id()] = pings;
      silent += pings ? 0 : 1;
      auto end = [&, n] {
        if (++ended == n) h.finish();
      };
      p->on_eof = end;
      p->on_reset = [end](int) { end(); };
      p->write("x");
      if (!pings) continue;
      // A byte every 1/10 .. 1/2 of the period, for up to 20 periods.
      const auto every = std::chrono::microseconds(
          h.rng().range(period.count() * 100, period.count() * 500));
      const int count = static_cast<int>(h.rng().range(1, 40));
      for (int k = 1; k <= count; ++k) {
        h.world().after(every * k, [p] { p->write("p"); });
      }
      h.world().after(every * count + every / 2, [p] { p->shutdown(); });
    }
  };
  auto check = [&] {
    if (app.idle_closes != silent) h.fail("{} idle closes for {} silent peers", app.idle_closes, silent);
    for (StreamPeer* p : peers) {
      if (!p->got_eof() && p->error() == 0) h.fail("peer {}: neither EOF nor error", p->id());
    }
  };
  return run_server(h, o, nullptr, app, script, check);
}

// ---- heartbeat over TCP ----
// servers/heartbeat_service.h with reader-idle = interval x misses: peers
// that PING often enough stay until they leave; silent peers are dropped
// as timed out, no earlier than interval x misses after their last PING.
Outcome run_heartbeat_tcp(uint64_t seed) {
  namespace hb = codec::heartbeat;
  sim::Rng pick(seed ^ 0x4b7c);
  sim::SimFaults f;
  f.max_segment = pick.range(1, 64);
  f.max_delay = std::chrono::microseconds(pick.range(0, 5000));
  f.jump = pick.chance(0.6) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 3000));
  Harness h(seed, f);
  servers::HeartbeatOptions ho;
  ho.interval = std::chrono::milliseconds(pick.range(20, 300));
  ho.misses = static_cast<int>(pick.range(2, 4));
  servers::HeartbeatTcpHandler service(ho);
  // Records, per connection, which peer it is and when its last PING came.
  struct Spy final : Handler {
    Harness* h;
    Handler* inner;
    servers::HeartbeatOptions ho;
    std::map<uint64_t, bool> pinger;
    struct State {
      uint64_t peer = 0;
      SimClock::time_point last;
    };
    std::map<uint64_t, State> conns;  // conn id -> state (the service owns conn.state)
    int timeouts = 0;
    void on_open(Connection& c) override {
      State& s = conns[c.id()];
      if (StreamPeer* p = h->world().peer_for(c.fd())) s.peer = p->id();
      s.last = c.loop().clock();
      inner->on_open(c);
    }
    void on_message(Connection& c, std::string_view d) override {
      State& s = conns[c.id()];
      s.last = c.loop().clock();
      inner->on_message(c, d);
    }
    void on_idle(Connection& c, IdleKind k) override {
      const State& s = conns[c.id()];
      const SimClock::duration quiet = c.loop().now() - s.last;
      if (pinger[s.peer]) h->fail("pinging peer {} dropped at {:.3f} ms", s.peer, h->ms());
      if (quiet < ho.timeout()) {
        h->fail("peer {}: dropped after {} ms < {} ms", s.peer, ms_of(quiet).count(),
                ms_of(ho.timeout()).count());
      }
      const auto allowed =
          ho.timeout() + kSlack + h->world().stalled_between(s.last, c.loop().now());
      if (quiet > allowed) {
        h->fail("peer {}: dropped only after {} ms (allowed {} ms)", s.peer,
                ms_of(quiet).count(), ms_of(allowed).count());
      }
      ++timeouts;
      inner->on_idle(c, k);
    }
    void on_peer_shutdown(Connection& c) override { inner->on_peer_shutdown(c); }
    void on_close(Connection& c, CloseReason r, int e) override { inner->on_close(c, r, e); }
  } spy;
  spy.h = &h;
  spy.inner = &service;
  spy.ho = ho;
  std::vector<StreamPeer*> peers;
  int silent = 0;
  size_t ended = 0;
  auto script = [&](Server& server) {
    h.deadline(120s);
    const size_t n = h.rng().range(1, 6);
    for (size_t i = 0; i < n; ++i) {
      StreamPeer* p = h.world().connect(server.port());
      peers.push_back(p);
      const bool pings = h.rng().chance(0.6);
      spy.pinger[p->id()] = pings;
      silent += pings ? 0 : 1;
      auto end = [&, n] {
        if (++ended == n) h.finish();
      };
      p->on_eof = end;
      p->on_reset = [end](int) { end(); };
      p->write(hb::frame(hb::view(hb::encode_ping(1, 0))));
      if (!pings) continue;
      // A PING every 1/4 .. 1 interval (the service allows `misses`).
      const auto every = std::chrono::microseconds(
          h.rng().range(ho.interval.count() * 250, ho.interval.count() * 1000));
      const int count = static_cast<int>(h.rng().range(1, 30));
      for (int k = 1; k <= count; ++k) {
        h.world().after(every * k, [p, k] { p->write(hb::frame(hb::view(hb::encode_ping(k + 1, 0)))); });
      }
      h.world().after(every * count + every / 2, [p] { p->shutdown(); });
    }
  };
  auto check = [&] {
    if (spy.timeouts != silent) h.fail("{} timeouts for {} silent peers", spy.timeouts, silent);
    if (service.counters().joins != peers.size()) {
      h.fail("{} joins for {} peers", service.counters().joins.load(), peers.size());
    }
    if (service.counters().drops != service.counters().joins) {
      h.fail("{} joins, {} drops", service.counters().joins.load(),
             service.counters().drops.load());
    }
  };
  ServerOptions o;
  o.idle = ho.idle();
  return run_server(h, o, hb::make_tcp_codec(), spy, script, check);
}

}  // namespace sluice::simtest

namespace sluice::simtest {

// ---- idle close of a peer that does not read ----
// reader-idle with idle_close; the server owes a silent peer more than its
// window takes. The idle close cannot flush, so the next idle check aborts
// it: on_close(kIdle) must say output was dropped (-ETIMEDOUT). A close
// that reports no error delivered everything, then EOF.
Outcome run_idle_abort(uint64_t seed) {
  sim::Rng pick(seed ^ 0x1dab);
  sim::SimFaults f;
  f.max_delay = std::chrono::microseconds(pick.range(0, 3000));
  f.min_window = 512;
  f.max_window = 8192;
  f.jump = pick.chance(0.3) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 1000));
  Harness h(seed, f);
  ServerOptions o;
  o.idle.reader = std::chrono::milliseconds(pick.range(20, 300));
  o.idle_close = true;
  const size_t reply = pick.range(16, 64) * 1024;
  struct App final : Handler {
    sim::World* world;
    size_t reply = 0;
    struct Closed {
      CloseReason reason{};
      int err = 0;
    };
    std::map<uint64_t, Closed> closed;
    void on_open(Connection& c) override { c.send(std::string(reply, 'r')); }
    void on_message(Connection&, std::string_view) override {}
    void on_close(Connection& c, CloseReason reason, int err) override {
      if (StreamPeer* p = world->peer_for(c.fd())) closed[p->id()] = {reason, err};
    }
  } app;
  app.world = &h.world();
  app.reply = reply;
  struct PeerRun {
    StreamPeer* p;
    bool reads;
    size_t got = 0;
  };
  std::vector<PeerRun> peers(pick.range(1, 4));
  size_t ended = 0;
  auto script = [&](Server& server) {
    h.deadline(60s);
    for (PeerRun& pr : peers) {
      PeerRun* r = &pr;
      r->p = h.world().connect(server.port());
      r->reads = h.rng().chance(0.5);
      r->p->set_reading(r->reads);
      r->p->on_data = [r](std::string_view d) { r->got += d.size(); };
      auto end = [&] {
        if (++ended == peers.size()) h.finish();
      };
      r->p->on_eof = end;
      // A non-reader never sees the EOF: it is done once closed server-side.
      if (!r->reads) {
        h.world().after(10s, end);
      }
    }
  };
  auto check = [&] {
    for (const PeerRun& r : peers) {
      auto it = app.closed.find(r.p->id());
      if (it == app.closed.end()) {
        h.fail("peer {}: never closed", r.p->id());
        continue;
      }
      const App::Closed& c = it->second;
      if (c.reason != CloseReason::kIdle) h.fail("peer {}: closed as {}", r.p->id(), to_string(c.reason));
      const size_t delivered = r.got + r.p->unread();
      if (delivered < reply && c.err == 0) {
        h.fail("peer {}: {} of {} bytes delivered, closed as idle with no error", r.p->id(),
               delivered, reply);
      }
      // A reader that is slower than the idle period may be cut off too
      // (the flush gets one more period; core/connection.h), but only with
      // the error said: with none, it got everything, then EOF.
      if (r.reads && c.err == 0 && (r.got != reply || !r.p->got_eof())) {
        h.fail("reading peer {}: got {} of {} bytes{}", r.p->id(), r.got, reply,
               r.p->got_eof() ? "" : ", no EOF");
      }
    }
  };
  return run_server(h, o, nullptr, app, script, check);
}

}  // namespace sluice::simtest
