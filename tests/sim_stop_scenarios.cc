// Stop and half-close scenarios: graceful stop, the stop deadline, and a
// server that half-closes while its peer keeps sending.
#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/connection.h"
#include "core/event_loop.h"
#include "tests/sim_scenarios.h"

namespace sluice::simtest {

using namespace std::chrono_literals;
using sim::StreamPeer;

// ---- graceful stop ----
// Peers keep sending while the server stops: each gets the echo of every
// byte the server took from it before it closed (no more, no less, in
// order), then EOF -- unless the network was too slow to flush by the stop
// deadline (seed 5887: a 13-byte window), and then the handler heard
// -ETIMEDOUT.
Outcome run_stop(uint64_t seed) {
  sim::Rng pick(seed ^ 0x5709);
  sim::SimFaults f = shuffled_network(pick);
  f.jump = pick.chance(0.2) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 500));
  Harness h(seed, f);
  struct App final : Handler {
    sim::World* world;
    std::map<uint64_t, size_t> echoed;  // peer id -> bytes echoed
    void on_open(Connection& c) override {
      if (sim::StreamPeer* p = world->peer_for(c.fd())) c.state<State>().peer = p->id();
    }
    void on_message(Connection& c, std::string_view d) override {
      c.state<State>().bytes += d.size();
      c.send(d);
    }
    void on_close(Connection& c, CloseReason, int err) override {
      const State* s = c.find_state<State>();
      if (s && s->peer) {
        echoed[s->peer] = s->bytes;
        if (err != 0) cut[s->peer] = err;
      }
    }
    std::map<uint64_t, int> cut;  // peer id -> the error its close reported
    struct State {
      uint64_t peer = 0;
      size_t bytes = 0;
    };
  } app;
  app.world = &h.world();
  struct PeerRun {
    StreamPeer* p;
    std::string sent, got;
  };
  std::vector<PeerRun> peers(pick.range(1, 5));
  auto script = [&](Server& server) {
    h.deadline(60s);
    for (size_t i = 0; i < peers.size(); ++i) {
      PeerRun* r = &peers[i];
      r->p = h.world().connect(server.port());
      r->p->on_data = [r](std::string_view d) { r->got.append(d); };
      // Writes every 0-5 ms, for up to 300 ms: through the stop.
      SimClock::duration t{};
      for (int k = 0; k < 100; ++k) {
        t += std::chrono::microseconds(h.rng().range(0, 5000));
        std::string bytes = random_bytes(h.rng(), h.rng().range(1, 3000));
        h.world().after(t, [r, bytes] {
          if (r->p->write(bytes)) r->sent += bytes;
        });
      }
    }
    // Stop while they are busy.
    h.world().after(std::chrono::milliseconds(h.rng().range(1, 200)), [&] { h.finish(); });
  };
  auto check = [&] {
    for (size_t i = 0; i < peers.size(); ++i) {
      const PeerRun& r = peers[i];
      auto it = app.echoed.find(r.p->id());
      const size_t owed = it == app.echoed.end() ? 0 : it->second;
      if (r.p->error() != 0) {
        // Refused: it connected after the listener closed.
        if (r.p->error() != -ECONNREFUSED || owed != 0 || !r.got.empty()) {
          h.fail("peer {}: error {} after {} bytes", i, r.p->error(), r.got.size());
        }
        continue;
      }
      if (r.got.size() > owed || r.sent.compare(0, r.got.size(), r.got) != 0) {
        h.fail("peer {}: got {} bytes, not a prefix of the {} echoed", i, r.got.size(), owed);
      }
      // Short only when the handler heard why: a network too slow to
      // flush by the stop deadline (a window of a few bytes) is cut off.
      const int err = app.cut.count(r.p->id()) ? app.cut[r.p->id()] : 0;
      if (r.got.size() < owed && err == 0) {
        h.fail("peer {}: got {} of {} bytes echoed; the close reported no error", i,
               r.got.size(), owed);
      }
      if (!r.p->got_eof()) h.fail("peer {}: no EOF after stop", i);
    }
  };
  ServerOptions o;
  o.stop_deadline = 5000ms;
  return run_server(h, o, nullptr, app, script, check);
}

