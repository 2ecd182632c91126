// Stream scenarios: echo, backpressure, the output cap, graceful stop.
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "codec/length_field.h"
#include "core/connection.h"
#include "tests/sim_scenarios.h"

namespace sluice::simtest {

using namespace std::chrono_literals;
using sim::StreamPeer;

namespace {

// A shuffled network: the scenario's own faults come on top.
sim::SimFaults shuffled(sim::Rng& rng) {
  sim::SimFaults f;
  f.max_segment = rng.range(1, 3000);
  f.max_delay = std::chrono::microseconds(rng.range(0, 5000));
  f.short_send = rng.chance(0.5) ? 0.3 : 0.0;
  f.min_window = rng.range(1, 4096);
  f.max_window = f.min_window + rng.range(0, 128 * 1024);
  return f;
}

// Echoes every message (frame, or raw bytes without a codec) and counts
// closes by reason.
class EchoApp final : public Handler {
 public:
  void on_message(Connection& c, std::string_view data) override { c.send(data); }
  void on_close(Connection&, CloseReason reason, int) override {
    ++closes[reason];
    ++closed;
  }
  std::map<CloseReason, int> closes;
  size_t closed = 0;
};

}  // namespace

// ---- echo ----
// Peers send random length-framed messages and read the echoes; once every
// echo is back they shut down and expect EOF. Each peer ends with exactly
// its messages echoed and EOF, or with a reset (then what it got is a
// prefix of what it sent, and the server's handler heard the error).
Outcome run_echo(uint64_t seed) {
  sim::Rng pick(seed ^ 0xec40);
  sim::SimFaults f = shuffled(pick);
  f.reset = pick.chance(0.3) ? 0.2 : 0.0;
  f.reset_within = std::chrono::milliseconds(pick.range(1, 100));
  f.jump = pick.chance(0.3) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 2000));
  Harness h(seed, f);
  EchoApp app;
  struct PeerRun {
    StreamPeer* p;
    std::vector<std::string> sent;
    std::vector<std::string> got;
    std::string buf;
    bool done = false;
  };
  std::vector<PeerRun> peers(pick.range(1, 4));
  auto all_done = [&] {
    for (const PeerRun& r : peers) {
      if (!r.done) return;
    }
    h.finish();
  };
  auto script = [&](Server& server) {
    h.deadline(120s);
    for (PeerRun& r : peers) {
      PeerRun* rp = &r;
      r.p = h.world().connect(server.port());
      const size_t n = h.rng().range(1, 20);
      for (size_t i = 0; i < n; ++i) r.sent.push_back(random_bytes(h.rng(), h.rng().range(0, 2000)));
      r.p->on_data = [&, rp](std::string_view d) {
        rp->buf.append(d);
        unframe(rp->buf, rp->got);
        if (rp->got.size() > rp->sent.size()) h.fail("peer {}: more echoes than messages", rp->p->id());
        if (rp->got.size() == rp->sent.size()) rp->p->shutdown();
      };
      r.p->on_eof = [&, rp] {
        rp->done = true;
        all_done();
      };
      r.p->on_reset = [&, rp](int) {
        rp->done = true;
        all_done();
      };
      // Messages go out at random moments, each in one write.
      SimClock::duration t{};
      for (const std::string& m : r.sent) {
        t += std::chrono::microseconds(h.rng().range(0, 3000));
        h.world().after(t, [rp, m] { rp->p->write(frame(m)); });
      }
    }
  };
  auto check = [&] {
    size_t clean = 0;
    for (PeerRun& r : peers) {
      const size_t k = std::min(r.got.size(), r.sent.size());
      for (size_t i = 0; i < k; ++i) {
        if (r.got[i] != r.sent[i]) {
          h.fail("peer {}: echo {} differs ({} bytes, sent {})", r.p->id(), i, r.got[i].size(),
                 r.sent[i].size());
          break;
        }
      }
      if (r.p->error() == 0) {
        ++clean;
        if (!r.p->got_eof()) h.fail("peer {}: no EOF and no error", r.p->id());
        if (r.got.size() != r.sent.size()) {
          h.fail("peer {}: EOF after {} of {} echoes, no error", r.p->id(), r.got.size(),
                 r.sent.size());
        }
        if (!r.buf.empty()) h.fail("peer {}: {} stray bytes", r.p->id(), r.buf.size());
      }
    }
    // Every reset the core saw reached the handler as an error, and only
    // resets did: the others closed in order.
    const int errors = app.closes[CloseReason::kPeerReset];
    if (static_cast<uint64_t>(errors) > h.world().stats().resets) {
      h.fail("{} connections closed as reset, {} resets", errors, h.world().stats().resets);
    }
    if (static_cast<size_t>(app.closes[CloseReason::kPeerClosed]) < clean) {
      h.fail("{} clean peers, but {} orderly closes", clean, app.closes[CloseReason::kPeerClosed]);
    }
    if (h.world().stats().streams != app.closed) {
      h.fail("{} streams accepted, {} closed", h.world().stats().streams, app.closed);
    }
  };
  ServerOptions o;
  return run_server(h, o, std::make_unique<codec::LengthFieldCodec>(codec::length_prefix_options()),
                    app, script, check);
}