// ---- stop deadline ----
// Some peers stop reading while the server stops: stop() still ends by its
// deadline, and a peer that did not get every byte echoed to it was
// closed with an error the handler heard (the deadline cut it off);
// every other peer got all of it, then EOF.
Outcome run_stop_deadline(uint64_t seed) {
  sim::Rng pick(seed ^ 0xdead);
  sim::SimFaults f = shuffled_network(pick);
  f.max_window = std::min<size_t>(f.max_window, 16 * 1024);
  Harness h(seed, f);
  ServerOptions o;
  o.stop_deadline = std::chrono::milliseconds(pick.range(10, 2000));
  struct App final : Handler {
    sim::World* world;
    struct Closed {
      size_t echoed = 0;
      CloseReason reason{};
      int err = 0;
    };
    std::map<uint64_t, Closed> closed;  // peer id -> how its connection ended
    SimClock::time_point stop_began{}, last_close{};
    void on_open(Connection& c) override {
      if (sim::StreamPeer* p = world->peer_for(c.fd())) c.state<State>().peer = p->id();
    }
    void on_message(Connection& c, std::string_view d) override {
      c.state<State>().bytes += d.size();
      c.send(d);
    }
    void on_server_stop(EventLoop& loop, size_t) override { stop_began = loop.clock(); }
    void on_close(Connection& c, CloseReason reason, int err) override {
      last_close = c.loop().clock();
      const State& s = c.state<State>();
      closed[s.peer] = {s.bytes, reason, err};
    }
    struct State {
      uint64_t peer = 0;
      size_t bytes = 0;
    };
  } app;
  app.world = &h.world();
  struct PeerRun {
    StreamPeer* p;
    std::string sent, got;
    bool stopped_reading = false;
  };
  std::vector<PeerRun> peers(pick.range(1, 5));
  auto script = [&](Server& server) {
    h.deadline(60s);
    for (PeerRun& pr : peers) {
      PeerRun* r = &pr;
      r->p = h.world().connect(server.port());
      r->p->on_data = [r](std::string_view d) { r->got.append(d); };
      // Enough to fill a small window and the server's output.
      for (int k = 0; k < 20; ++k) {
        std::string bytes = random_bytes(h.rng(), h.rng().range(1, 8000));
        h.world().after(std::chrono::microseconds(h.rng().range(0, 20000)), [r, bytes] {
          if (r->p->write(bytes)) r->sent += bytes;
        });
      }
      if (h.rng().chance(0.5)) {
        h.world().after(std::chrono::microseconds(h.rng().range(0, 30000)),
                        [r] {
                          r->p->set_reading(false);
                          r->stopped_reading = true;
                        });
      }
    }
    h.world().after(40ms, [&] { h.finish(); });
  };
  auto check = [&] {
    for (const PeerRun& r : peers) {
      auto it = app.closed.find(r.p->id());
      if (it == app.closed.end()) continue;  // refused
      const App::Closed& c = it->second;
      if (r.sent.compare(0, r.got.size(), r.got) != 0 || r.got.size() > c.echoed) {
        h.fail("peer {}: got {} bytes that are not a prefix of the {} echoed", r.p->id(),
               r.got.size(), c.echoed);
      }
      // Delivered: read, or waiting in the peer's receive buffer (a peer
      // that stopped reading has it all the same).
      const size_t delivered = r.got.size() + r.p->unread();
      if (delivered != c.echoed && c.err == 0) {
        h.fail("peer {}: {} of {} bytes owed delivered, and the handler heard {} with no error",
               r.p->id(), delivered, c.echoed, to_string(c.reason));
      }
      if (delivered > c.echoed) h.fail("peer {}: {} bytes delivered, {} echoed", r.p->id(), delivered, c.echoed);
      if (delivered == c.echoed && !r.stopped_reading && !r.p->got_eof()) {
        h.fail("peer {}: everything delivered but no EOF", r.p->id());
      }
    }
    const auto took = app.last_close - app.stop_began;
    if (took > o.stop_deadline + 1ms) {
      h.fail("stop took {} ms, deadline {} ms",
             std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
             o.stop_deadline.count());
    }
  };
  return run_server(h, o, nullptr, app, script, check);
}