// ---- backpressure ----
// A peer sends far more than high_water while not reading, then starts
// reading: the server pauses reading at high water (on_high_water with at
// least high_water owed), resumes at low water (on_drain), and the peer
// ends up with exactly what it sent, then EOF.
Outcome run_backpressure(uint64_t seed) {
  sim::Rng pick(seed ^ 0xbac4);
  sim::SimFaults f = shuffled(pick);
  f.max_window = std::min<size_t>(f.max_window, 64 * 1024);
  f.jump = pick.chance(0.3) ? 0.05 : 0.0;
  f.max_jump = std::chrono::milliseconds(pick.range(1, 1000));
  Harness h(seed, f);
  ServerOptions o;
  o.limits.high_water = pick.range(8, 128) * 1024;
  o.limits.low_water = o.limits.high_water / pick.range(2, 8);
  // More than the window can hold plus high water: the rest must wait in
  // the server's output while the peer does not read.
  const size_t total = f.max_window + o.limits.high_water * pick.range(2, 8) + pick.range(0, 4096);
  struct App final : Handler {
    Harness* h;
    size_t high_water = 0;
    int highs = 0, drains = 0;
    bool paused = false;
    void on_message(Connection& c, std::string_view d) override { c.send(d); }
    void on_high_water(Connection& c, size_t pending) override {
      (void)c;
      if (paused) h->fail("on_high_water twice without on_drain");
      if (pending < high_water) h->fail("on_high_water with {} owed < {}", pending, high_water);
      paused = true;
      ++highs;
    }
    void on_drain(Connection& c) override {
      (void)c;
      if (!paused) h->fail("on_drain without on_high_water");
      paused = false;
      ++drains;
    }
  } app;
  app.h = &h;
  app.high_water = o.limits.high_water;
  std::string sent = random_bytes(pick, total);
  std::string got;
  StreamPeer* p = nullptr;
  auto script = [&](Server& server) {
    h.deadline(120s);
    p = h.world().connect(server.port());
    p->set_reading(false);
    for (size_t pos = 0; pos < sent.size();) {
      const size_t n = std::min<size_t>(sent.size() - pos, h.rng().range(1, 64 * 1024));
      p->write(std::string_view(sent).substr(pos, n));
      pos += n;
    }
    h.world().after(std::chrono::milliseconds(h.rng().range(50, 500)), [&] { p->set_reading(true); });
    p->on_data = [&](std::string_view d) {
      got.append(d);
      if (got.size() == sent.size()) p->shutdown();
    };
    p->on_eof = [&] { h.finish(); };
    p->on_reset = [&](int err) {
      h.fail("peer reset: {}", err);
      h.finish();
    };
  };
  auto check = [&] {
    if (got != sent) h.fail("peer got {} of {} bytes (or different bytes)", got.size(), sent.size());
    if (!p->got_eof()) h.fail("peer: no EOF");
    if (app.highs == 0) h.fail("no on_high_water for {} bytes, high water {}", total, o.limits.high_water);
    if (app.drains != app.highs) h.fail("{} high waters, {} drains", app.highs, app.drains);
  };
  return run_server(h, o, nullptr, app, script, check);
}