// ---- half-close ----
// The server echoes up to a limit, then half-closes (Connection::shutdown:
// FIN after what it owes) and keeps reading; the peer keeps sending the
// rest, then shuts down too. The peer gets exactly the echo up to the
// limit, then EOF; the server reads every byte the peer sent; the close
// is orderly (kPeerClosed, no error).
Outcome run_half_close(uint64_t seed) {
  sim::Rng pick(seed ^ 0x4a1f);
  sim::SimFaults f = shuffled_network(pick);
  f.jump = pick.chance(0.2) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 500));
  Harness h(seed, f);
  struct App final : Handler {
    sim::World* world;
    bool raw = false;  // send_raw (zero-copy from the read view) or send
    struct State {
      uint64_t peer = 0;
      size_t limit = 0, echoed = 0, received = 0;
    };
    struct Closed {
      size_t echoed = 0, received = 0;
      CloseReason reason{};
      int err = 0;
    };
    std::map<uint64_t, size_t> limits;  // peer id -> echo limit
    std::map<uint64_t, Closed> closed;
    void on_open(Connection& c) override {
      State& s = c.state<State>();
      if (StreamPeer* p = world->peer_for(c.fd())) s.peer = p->id();
      s.limit = limits[s.peer];
    }
    void on_message(Connection& c, std::string_view d) override {
      State& s = c.state<State>();
      s.received += d.size();
      if (s.echoed >= s.limit) return;  // half-closed: reading goes on
      const std::string_view part = d.substr(0, s.limit - s.echoed);
      s.echoed += part.size();
      if (!(raw ? c.send_raw(part) : c.send(part))) world_fail = true;
      if (s.echoed == s.limit) c.shutdown();
    }
    void on_close(Connection& c, CloseReason reason, int err) override {
      const State& s = c.state<State>();
      closed[s.peer] = {s.echoed, s.received, reason, err};
      if (closed.size() == expected) done();
    }
    bool world_fail = false;
    size_t expected = 0;
    std::function<void()> done;
  } app;
  app.world = &h.world();
  app.raw = pick.chance(0.5);
  struct PeerRun {
    StreamPeer* p;
    std::string sent, got;
  };
  std::vector<PeerRun> peers(pick.range(1, 4));
  // Done when the server has closed every connection (after the peer's
  // FIN), then what is in flight settles.
  app.expected = peers.size();
  app.done = [&] { h.finish(); };
  auto script = [&](Server& server) {
    h.deadline(60s);
    for (PeerRun& pr : peers) {
      PeerRun* r = &pr;
      r->p = h.world().connect(server.port());
      const size_t total = h.rng().range(1, 50000);
      r->sent = random_bytes(h.rng(), total);
      app.limits[r->p->id()] = h.rng().range(1, total + total / 2);
      r->p->on_data = [r](std::string_view d) { r->got.append(d); };
      SimClock::duration t{};
      for (size_t pos = 0; pos < total;) {
        const size_t n = std::min<size_t>(total - pos, h.rng().range(1, 4000));
        t += std::chrono::microseconds(h.rng().range(0, 2000));
        h.world().after(t, [r, pos, n] { r->p->write(std::string_view(r->sent).substr(pos, n)); });
        pos += n;
      }
      h.world().after(t, [r] { r->p->shutdown(); });
    }
  };
  auto check = [&] {
    if (app.world_fail) h.fail("send() refused before the half-close");
    for (const PeerRun& r : peers) {
      auto it = app.closed.find(r.p->id());
      if (it == app.closed.end()) {
        h.fail("peer {}: never closed", r.p->id());
        continue;
      }
      const App::Closed& c = it->second;
      const size_t want = std::min(app.limits[r.p->id()], r.sent.size());
      if (r.got.size() != want || r.sent.compare(0, want, r.got) != 0) {
        h.fail("peer {}: got {} bytes, want the first {} echoed", r.p->id(), r.got.size(), want);
      }
      if (c.echoed != want) h.fail("peer {}: server echoed {}, want {}", r.p->id(), c.echoed, want);
      if (!r.p->got_eof()) h.fail("peer {}: no EOF", r.p->id());
      if (c.received != r.sent.size()) {
        h.fail("peer {}: server read {} of {} bytes (reading stops at the half-close?)",
               r.p->id(), c.received, r.sent.size());
      }
      if (c.reason != CloseReason::kPeerClosed || c.err != 0) {
        h.fail("peer {}: closed as {} ({})", r.p->id(), to_string(c.reason), c.err);
      }
    }
  };
  return run_server(h, ServerOptions{}, nullptr, app, script, check);
}

}  // namespace sluice::simtest