// ---- output cap ----
// The server pushes to a peer that never reads: it is closed as too slow,
// having queued no more than the cap (plus the send that crossed it).
Outcome run_output_cap(uint64_t seed) {
  sim::Rng pick(seed ^ 0xca9);
  sim::SimFaults f = shuffled(pick);
  f.max_window = std::min<size_t>(f.max_window, 64 * 1024);
  Harness h(seed, f);
  ServerOptions o;
  o.limits.high_water = pick.range(8, 64) * 1024;
  o.limits.low_water = o.limits.high_water / 2;
  o.limits.max_output = 1;  // raised to the floor: 2 x (high water + 64 KiB)
  const size_t chunk = pick.range(1, 32) * 1024;
  struct App final : Handler {
    Harness* h;
    size_t chunk = 0;
    size_t cap = 0;
    size_t max_owed = 0;
    int too_slow = 0;
    void on_open(Connection& c) override {
      cap = c.output_cap();
      push(c);
    }
    void push(Connection& c) {
      // Every millisecond another chunk, until send() is refused.
      if (!c.send(std::string(chunk, 'x'))) return;
      max_owed = std::max(max_owed, c.pending_output());
      const uint64_t id = c.id();
      Connection* cp = &c;
      c.loop().run_after(1ms, [this, cp, id] {
        if (live.count(id)) push(*cp);
      });
    }
    void on_message(Connection&, std::string_view) override {}
    void on_close(Connection& c, CloseReason reason, int) override {
      live.erase(c.id());
      if (reason == CloseReason::kTooSlow) ++too_slow;
      h->finish();
    }
    std::set<uint64_t> live;
  } app;
  struct Track final : Handler {
    App* app;
    void on_open(Connection& c) override {
      app->live.insert(c.id());
      app->on_open(c);
    }
    void on_message(Connection& c, std::string_view d) override { app->on_message(c, d); }
    void on_close(Connection& c, CloseReason r, int e) override { app->on_close(c, r, e); }
  } track;
  app.h = &h;
  app.chunk = chunk;
  track.app = &app;
  StreamPeer* p = nullptr;
  auto script = [&](Server& server) {
    h.deadline(60s);
    p = h.world().connect(server.port());
    p->set_reading(false);
  };
  auto check = [&] {
    if (app.too_slow != 1) h.fail("not closed as too slow ({} times)", app.too_slow);
    if (app.max_owed > app.cap + chunk) {
      h.fail("owed {} bytes, cap {} (+ one {}-byte send)", app.max_owed, app.cap, chunk);
    }
  };
  return run_server(h, o, nullptr, track, script, check);
}

// ---- graceful stop ----
// Peers keep sending while the server stops: each gets the echo of every
// byte the server took from it before it closed (no more, no less, in
// order), then EOF.
Outcome run_stop(uint64_t seed) {
  sim::Rng pick(seed ^ 0x5709);
  sim::SimFaults f = shuffled(pick);
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
    void on_close(Connection& c, CloseReason, int) override {
      const State* s = c.find_state<State>();
      if (s && s->peer) echoed[s->peer] = s->bytes;
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
      if (r.got.size() != owed || r.sent.compare(0, owed, r.got) != 0) {
        h.fail("peer {}: got {} bytes, server echoed {}", i, r.got.size(), owed);
      }
      if (!r.p->got_eof()) h.fail("peer {}: no EOF after stop", i);
    }
  };
  ServerOptions o;
  o.stop_deadline = 5000ms;
  return run_server(h, o, nullptr, app, script, check);
}

}  // namespace sluice::simtest

namespace sluice::simtest {

// ---- stop deadline ----
// Some peers stop reading while the server stops: stop() still ends by its
// deadline, and a peer that did not get every byte echoed to it was
// closed with an error the handler heard (the deadline cut it off);
// every other peer got all of it, then EOF.
Outcome run_stop_deadline(uint64_t seed) {
  sim::Rng pick(seed ^ 0xdead);
  sim::SimFaults f = shuffled(pick);
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

}  // namespace sluice::simtest
